// The gateway's end of the pool, as its loop sees it: a ZeroMQ ROUTER that workers (DEALERs)
// connect to. Two kinds:
//  - zmtp: the gateway speaks ZMTP 3.1 itself, its listeners and connections watched by the
//    gateway's own libev loop. A message goes from the loop straight into write(2); libzmq
//    would hand it to its I/O thread first, two thread wake-ups per round trip (expensive on
//    this VM, see bench/README.md).
//  - libzmq: a libzmq ROUTER.
// Both keep the ROUTER's contract as the gateway configured it: ROUTER_MANDATORY (a send to an
// unknown worker fails), ROUTER_HANDOVER (a new connection with a known id takes it over),
// SNDHWM per worker, MAXMSGSIZE. Loop thread only.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/core/gateway_config.hpp"

struct ev_loop;

namespace sb::gateway {

struct PoolRouterCounters {
  std::uint64_t connects = 0;            // workers' connections handshaken (zmtp)
  std::uint64_t disconnects = 0;         // connections closed or lost after the handshake (zmtp)
  std::uint64_t handovers = 0;           // a connection took over a connected id (zmtp)
  std::uint64_t protocol_errors = 0;     // connections dropped for bad ZMTP or a frame over the limit (zmtp)
  std::uint64_t lost_on_disconnect = 0;  // messages accepted but unsent when their connection went (zmtp)
  std::uint64_t accept_failures = 0;     // accept() errors other than "try again" (zmtp)
};

class PoolRouter {
 public:
  enum class Send { sent, unreachable, full };  // full: over the worker's high-water mark

  class Sink {
   public:
    virtual void pool_body(const std::string& routing_id, std::string_view body) = 0;

   protected:
    ~Sink() = default;
  };

  virtual ~PoolRouter() = default;
  // Reads messages until none are left or `handled` reaches `budget` (one per message); each
  // body goes to `sink`. Returns true if input may be left.
  virtual bool receive(std::size_t& handled, std::size_t budget, Sink& sink) = 0;
  // One message to `routing_id`, one body per frame. Never blocks.
  virtual Send send(std::string_view routing_id, const std::vector<std::string>& bodies) = 0;
  // After sends: true if input may be waiting that no watcher will report (libzmq's ZMQ_FD is
  // edge-triggered and a send can take the edge).
  virtual bool input_unreported() = 0;
  // Flushes for at most `linger_ms`, closes everything, removes the ipc:// files it bound.
  virtual void close(int linger_ms) = 0;
  virtual const PoolRouterCounters& counters() const = 0;
};

// Binds config.pool's endpoints; `on_input` runs (on the loop) when input arrives. Throws
// std::runtime_error when an endpoint cannot be bound (a start-up error).
std::unique_ptr<PoolRouter> make_pool_router(const GatewayConfig& config, struct ev_loop* loop,
                                             std::function<void()> on_input);

}  // namespace sb::gateway
