#include "gateway/core/ws_frame.hpp"

namespace sb::gateway {

void append_frame(std::string& out, std::string_view payload, bool binary) {
  const unsigned char opcode = binary ? 0x2 : 0x1;
  out.push_back(static_cast<char>(0x80 | opcode));
  const std::size_t n = payload.size();
  if (n <= 125) {
    out.push_back(static_cast<char>(n));
  } else if (n <= 0xffff) {
    out.push_back(static_cast<char>(126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((static_cast<unsigned long long>(n) >> shift) & 0xff));
  }
  out.append(payload);
}

std::string make_frame(std::string_view payload, bool binary) {
  std::string out;
  out.reserve(payload.size() + max_frame_header);
  append_frame(out, payload, binary);
  return out;
}

void append_close_frame(std::string& out, std::uint16_t code, std::string_view reason) {
  std::size_t keep = reason.size() < 123 ? reason.size() : 123;
  while (keep > 0 && keep < reason.size() && (static_cast<unsigned char>(reason[keep]) & 0xc0) == 0x80) --keep;
  out.push_back(static_cast<char>(0x88));
  out.push_back(static_cast<char>(2 + keep));
  out.push_back(static_cast<char>(code >> 8));
  out.push_back(static_cast<char>(code & 0xff));
  out.append(reason.substr(0, keep));
}

}  // namespace sb::gateway
