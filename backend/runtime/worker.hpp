// The worker's I/O shell: one pool link per gateway (pool_link.hpp), one poll() loop on one
// thread, everything else delegated to the pure Dispatcher. Each loop iteration reads a bounded
// batch from every gateway, runs the timers, and sends each gateway's outbox as ONE multipart
// message (one body per frame). Sends never block: refusals (high-water mark, no connection)
// are counted.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/app.hpp"
#include "backend/runtime/backend_config.hpp"
#include "backend/runtime/dispatcher.hpp"
#include "backend/runtime/pool_link.hpp"

namespace sb::backend {

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

  BackendConfig config_;
  std::string worker_id_;
  Dispatcher dispatcher_;
  void* context_ = nullptr;  // libzmq links only
  bool own_context_ = false;
  ShellCounters counters_;  // before links_: they count into it
  std::vector<std::unique_ptr<PoolLink>> links_;  // one per gateway, in config order
  bool started_ = false;
};

}  // namespace sb::backend
