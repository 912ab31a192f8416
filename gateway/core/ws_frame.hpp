// Server-to-client WebSocket frame headers (RFC 6455 §5.2): unmasked, FIN set.
// Frames are built once and the same bytes go to every recipient (room fan-out).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sb::gateway {

inline constexpr std::size_t max_frame_header = 10;

// Appends one complete frame (header + payload) to out.
void append_frame(std::string& out, std::string_view payload, bool binary);
std::string make_frame(std::string_view payload, bool binary);

// Appends a close frame with `code` and as much of `reason` as fits in 123 bytes (cut on a
// UTF-8 character boundary, since the reason must stay valid UTF-8).
void append_close_frame(std::string& out, std::uint16_t code, std::string_view reason);

}  // namespace sb::gateway
