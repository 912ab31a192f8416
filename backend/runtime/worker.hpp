// The worker's ZeroMQ shell: one DEALER per gateway, one poll() loop on one thread,
// everything else delegated to the pure Dispatcher. Each loop iteration reads a bounded batch
// from every gateway, runs the timers, and sends each gateway's outbox as ONE multipart message
// (one body per frame). Sends never block: EAGAIN (high-water mark, no connection) is counted.
// The loop waits on the sockets' ZMQ_FDs itself rather than in zmq_poll, which spends four
// system calls per wait on checks this loop can skip (see step()).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backend/app.hpp"
#include "backend/runtime/backend_config.hpp"
#include "backend/runtime/dispatcher.hpp"

namespace sb::backend {

struct ShellCounters {
  std::uint64_t messages_received = 0;  // ZeroMQ messages (each one or more bodies)
  std::uint64_t messages_sent = 0;
  std::uint64_t send_eagain = 0;        // whole message refused: HWM reached or no connection
  std::uint64_t bodies_dropped = 0;     // bodies in refused messages
  std::uint64_t send_errors = 0;        // other zmq_send failures
  std::uint64_t receive_errors = 0;
};

class Worker {
 public:
  // `apps` must outlive the worker. `shared_context`: use this zmq context (e.g. for inproc://
  // in tests) instead of creating one.
  Worker(const BackendConfig& config, std::string worker_id, std::vector<App*> apps, void* shared_context = nullptr);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Creates the sockets and connects them (start-up: failures are configuration errors).
  bool open(std::string& error);
  // One loop iteration: waits for traffic, `stop_fd` (if >= 0) or the next timer, capped at
  // `max_wait_ms` (if >= 0). Returns false once stop_fd is readable (nothing is read from it).
  bool step(int stop_fd, int max_wait_ms = -1);
  // Loops until stop_fd is readable (a signal), then drains: BYE to every welcomed gateway,
  // events keep being processed and ACKed until every gateway answered BYE or
  // --drain-timeout-ms passed; then closes. stop_fd readable again during the drain (a second
  // signal) ends it at once. Reads (consumes) what arrives on stop_fd, which should be
  // non-blocking. Returns the exit code (0).
  int run(int stop_fd);
  // The drain part of run(), for callers with their own loop. Returns true if every gateway
  // answered, false on timeout or stop_fd.
  bool drain(int stop_fd);
  // BYE to welcomed gateways unless drained already, a last flush, sockets closed (bounded by linger).
  void close();

  Dispatcher& dispatcher() { return dispatcher_; }
  const ShellCounters& counters() const { return counters_; }
  const std::string& worker_id() const { return worker_id_; }

 private:
  void send_batch(std::size_t gateway, std::vector<std::string>& bodies);
  // Receives until EAGAIN or the batch limit; returns true if input may be left.
  bool receive_from(std::size_t gateway, SteadyTime now);

  BackendConfig config_;
  std::string worker_id_;
  Dispatcher dispatcher_;
  void* context_ = nullptr;
  bool own_context_ = false;
  std::vector<void*> sockets_;
  std::vector<int> socket_fds_;  // ZMQ_FD of each socket
  // Per socket (loop thread only): input may be waiting without ZMQ_FD firing (batch limit hit,
  // or a send took the edge); settled = the last call left ZMQ_FD armed (recv EAGAIN, or
  // ZMQ_EVENTS without POLLIN), so the loop may block on it.
  std::vector<char> pending_;
  std::vector<char> settled_;
  bool started_ = false;
  ShellCounters counters_;
};

}  // namespace sb::backend
