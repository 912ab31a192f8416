// One worker-to-gateway connection of the pool, as the worker's loop sees it. Two kinds:
//  - zmtp: the worker speaks ZMTP 3.1 itself on its own loop thread (tcp:// and ipc://). A body
//    goes from the loop straight into write(2); libzmq would hand it to its I/O thread first,
//    two thread wake-ups per round trip that this VM makes expensive (see bench/README.md).
//  - libzmq: a ZeroMQ DEALER; any endpoint libzmq knows (inproc:// in tests).
// Both keep ZMQ_IMMEDIATE's contract: nothing queues while the gateway is unreachable.
// Loop thread only, like everything in the worker.
#pragma once
#include <poll.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backend/runtime/backend_config.hpp"
#include "backend/runtime/dispatcher.hpp"

namespace sb::backend {

struct ShellCounters {
  std::uint64_t messages_received = 0;  // pool messages (each one or more bodies)
  std::uint64_t messages_sent = 0;
  std::uint64_t send_eagain = 0;        // whole message refused: HWM reached or no connection
  std::uint64_t bodies_dropped = 0;     // bodies in refused messages
  std::uint64_t send_errors = 0;        // other send failures
  std::uint64_t receive_errors = 0;
  std::uint64_t connects = 0;           // zmtp: handshakes completed
  std::uint64_t disconnects = 0;        // zmtp: connections lost or dropped (protocol error)
  std::uint64_t lost_on_disconnect = 0; // zmtp: messages accepted but unsent when it dropped
};

// Receives what a link reads: each body of each message, in order.
class BodySink {
 public:
  virtual void body(std::string_view bytes) = 0;

 protected:
  ~BodySink() = default;
};

class PoolLink {
 public:
  enum class Send { sent, refused, failed };  // refused: EAGAIN (no connection, HWM)

  virtual ~PoolLink() = default;
  // Fills what to wait on (fd -1: nothing now). Returns true when input is already waiting, so
  // the loop must not block.
  virtual bool prepare_wait(pollfd& entry) = 0;
  // After the wait: `revents` for prepare_wait's fd (0 if it had none or it was not ready).
  // Reads at most `max_messages` messages into `sink`, writes what is queued, reconnects.
  virtual void service(short revents, std::int64_t max_messages, BodySink& sink, SteadyTime now) = 0;
  // When service() must run even without traffic (a reconnect), or SteadyTime::max().
  virtual SteadyTime deadline() const = 0;
  // One message, one body per frame. Never blocks.
  virtual Send send(const std::string* bodies, std::size_t count, std::string& error) = 0;
  // Flushes what is queued for at most `linger_ms`, then disconnects.
  virtual void close(std::int64_t linger_ms) = 0;
};

// zmtp for tcp:// and ipc:// endpoints unless config.pool_client is "libzmq"; libzmq otherwise.
// `zmq_context` is created on first use of a libzmq link when null (the caller terminates it).
std::unique_ptr<PoolLink> make_pool_link(const BackendConfig& config, const std::string& endpoint,
                                         const std::string& worker_id, ShellCounters& counters, void*& zmq_context,
                                         std::string& error);

std::unique_ptr<PoolLink> make_zmtp_link(const BackendConfig& config, const std::string& endpoint,
                                         const std::string& worker_id, ShellCounters& counters, std::string& error);
std::unique_ptr<PoolLink> make_libzmq_link(const BackendConfig& config, const std::string& endpoint,
                                           const std::string& worker_id, ShellCounters& counters, void* zmq_context,
                                           std::string& error);

}  // namespace sb::backend
