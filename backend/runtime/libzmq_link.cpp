// The pool link as a libzmq DEALER. The loop waits on ZMQ_FD itself rather than in zmq_poll,
// which spends four system calls per wait on checks this loop can skip.
#include <zmq.h>

#include "backend/runtime/pool_link.hpp"
#include "common/log.hpp"

namespace sb::backend {
namespace {

bool set_int(void* socket, int option, std::int64_t value, const char* name, std::string& error) {
  int v = static_cast<int>(value);
  if (zmq_setsockopt(socket, option, &v, sizeof v) == 0) return true;
  error = std::string("zmq_setsockopt(") + name + "): " + zmq_strerror(zmq_errno());
  return false;
}

class LibzmqLink final : public PoolLink {
 public:
  LibzmqLink(std::string endpoint, ShellCounters& counters) : endpoint_(std::move(endpoint)), counters_(counters) {}
  ~LibzmqLink() override {
    if (socket_) zmq_close(socket_);
  }

  bool open(const BackendConfig& config, const std::string& worker_id, void* context, std::string& error) {
    socket_ = zmq_socket(context, ZMQ_DEALER);
    if (!socket_) {
      error = std::string("zmq_socket: ") + zmq_strerror(zmq_errno());
      return false;
    }
    std::int64_t max_size = config.max_pool_message_bytes;
    // The gateway's ROUTER knows us by this id, on every connection and after reconnects.
    if (zmq_setsockopt(socket_, ZMQ_ROUTING_ID, worker_id.data(), worker_id.size()) != 0) {
      error = std::string("zmq_setsockopt(ZMQ_ROUTING_ID): ") + zmq_strerror(zmq_errno());
      return false;
    }
    if (zmq_setsockopt(socket_, ZMQ_MAXMSGSIZE, &max_size, sizeof max_size) != 0) {
      error = std::string("zmq_setsockopt(ZMQ_MAXMSGSIZE): ") + zmq_strerror(zmq_errno());
      return false;
    }
    if (!set_int(socket_, ZMQ_LINGER, config.linger_ms, "ZMQ_LINGER", error) ||
        !set_int(socket_, ZMQ_SNDHWM, config.send_hwm, "ZMQ_SNDHWM", error) ||
        !set_int(socket_, ZMQ_RCVHWM, config.recv_hwm, "ZMQ_RCVHWM", error) ||
        // Queue only to a live connection: otherwise HELLOs pile up while the gateway is down
        // and arrive as a burst when it starts.
        !set_int(socket_, ZMQ_IMMEDIATE, 1, "ZMQ_IMMEDIATE", error) ||
        !set_int(socket_, ZMQ_RECONNECT_IVL, config.reconnect_ms, "ZMQ_RECONNECT_IVL", error) ||
        !set_int(socket_, ZMQ_RECONNECT_IVL_MAX, config.reconnect_max_ms, "ZMQ_RECONNECT_IVL_MAX", error))
      return false;
    if (zmq_connect(socket_, endpoint_.c_str()) != 0) {
      error = "cannot connect to gateway " + endpoint_ + ": " + zmq_strerror(zmq_errno());
      return false;
    }
    std::size_t fd_size = sizeof fd_;
    if (zmq_getsockopt(socket_, ZMQ_FD, &fd_, &fd_size) != 0) {
      error = std::string("zmq_getsockopt(ZMQ_FD): ") + zmq_strerror(zmq_errno());
      return false;
    }
    return true;
  }

  bool prepare_wait(pollfd& entry) override {
    // ZMQ_FD is edge-like: block on it only once a call left it armed; ZMQ_EVENTS settles a
    // socket that a send unsettled.
    if (!settled_ && !pending_) {
      int events = 0;
      std::size_t size = sizeof events;
      if (zmq_getsockopt(socket_, ZMQ_EVENTS, &events, &size) == 0) {
        settled_ = !(events & ZMQ_POLLIN);
        pending_ = (events & ZMQ_POLLIN) != 0;
      } else {
        pending_ = true;
      }
    }
    entry = {fd_, POLLIN, 0};
    return pending_;
  }

  void service(short revents, std::int64_t max_messages, BodySink& sink, SteadyTime) override {
    if (!pending_ && !(revents & POLLIN)) return;
    pending_ = receive(max_messages, sink);
  }

  SteadyTime deadline() const override { return SteadyTime::max(); }

  Send send(const std::string* bodies, std::size_t count, std::string& error) override {
    settled_ = false;  // a send may process the command that announces new input
    for (std::size_t i = 0; i < count; ++i) {
      int flags = ZMQ_DONTWAIT | (i + 1 < count ? ZMQ_SNDMORE : 0);
      if (zmq_send(socket_, bodies[i].data(), bodies[i].size(), flags) >= 0) continue;
      int err = zmq_errno();
      // A multipart message is atomic: a refused first frame means nothing went out.
      if (i == 0 && err == EAGAIN) return Send::refused;
      error = "frame " + std::to_string(i) + ": " + zmq_strerror(err);
      return Send::failed;
    }
    return Send::sent;
  }

  void close(std::int64_t) override {
    if (socket_) zmq_close(socket_);  // ZMQ_LINGER bounds the flush
    socket_ = nullptr;
  }

 private:
  // Receives until EAGAIN or the batch limit; returns true if input may be left.
  bool receive(std::int64_t max_messages, BodySink& sink) {
    for (std::int64_t n = 0; n < max_messages; ++n) {
      zmq_msg_t frame;
      zmq_msg_init(&frame);
      if (zmq_msg_recv(&frame, socket_, ZMQ_DONTWAIT) < 0) {
        int err = zmq_errno();
        zmq_msg_close(&frame);
        if (err != EAGAIN && err != EINTR) {
          ++counters_.receive_errors;
          log::warn("receive from ", endpoint_, " failed: ", zmq_strerror(err));
        }
        settled_ = true;  // EAGAIN: ZMQ_FD fires for the next message
        return err == EINTR;
      }
      ++counters_.messages_received;
      // A message's frames arrive together; each frame is one body.
      while (true) {
        sink.body(std::string_view(static_cast<const char*>(zmq_msg_data(&frame)), zmq_msg_size(&frame)));
        bool more = zmq_msg_more(&frame) != 0;
        zmq_msg_close(&frame);
        if (!more) break;
        zmq_msg_init(&frame);
        if (zmq_msg_recv(&frame, socket_, ZMQ_DONTWAIT) < 0) {
          ++counters_.receive_errors;
          zmq_msg_close(&frame);
          break;
        }
      }
    }
    return true;  // the batch limit: more may be waiting
  }

  std::string endpoint_;
  ShellCounters& counters_;
  void* socket_ = nullptr;
  int fd_ = -1;  // ZMQ_FD
  // Input may be waiting without ZMQ_FD firing (batch limit hit, or a send took the edge).
  bool pending_ = true;  // nothing is known yet: look before the first wait
  // The last call left ZMQ_FD armed (recv EAGAIN, or ZMQ_EVENTS without POLLIN): may block on it.
  bool settled_ = false;
};

}  // namespace

std::unique_ptr<PoolLink> make_libzmq_link(const BackendConfig& config, const std::string& endpoint,
                                           const std::string& worker_id, ShellCounters& counters, void* zmq_context,
                                           std::string& error) {
  auto link = std::make_unique<LibzmqLink>(endpoint, counters);
  if (!link->open(config, worker_id, zmq_context, error)) return nullptr;
  return link;
}

std::unique_ptr<PoolLink> make_pool_link(const BackendConfig& config, const std::string& endpoint,
                                         const std::string& worker_id, ShellCounters& counters, void*& zmq_context,
                                         std::string& error) {
  bool zmtp_endpoint = endpoint.rfind("tcp://", 0) == 0 || endpoint.rfind("ipc://", 0) == 0;
  if (config.pool_client == "zmtp" && zmtp_endpoint)
    return make_zmtp_link(config, endpoint, worker_id, counters, error);
  if (!zmq_context) {
    zmq_context = zmq_ctx_new();
    if (!zmq_context) {
      error = std::string("zmq_ctx_new: ") + zmq_strerror(zmq_errno());
      return nullptr;
    }
  }
  return make_libzmq_link(config, endpoint, worker_id, counters, zmq_context, error);
}

}  // namespace sb::backend
