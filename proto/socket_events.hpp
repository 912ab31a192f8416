// Socket event family: what the gateway tells a worker about one WebSocket.
// All events of one WSID go to one worker at a time, in order.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sb::proto {

struct Open {
  std::string wsid;
  std::string app;
  std::string path;
  std::string query;  // raw, without '?'
  std::vector<std::pair<std::string, std::string>> headers;  // selected, lower-case names
  std::string session_id;
  std::string remote_address;
  // Take-over (issue 3): the socket was accepted earlier by a worker that is gone or draining.
  // The new worker registers it without calling on_open; events after acked_seq follow.
  bool resume = false;
  std::uint64_t acked_seq = 0;
};

struct Message {
  std::string wsid;
  std::uint64_t seq = 0;  // 1, 2, 3... per WSID
  bool binary = false;
  std::string payload;
};

struct Close {
  std::string wsid;
  std::uint16_t code = 0;
  std::string reason;
};

// No message from the client for the app's idle_timeout_ms (IRIS Read timeout).
struct Idle {
  std::string wsid;
};

}  // namespace sb::proto
