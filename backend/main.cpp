// switchboard-backend: parses options, then runs one worker in this process (--workers 1) or
// supervises N worker processes (--workers N): SIGTERM/SIGINT are forwarded (each worker drains:
// BYE, its sockets move to other workers, exit 0) and we exit 0 once every child has stopped.
// A child that crashes is restarted after 1 s; one that drained and exited 0 because somebody
// else signalled it (a rolling restart) is restarted at once; one we asked to stop is not.
// Every worker is an independent process; running the binary again simply adds workers.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "backend/apps/registry.hpp"
#include "backend/runtime/backend_config.hpp"
#include "backend/runtime/worker.hpp"
#include "common/log.hpp"

namespace {

using sb::backend::BackendConfig;
using Clock = std::chrono::steady_clock;

// Self-pipe: signal handlers only write the signal number; the loops poll the read end.
int signal_pipe[2] = {-1, -1};

extern "C" void on_signal(int signal_number) {
  int saved = errno;
  unsigned char byte = static_cast<unsigned char>(signal_number);
  [[maybe_unused]] auto ignored = write(signal_pipe[1], &byte, 1);
  errno = saved;
}

bool install_signals(const std::vector<int>& signals) {
  if (signal_pipe[0] >= 0) {
    close(signal_pipe[0]);
    close(signal_pipe[1]);
  }
  if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return false;
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: poll returns EINTR and the loop looks at the pipe
  for (int s : signals)
    if (sigaction(s, &action, nullptr) != 0) return false;
  return true;
}

int run_worker(const BackendConfig& config, const std::string& worker_id) {
  sb::log::set_component("worker-" + worker_id);
  if (!install_signals({SIGTERM, SIGINT})) {
    sb::log::error("cannot install signal handlers: ", std::strerror(errno));
    return 2;
  }
  std::string error;
  auto apps = sb::backend::build_apps(config.apps, config.store_path(), worker_id, error);
  if (!apps) {
    sb::log::error(error);
    return 2;
  }
  sb::backend::Worker worker(config, worker_id, apps->pointers());
  for (auto& listener : apps->welcome_listeners) worker.dispatcher().add_welcome_listener(listener);
  for (auto& listener : apps->gateway_lost_listeners) worker.dispatcher().add_gateway_lost_listener(listener);
  if (!worker.open(error)) {
    sb::log::error(error);
    return 2;
  }
  std::string names;
  for (const auto& name : config.apps) names += (names.empty() ? "" : ",") + name;
  sb::log::info("worker ", worker_id, " (pid ", getpid(), ") serving ", names, " with store ", config.store);
  return worker.run(signal_pipe[0]);
}

struct Child {
  std::string worker_id;
  pid_t pid = -1;
  bool stop_requested = false;     // we sent it SIGTERM: its exit is final
  Clock::time_point restart_at{};  // when pid == -1 and not stopping
};

pid_t spawn(const BackendConfig& config, const Child& child, pid_t parent) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid != 0) return pid;  // parent (or -1)
  // Child: default signal dispositions until the worker installs its own.
  signal(SIGCHLD, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  close(signal_pipe[0]);
  close(signal_pipe[1]);
  signal_pipe[0] = signal_pipe[1] = -1;
  // Do not outlive a supervisor killed without a chance to forward signals.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(0);
  int code = run_worker(config, child.worker_id);
  std::fflush(nullptr);
  _exit(code);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "stopped";
}

int supervise(const BackendConfig& config, const std::string& base_id) {
  sb::log::set_component("backend-" + base_id);
  if (!install_signals({SIGTERM, SIGINT, SIGCHLD})) {
    sb::log::error("cannot install signal handlers: ", std::strerror(errno));
    return 2;
  }
  const pid_t self = getpid();
  std::vector<Child> children(static_cast<std::size_t>(config.workers));
  for (std::size_t i = 0; i < children.size(); ++i) children[i].worker_id = base_id + "-" + std::to_string(i + 1);
  for (auto& child : children) {
    child.pid = spawn(config, child, self);
    if (child.pid < 0) {
      sb::log::error("fork failed: ", std::strerror(errno), "; retrying in 1 s");
      child.restart_at = Clock::now() + std::chrono::seconds(1);
    } else {
      sb::log::info("started worker ", child.worker_id, " as pid ", child.pid);
    }
  }

  bool stopping = false;
  int exit_code = 0;
  Clock::time_point kill_at{};
  while (true) {
    auto now = Clock::now();
    std::size_t running = 0;
    for (const auto& child : children) running += child.pid > 0;
    if (stopping && running == 0) break;

    // Restarts due, and the SIGKILL deadline when stopping.
    Clock::time_point next = now + std::chrono::seconds(60);
    for (auto& child : children) {
      if (child.pid > 0 || stopping) continue;
      if (child.restart_at <= now) {
        child.pid = spawn(config, child, self);
        if (child.pid < 0) {
          sb::log::error("fork failed: ", std::strerror(errno), "; retrying in 1 s");
          child.restart_at = now + std::chrono::seconds(1);
        } else {
          sb::log::info("restarted worker ", child.worker_id, " as pid ", child.pid);
        }
      }
      if (child.pid < 0) next = std::min(next, child.restart_at);
    }
    if (stopping) {
      if (now >= kill_at) {
        for (auto& child : children)
          if (child.pid > 0) {
            sb::log::warn("worker ", child.worker_id, " still running after ", config.stop_grace_ms,
                          " ms: SIGKILL");
            kill(child.pid, SIGKILL);
          }
        kill_at = now + std::chrono::hours(1);  // once
      }
      next = std::min(next, kill_at);
    }

    auto wait_ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
    pollfd fd{signal_pipe[0], POLLIN, 0};
    poll(&fd, 1, static_cast<int>(std::max<long long>(0, wait_ms)));

    unsigned char signals[64];
    ssize_t got;
    while ((got = read(signal_pipe[0], signals, sizeof signals)) > 0) {
      for (ssize_t i = 0; i < got; ++i) {
        int s = signals[i];
        if ((s == SIGTERM || s == SIGINT) && !stopping) {
          stopping = true;
          running = 0;
          for (const auto& child : children) running += child.pid > 0;
          kill_at = Clock::now() + std::chrono::milliseconds(config.stop_grace_ms);
          sb::log::info("stopping ", running, " workers (", strsignal(s), "): they drain first");
          for (auto& child : children)
            if (child.pid > 0) {
              child.stop_requested = true;
              kill(child.pid, SIGTERM);
            }
        }
      }
    }
    // Reap whatever exited (SIGCHLD may coalesce, so always loop).
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (auto& child : children) {
        if (child.pid != pid) continue;
        child.pid = -1;
        if (stopping || child.stop_requested) {
          sb::log::info("worker ", child.worker_id, " ", describe_status(status));
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
          // Start-up failure (bad store path, bad endpoint): every child would fail the same way.
          sb::log::error("worker ", child.worker_id, " could not start (exit code 2): stopping all workers");
          exit_code = 2;
          stopping = true;
          kill_at = Clock::now() + std::chrono::milliseconds(config.stop_grace_ms);
          for (auto& other : children)
            if (other.pid > 0) {
              other.stop_requested = true;
              kill(other.pid, SIGTERM);
            }
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
          // Drained because someone else signalled it (a rolling restart): replace it now.
          sb::log::info("worker ", child.worker_id, " (pid ", pid, ") drained and exited; restarting it");
          child.restart_at = Clock::now();
        } else {
          sb::log::warn("worker ", child.worker_id, " (pid ", pid, ") ", describe_status(status),
                        " unexpectedly; restarting in 1 s");
          child.restart_at = Clock::now() + std::chrono::seconds(1);
        }
      }
    }
  }
  sb::log::info("all workers stopped");
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto outcome = sb::backend::parse_backend_options(args, sb::switchboard_environment());
  if (!outcome.config) {
    std::fputs(outcome.message.c_str(), outcome.exit_code == 0 ? stdout : stderr);
    return outcome.exit_code;
  }
  const BackendConfig& config = *outcome.config;
  sb::log::Level level;
  sb::log::parse_level(config.log_level, level);
  sb::log::set_level(level);
  std::string id = config.worker_id.empty() ? sb::backend::generate_worker_id() : config.worker_id;
  if (config.workers == 1) return run_worker(config, id);
  return supervise(config, id);
}
