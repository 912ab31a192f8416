// Message kinds on the gateway <-> worker pool. Every pool message body is a msgpack array
// whose first element is one of these; see PROTOCOL.md for the field lists.
#pragma once
#include <cstdint>
#include <string_view>

namespace sb::proto {

inline constexpr std::uint32_t protocol_version = 1;

enum class Kind : std::uint8_t {
  // link.hpp
  hello = 1,      // worker -> gateway: who I am, which apps I serve
  welcome = 2,    // gateway -> worker: gateway id and epoch
  heartbeat = 3,  // both ways; any traffic counts as liveness
  bye = 4,        // worker -> gateway: draining, send me no new sockets
  // socket_events.hpp (gateway -> worker)
  open = 10,
  message = 11,
  close = 12,
  idle = 13,
  // commands.hpp (worker -> gateway)
  write = 20,
  end = 21,
  subscribe = 22,
  unsubscribe = 23,
  publish = 24,
  query = 25,
  // feedback.hpp
  gone = 30,    // gateway -> worker: that WSID is not open here
  ack = 31,     // worker -> gateway: processed events of a WSID up to seq
  status = 32,  // gateway -> worker: answer to query
};

std::string_view kind_name(Kind kind);

}  // namespace sb::proto
