// Encoding and decoding of pool messages. decode() never throws: malformed input of any
// kind (wrong type, missing field, oversized, too deep, trailing bytes) becomes an error.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <variant>

#include "proto/commands.hpp"
#include "proto/feedback.hpp"
#include "proto/kinds.hpp"
#include "proto/link.hpp"
#include "proto/socket_events.hpp"

namespace sb::proto {

using Envelope = std::variant<Hello, Welcome, Heartbeat, Bye, Open, Message, Close, Idle, Write, End, Subscribe,
                              Unsubscribe, Publish, Query, Gone, Ack, Status>;

Kind kind_of(const Envelope& envelope);

struct DecodeLimits {
  std::size_t max_bytes = 16u << 20;     // whole body; larger bodies are refused unread
  std::size_t max_array = 100'000;       // e.g. WRITE targets
  std::size_t max_map = 256;             // OPEN headers
  std::size_t max_string = 16u << 20;    // payloads are bin or str
  std::size_t max_depth = 4;             // our messages nest at most 3 deep
};

struct Decoded {
  std::variant<Envelope, std::string> result;  // the message, or why it was refused
  bool ok() const { return result.index() == 0; }
  const Envelope& envelope() const { return std::get<0>(result); }
  Envelope& envelope() { return std::get<0>(result); }
  const std::string& error() const { return std::get<1>(result); }
};

std::string encode(const Envelope& envelope);
void encode_into(const Envelope& envelope, std::string& out);  // appends
Decoded decode(std::string_view bytes, const DecodeLimits& limits = {});

}  // namespace sb::proto
