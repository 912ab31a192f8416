// Server-to-client WebSocket frame headers (RFC 6455 §5.2): unmasked, FIN set.
// Frames are built once and the same bytes go to every recipient (room fan-out).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace sb::gateway {

inline constexpr std::size_t max_frame_header = 10;

// Appends one complete frame (header + payload) to out.
void append_frame(std::string& out, std::string_view payload, bool binary);
std::string make_frame(std::string_view payload, bool binary);

}  // namespace sb::gateway
