// The client side of RFC 6455 that the load generator needs, as pure functions: SHA-1 and
// base64 for the handshake, masked client frames, and an incremental server-frame parser.
// No sockets here, so it is unit-tested on its own (bench/tests).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sb::bench {

std::array<std::uint8_t, 20> sha1(std::string_view data);
std::string base64_encode(const std::uint8_t* data, std::size_t size);
inline std::string base64_encode(std::string_view s) {
  return base64_encode(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

// Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2).
std::string websocket_accept(std::string_view key);

enum class Opcode : std::uint8_t { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 };

// Appends one masked client frame (FIN set) to `out`. Masking costs a pass over the payload;
// `mask` comes from the caller so tests can be deterministic.
void append_client_frame(std::string& out, Opcode op, std::string_view payload, std::uint32_t mask);

// Size of the frame append_client_frame would write.
std::size_t client_frame_size(std::size_t payload);

struct Frame {
  Opcode opcode;
  bool fin;
  std::string_view payload;  // points into the parsed buffer (unmasked in place if it was masked)
};

enum class ParseStatus { frame, need_more, error };

// Parses one frame at the start of [data, data+size). On `frame`, `consumed` is its total size.
// Server frames are unmasked; a masked one is unmasked in place (hence the non-const buffer).
// `max_payload` bounds what a broken peer can make us buffer.
ParseStatus parse_frame(char* data, std::size_t size, std::size_t max_payload, Frame& frame, std::size_t& consumed,
                        std::string* error = nullptr);

// Result of checking a server's handshake answer.
struct HandshakeReply {
  enum class Status { incomplete, ok, bad } status = Status::incomplete;
  std::size_t header_bytes = 0;  // bytes of the HTTP head, including the blank line
  std::string error;
};
HandshakeReply check_handshake_reply(std::string_view buffer, std::string_view expected_accept);

std::string handshake_request(std::string_view host_port, std::string_view target, std::string_view key);

struct WsUrl {
  std::string host;
  std::uint16_t port = 80;
  std::string target = "/";  // path and query
};
std::optional<WsUrl> parse_ws_url(std::string_view url);

}  // namespace sb::bench
