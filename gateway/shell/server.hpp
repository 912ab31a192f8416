// The gateway's I/O shell: libwebsockets on a libev (epoll) loop, with the ZeroMQ ROUTER's descriptor
// polled by the same loop. One thread owns everything (lws allows one service thread, ZeroMQ
// sockets are not thread-safe), so the pool needs no hand-off queue and no locks.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "gateway/core/gateway_config.hpp"

namespace sb::gateway {

class Server {
 public:
  explicit Server(const GatewayConfig& config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listener and the pool, runs until SIGINT/SIGTERM. Returns the exit code.
  // Throws std::runtime_error on start-up failures (bind, context creation).
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::gateway
