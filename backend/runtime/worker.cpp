#include "backend/runtime/worker.hpp"

#include <zmq.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <poll.h>
#include <unistd.h>

#include "common/log.hpp"

namespace sb::backend {
namespace {

// Frames per ZeroMQ message: keeps one message a sane unit for the gateway's ROUTER.
constexpr std::size_t max_frames_per_message = 1024;

DispatcherSettings settings_from(const BackendConfig& config, const std::string& worker_id) {
  DispatcherSettings settings;
  settings.worker_id = worker_id;
  settings.heartbeat = std::chrono::milliseconds(config.heartbeat_ms);
  settings.gateway_dead = std::chrono::milliseconds(config.gateway_dead_ms);
  settings.gateway_lease = std::chrono::milliseconds(config.gateway_lease_ms);
  settings.query_timeout = std::chrono::milliseconds(config.query_timeout_ms);
  settings.max_outbox_bodies = static_cast<std::size_t>(config.max_outbox_bodies);
  settings.max_pending_queries = static_cast<std::size_t>(config.max_pending_queries);
  settings.decode_limits.max_bytes = static_cast<std::size_t>(config.max_pool_message_bytes);
  settings.decode_limits.max_string = static_cast<std::size_t>(config.max_pool_message_bytes);
  return settings;
}

bool set_int(void* socket, int option, int value, const char* name, std::string& error) {
  if (zmq_setsockopt(socket, option, &value, sizeof value) == 0) return true;
  error = std::string("zmq_setsockopt(") + name + "): " + zmq_strerror(zmq_errno());
  return false;
}

// Empties a non-blocking signal pipe (or eventfd) so it stops being readable.
void consume(int fd) {
  if (fd < 0) return;
  char buffer[64];
  while (::read(fd, buffer, sizeof buffer) > 0) {
  }
}

}  // namespace

Worker::Worker(const BackendConfig& config, std::string worker_id, std::vector<App*> apps, void* shared_context)
    : config_(config),
      worker_id_(std::move(worker_id)),
      dispatcher_(settings_from(config, worker_id_), std::move(apps), config.gateways),
      context_(shared_context) {}

Worker::~Worker() {
  for (void* socket : sockets_) zmq_close(socket);
  sockets_.clear();
  if (own_context_ && context_) zmq_ctx_term(context_);
}

bool Worker::open(std::string& error) {
  if (!context_) {
    context_ = zmq_ctx_new();
    if (!context_) {
      error = std::string("zmq_ctx_new: ") + zmq_strerror(zmq_errno());
      return false;
    }
    own_context_ = true;
  }
  for (const auto& endpoint : config_.gateways) {
    void* socket = zmq_socket(context_, ZMQ_DEALER);
    if (!socket) {
      error = std::string("zmq_socket: ") + zmq_strerror(zmq_errno());
      return false;
    }
    sockets_.push_back(socket);
    std::int64_t max_size = config_.max_pool_message_bytes;
    // The gateway's ROUTER knows us by this id, on every connection and after reconnects.
    if (zmq_setsockopt(socket, ZMQ_ROUTING_ID, worker_id_.data(), worker_id_.size()) != 0) {
      error = std::string("zmq_setsockopt(ZMQ_ROUTING_ID): ") + zmq_strerror(zmq_errno());
      return false;
    }
    if (zmq_setsockopt(socket, ZMQ_MAXMSGSIZE, &max_size, sizeof max_size) != 0) {
      error = std::string("zmq_setsockopt(ZMQ_MAXMSGSIZE): ") + zmq_strerror(zmq_errno());
      return false;
    }
    if (!set_int(socket, ZMQ_LINGER, static_cast<int>(config_.linger_ms), "ZMQ_LINGER", error) ||
        !set_int(socket, ZMQ_SNDHWM, static_cast<int>(config_.send_hwm), "ZMQ_SNDHWM", error) ||
        !set_int(socket, ZMQ_RCVHWM, static_cast<int>(config_.recv_hwm), "ZMQ_RCVHWM", error) ||
        // Queue only to a live connection: otherwise HELLOs pile up while the gateway is down
        // and arrive as a burst when it starts.
        !set_int(socket, ZMQ_IMMEDIATE, 1, "ZMQ_IMMEDIATE", error) ||
        !set_int(socket, ZMQ_RECONNECT_IVL, static_cast<int>(config_.reconnect_ms), "ZMQ_RECONNECT_IVL", error) ||
        !set_int(socket, ZMQ_RECONNECT_IVL_MAX, static_cast<int>(config_.reconnect_max_ms), "ZMQ_RECONNECT_IVL_MAX",
                 error))
      return false;
    if (zmq_connect(socket, endpoint.c_str()) != 0) {
      error = "cannot connect to gateway " + endpoint + ": " + zmq_strerror(zmq_errno());
      return false;
    }
    int fd = -1;
    std::size_t fd_size = sizeof fd;
    if (zmq_getsockopt(socket, ZMQ_FD, &fd, &fd_size) != 0) {
      error = std::string("zmq_getsockopt(ZMQ_FD): ") + zmq_strerror(zmq_errno());
      return false;
    }
    socket_fds_.push_back(fd);
    pending_.push_back(1);  // nothing is known yet: look before the first wait
    settled_.push_back(0);
    log::info("connecting to gateway at ", endpoint, " as ", worker_id_);
  }
  return true;
}

bool Worker::receive_from(std::size_t gateway, SteadyTime now) {
  void* socket = sockets_[gateway];
  for (std::int64_t n = 0; n < config_.max_receive_batch; ++n) {
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    if (zmq_msg_recv(&frame, socket, ZMQ_DONTWAIT) < 0) {
      int err = zmq_errno();
      zmq_msg_close(&frame);
      if (err != EAGAIN && err != EINTR) {
        ++counters_.receive_errors;
        log::warn("receive from ", config_.gateways[gateway], " failed: ", zmq_strerror(err));
      }
      settled_[gateway] = 1;  // EAGAIN: ZMQ_FD fires for the next message
      return err == EINTR;
    }
    ++counters_.messages_received;
    // A message's frames arrive together; each frame is one body.
    while (true) {
      dispatcher_.receive(gateway,
                          std::string_view(static_cast<const char*>(zmq_msg_data(&frame)), zmq_msg_size(&frame)), now);
      bool more = zmq_msg_more(&frame) != 0;
      zmq_msg_close(&frame);
      if (!more) break;
      zmq_msg_init(&frame);
      if (zmq_msg_recv(&frame, socket, ZMQ_DONTWAIT) < 0) {
        ++counters_.receive_errors;
        zmq_msg_close(&frame);
        break;
      }
    }
  }
  return true;  // the batch limit: more may be waiting
}

void Worker::send_batch(std::size_t gateway, std::vector<std::string>& bodies) {
  void* socket = sockets_[gateway];
  if (!bodies.empty()) settled_[gateway] = 0;  // a send may process the command that announces new input
  for (std::size_t first = 0; first < bodies.size(); first += max_frames_per_message) {
    std::size_t last = std::min(bodies.size(), first + max_frames_per_message);
    for (std::size_t i = first; i < last; ++i) {
      int flags = ZMQ_DONTWAIT | (i + 1 < last ? ZMQ_SNDMORE : 0);
      if (zmq_send(socket, bodies[i].data(), bodies[i].size(), flags) >= 0) continue;
      int err = zmq_errno();
      auto dropped = last - i;
      counters_.bodies_dropped += dropped;
      if (i == first && err == EAGAIN) {
        ++counters_.send_eagain;
        if (i == 0) dispatcher_.batch_undelivered(gateway, std::chrono::steady_clock::now());
        // Expected while a gateway is down (HELLOs); a warning once it welcomed us.
        if (!dispatcher_.welcomed(gateway))
          log::debug("gateway ", config_.gateways[gateway], " not connected: ", dropped, " bodies dropped");
        else if (log::worth_logging(counters_.send_eagain))
          log::warn("gateway ", config_.gateways[gateway], " not accepting (EAGAIN, high-water mark?): ", dropped,
                    " bodies dropped; ", counters_.send_eagain, " times so far");
      } else {
        ++counters_.send_errors;
        log::error("send to ", config_.gateways[gateway], " failed at frame ", i - first, ": ", zmq_strerror(err));
      }
      break;
    }
    if (last > first) ++counters_.messages_sent;
  }
}

bool Worker::step(int stop_fd, int max_wait_ms) {
  auto now = std::chrono::steady_clock::now();
  if (!started_) {
    started_ = true;
    dispatcher_.start(now);
    dispatcher_.flush(now, [this](std::size_t g, std::vector<std::string>& bodies) { send_batch(g, bodies); });
  }
  auto deadline = dispatcher_.next_deadline();
  long long wait = 0;
  if (deadline > now) {
    // Round up so we do not wake a fraction of a millisecond early and spin.
    wait = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
  }
  wait = std::min<long long>(wait, config_.heartbeat_ms);
  if (max_wait_ms >= 0) wait = std::min<long long>(wait, max_wait_ms);

  // Before blocking, every socket must be settled; ZMQ_EVENTS settles one a send unsettled.
  bool input_waiting = false;
  for (std::size_t i = 0; i < sockets_.size(); ++i) {
    if (!settled_[i] && !pending_[i]) {
      int events = 0;
      std::size_t size = sizeof events;
      if (zmq_getsockopt(sockets_[i], ZMQ_EVENTS, &events, &size) == 0) {
        settled_[i] = !(events & ZMQ_POLLIN);
        pending_[i] = (events & ZMQ_POLLIN) != 0;
      } else {
        pending_[i] = 1;
      }
    }
    input_waiting |= pending_[i] != 0;
  }
  std::vector<pollfd> fds;
  fds.reserve(sockets_.size() + 1);
  for (int fd : socket_fds_) fds.push_back({fd, POLLIN, 0});
  if (stop_fd >= 0) fds.push_back({stop_fd, POLLIN, 0});
  int rc = ::poll(fds.data(), fds.size(), input_waiting ? 0 : static_cast<int>(wait));
  if (rc < 0 && errno != EINTR) log::error("poll: ", std::strerror(errno));
  if (stop_fd >= 0 && rc > 0 && (fds.back().revents & POLLIN)) return false;

  now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < sockets_.size(); ++i) {
    if (!pending_[i] && !(rc > 0 && (fds[i].revents & POLLIN))) continue;
    pending_[i] = receive_from(i, now);
  }
  dispatcher_.tick(now);
  dispatcher_.flush(now, [this](std::size_t g, std::vector<std::string>& bodies) { send_batch(g, bodies); });
  return true;
}

int Worker::run(int stop_fd) {
  while (step(stop_fd)) {
  }
  consume(stop_fd);
  drain(stop_fd);
  close();
  return 0;
}

bool Worker::drain(int stop_fd) {
  using std::chrono::milliseconds;
  auto started = std::chrono::steady_clock::now();
  auto deadline = started + milliseconds(config_.drain_timeout_ms);
  dispatcher_.start_drain(started);
  dispatcher_.flush(started, [this](std::size_t g, std::vector<std::string>& bodies) { send_batch(g, bodies); });
  // What is already queued first: a WELCOME read now still gets its BYE.
  step(-1, 0);
  while (!dispatcher_.drained()) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      log::warn("drain: not every gateway answered BYE within ", config_.drain_timeout_ms,
                " ms; stopping with ", dispatcher_.open_sockets(), " sockets still here");
      return false;
    }
    auto left = std::chrono::ceil<milliseconds>(deadline - now).count();
    if (!step(stop_fd, static_cast<int>(left))) {
      consume(stop_fd);
      log::warn("drain: signalled again, stopping now");
      return false;
    }
  }
  auto took = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - started).count();
  if (dispatcher_.counters().byes_sent == 0)
    log::info("drained: no gateway had registered us, nothing to hand back");
  else
    log::info("drained in ", took, " ms: every gateway we said BYE to answered (or is gone)");
  return true;
}

void Worker::close() {
  if (sockets_.empty()) return;
  auto now = std::chrono::steady_clock::now();
  if (!dispatcher_.draining()) dispatcher_.start_drain(now);  // at least tell them (BYE)
  dispatcher_.flush(now, [this](std::size_t g, std::vector<std::string>& bodies) { send_batch(g, bodies); });
  log::info("stopping");
  const auto& c = dispatcher_.counters();
  log::info("counters: received=", c.bodies_received, " messages=", c.messages, " opens=", c.opens,
            " resumes=", c.resumes, " refused=", c.refused, " closes=", c.closes, " close_acks=", c.close_acks,
            " decode_errors=", c.decode_errors, " duplicates=", c.duplicate_messages,
            " unknown_wsids=", c.unknown_wsids, " app_errors=", c.app_errors, " unroutable=", c.unroutable,
            " outbox_drops=", c.outbox_drops, " forgotten=", c.forgotten, " handed_off=", c.handed_off,
            " revived=", c.revived, " purged_stale=", c.purged_stale, " purged_lost=", c.purged_lost,
            " sent_messages=", counters_.messages_sent, " send_eagain=", counters_.send_eagain,
            " bodies_dropped=", counters_.bodies_dropped);
  for (void* socket : sockets_) zmq_close(socket);  // linger bounds how long BYE may take
  sockets_.clear();
  if (own_context_ && context_) {
    zmq_ctx_term(context_);
    context_ = nullptr;
    own_context_ = false;
  }
}

}  // namespace sb::backend
