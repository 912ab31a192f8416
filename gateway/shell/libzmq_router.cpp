// The pool as a libzmq ROUTER, its ZMQ_FD watched by the gateway's loop.
#include <ev.h>
#include <unistd.h>
#include <zmq.h>

#include <stdexcept>

#include "gateway/shell/pool_router.hpp"

namespace sb::gateway {

std::unique_ptr<PoolRouter> make_zmtp_router(const GatewayConfig& config, struct ev_loop* loop,
                                             std::function<void()> on_input);

namespace {

class LibzmqRouter final : public PoolRouter {
 public:
  LibzmqRouter(const GatewayConfig& config, struct ev_loop* loop, std::function<void()> on_input)
      : loop_(loop), on_input_(std::move(on_input)) {
    context_ = zmq_ctx_new();
    router_ = zmq_socket(context_, ZMQ_ROUTER);
    int one = 1;
    int linger = config.pool_linger_ms;
    auto max_size = static_cast<std::int64_t>(config.max_pool_message_bytes);
    zmq_setsockopt(router_, ZMQ_ROUTER_MANDATORY, &one, sizeof one);  // unroutable sends fail, never vanish
    zmq_setsockopt(router_, ZMQ_ROUTER_HANDOVER, &one, sizeof one);   // a restarted worker takes its id back
    zmq_setsockopt(router_, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(router_, ZMQ_SNDHWM, &config.pool_hwm, sizeof config.pool_hwm);
    zmq_setsockopt(router_, ZMQ_RCVHWM, &config.pool_hwm, sizeof config.pool_hwm);
    zmq_setsockopt(router_, ZMQ_MAXMSGSIZE, &max_size, sizeof max_size);
    for (const auto& endpoint : config.pool) {
      if (zmq_bind(router_, endpoint.c_str()) != 0) {
        std::string why = zmq_strerror(zmq_errno());
        close(0);
        throw std::runtime_error("cannot bind pool " + endpoint + ": " + why);
      }
      if (endpoint.rfind("ipc://", 0) == 0) ipc_files_.push_back(endpoint.substr(6));
    }
    int fd = -1;
    std::size_t fd_size = sizeof fd;
    zmq_getsockopt(router_, ZMQ_FD, &fd, &fd_size);
    ev_io_init(&watcher_, [](struct ev_loop*, ev_io* w, int) { static_cast<LibzmqRouter*>(w->data)->on_input_(); },
               fd, EV_READ);
    watcher_.data = this;
    ev_io_start(loop_, &watcher_);
  }

  ~LibzmqRouter() override { close(0); }

  // ZMQ_FD fires when the socket's command mailbox gets something, and any zmq call may empty
  // that mailbox. A recv that ends in EAGAIN leaves it armed again.
  bool receive(std::size_t& handled, std::size_t budget, Sink& sink) override {
    std::string routing_id;
    while (handled < budget) {
      zmq_msg_t part;
      zmq_msg_init(&part);
      if (zmq_msg_recv(&part, router_, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return false;
      }
      routing_id.assign(static_cast<const char*>(zmq_msg_data(&part)), zmq_msg_size(&part));
      bool more = zmq_msg_more(&part);
      while (more) {
        zmq_msg_close(&part);
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, router_, ZMQ_DONTWAIT) < 0) break;
        more = zmq_msg_more(&part);
        sink.pool_body(routing_id, std::string_view{static_cast<const char*>(zmq_msg_data(&part)), zmq_msg_size(&part)});
      }
      zmq_msg_close(&part);
      ++handled;
    }
    return true;
  }

  Send send(std::string_view routing_id, const std::vector<std::string>& bodies) override {
    if (bodies.empty()) return Send::sent;  // a lone routing frame would swallow the next message
    if (zmq_send(router_, routing_id.data(), routing_id.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
      return zmq_errno() == EHOSTUNREACH ? Send::unreachable : Send::full;
    for (std::size_t i = 0; i < bodies.size(); ++i) {
      int flags = ZMQ_DONTWAIT | (i + 1 < bodies.size() ? ZMQ_SNDMORE : 0);
      // After the routing frame is accepted, ZeroMQ takes the rest of the message atomically.
      zmq_send(router_, bodies[i].data(), bodies[i].size(), flags);
    }
    return Send::sent;
  }

  // A send may empty the mailbox unseen: ZMQ_EVENTS (a poll() inside libzmq) tells.
  bool input_unreported() override {
    int events = 0;
    std::size_t size = sizeof events;
    return router_ && zmq_getsockopt(router_, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN);
  }

  void close(int) override {  // ZMQ_LINGER bounds the flush
    if (router_) {
      ev_io_stop(loop_, &watcher_);
      zmq_close(router_);
      router_ = nullptr;
    }
    if (context_) zmq_ctx_term(context_);
    context_ = nullptr;
    // libzmq 4.3.4 leaves a bound ipc:// socket file behind; remove ours (a stopped gateway
    // should not look like a running one).
    for (const auto& file : ipc_files_) ::unlink(file.c_str());
    ipc_files_.clear();
  }

  const PoolRouterCounters& counters() const override { return counters_; }

 private:
  struct ev_loop* loop_;
  std::function<void()> on_input_;
  void* context_ = nullptr;
  void* router_ = nullptr;
  ev_io watcher_{};
  std::vector<std::string> ipc_files_;
  PoolRouterCounters counters_;  // libzmq keeps its own; none of these are known here
};

}  // namespace

std::unique_ptr<PoolRouter> make_pool_router(const GatewayConfig& config, struct ev_loop* loop,
                                             std::function<void()> on_input) {
  if (config.pool_server == "libzmq") return std::make_unique<LibzmqRouter>(config, loop, std::move(on_input));
  return make_zmtp_router(config, loop, std::move(on_input));
}

}  // namespace sb::gateway
