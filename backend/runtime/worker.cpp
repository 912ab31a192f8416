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
  links_.clear();
  if (own_context_ && context_) zmq_ctx_term(context_);
}

bool Worker::open(std::string& error) {
  void* context = context_;
  for (const auto& endpoint : config_.gateways) {
    auto link = make_pool_link(config_, endpoint, worker_id_, counters_, context, error);
    if (!link) return false;
    if (context != context_) {  // the first libzmq link made one
      context_ = context;
      own_context_ = true;
    }
    links_.push_back(std::move(link));
    log::info("connecting to gateway at ", endpoint, " as ", worker_id_);
  }
  return true;
}

namespace {
// Hands each body a link reads to the dispatcher, tagged with the gateway it came from.
class DispatchSink final : public BodySink {
 public:
  DispatchSink(Dispatcher& dispatcher, std::size_t gateway, SteadyTime now)
      : dispatcher_(dispatcher), gateway_(gateway), now_(now) {}
  void body(std::string_view bytes) override { dispatcher_.receive(gateway_, bytes, now_); }

 private:
  Dispatcher& dispatcher_;
  std::size_t gateway_;
  SteadyTime now_;
};
}  // namespace

void Worker::send_batch(std::size_t gateway, std::vector<std::string>& bodies) {
  PoolLink& link = *links_[gateway];
  for (std::size_t first = 0; first < bodies.size(); first += max_frames_per_message) {
    std::size_t count = std::min(bodies.size(), first + max_frames_per_message) - first;
    std::string error;
    auto result = link.send(bodies.data() + first, count, error);
    if (result == PoolLink::Send::sent) {
      ++counters_.messages_sent;
      continue;
    }
    auto dropped = bodies.size() - first;  // this message and the ones after it
    counters_.bodies_dropped += dropped;
    if (result == PoolLink::Send::refused) {
      ++counters_.send_eagain;
      if (first == 0) dispatcher_.batch_undelivered(gateway, std::chrono::steady_clock::now());
      // Expected while a gateway is down (HELLOs); a warning once it welcomed us.
      if (!dispatcher_.welcomed(gateway))
        log::debug("gateway ", config_.gateways[gateway], " not connected: ", dropped, " bodies dropped");
      else if (log::worth_logging(counters_.send_eagain))
        log::warn("gateway ", config_.gateways[gateway], " not accepting (high-water mark or link down): ", dropped,
                  " bodies dropped; ", counters_.send_eagain, " times so far");
    } else {
      ++counters_.send_errors;
      log::error("send to ", config_.gateways[gateway], " failed: ", error);
    }
    break;
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

  // The next reconnect attempt is a timer too.
  for (auto& link : links_) {
    auto at = link->deadline();
    if (at == SteadyTime::max()) continue;
    auto until = at <= now ? 0 : std::chrono::ceil<std::chrono::milliseconds>(at - now).count();
    wait = std::min<long long>(wait, until);
  }
  bool input_waiting = false;
  std::vector<pollfd> fds(links_.size());
  for (std::size_t i = 0; i < links_.size(); ++i) input_waiting |= links_[i]->prepare_wait(fds[i]);
  if (stop_fd >= 0) fds.push_back({stop_fd, POLLIN, 0});
  int rc = ::poll(fds.data(), fds.size(), input_waiting ? 0 : static_cast<int>(wait));
  if (rc < 0 && errno != EINTR) log::error("poll: ", std::strerror(errno));
  if (stop_fd >= 0 && rc > 0 && (fds.back().revents & POLLIN)) return false;

  now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < links_.size(); ++i) {
    DispatchSink sink(dispatcher_, i, now);
    links_[i]->service(rc > 0 ? fds[i].revents : 0, config_.max_receive_batch, sink, now);
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
  if (links_.empty()) return;
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
            " bodies_dropped=", counters_.bodies_dropped, " link_connects=", counters_.connects,
            " link_drops=", counters_.disconnects, " lost_on_link_drop=", counters_.lost_on_disconnect);
  for (auto& link : links_) link->close(config_.linger_ms);  // linger bounds how long BYE may take
  links_.clear();
  if (own_context_ && context_) {
    zmq_ctx_term(context_);
    context_ = nullptr;
    own_context_ = false;
  }
}

}  // namespace sb::backend
