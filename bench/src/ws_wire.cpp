#include "bench/src/ws_wire.hpp"

#include <cctype>
#include <cstring>

namespace sb::bench {
namespace {

std::uint32_t rotl(std::uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

void sha1_block(std::uint32_t h[5], const std::uint8_t* block) {
  std::uint32_t w[80];
  for (int i = 0; i < 16; ++i)
    w[i] = std::uint32_t(block[4 * i]) << 24 | std::uint32_t(block[4 * i + 1]) << 16 |
           std::uint32_t(block[4 * i + 2]) << 8 | std::uint32_t(block[4 * i + 3]);
  for (int i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
  for (int i = 0; i < 80; ++i) {
    std::uint32_t f, k;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDC;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6;
    }
    std::uint32_t t = rotl(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = rotl(b, 30);
    b = a;
    a = t;
  }
  h[0] += a;
  h[1] += b;
  h[2] += c;
  h[3] += d;
  h[4] += e;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::array<std::uint8_t, 20> sha1(std::string_view data) {
  std::uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  std::size_t n = data.size();
  std::size_t full = n / 64;
  for (std::size_t i = 0; i < full; ++i) sha1_block(h, p + 64 * i);
  // Padding: 0x80, zeros, then the length in bits, big-endian, in one or two final blocks.
  std::uint8_t tail[128] = {0};
  std::size_t rest = n - full * 64;
  std::memcpy(tail, p + full * 64, rest);
  tail[rest] = 0x80;
  std::size_t tail_size = rest + 1 + 8 <= 64 ? 64 : 128;
  std::uint64_t bits = static_cast<std::uint64_t>(n) * 8;
  for (int i = 0; i < 8; ++i) tail[tail_size - 1 - i] = static_cast<std::uint8_t>(bits >> (8 * i));
  sha1_block(h, tail);
  if (tail_size == 128) sha1_block(h, tail + 64);
  std::array<std::uint8_t, 20> out{};
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j) out[4 * i + j] = static_cast<std::uint8_t>(h[i] >> (24 - 8 * j));
  return out;
}

std::string base64_encode(const std::uint8_t* data, std::size_t size) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    std::uint32_t v = std::uint32_t(data[i]) << 16 | std::uint32_t(data[i + 1]) << 8 | data[i + 2];
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  if (size - i == 1) {
    std::uint32_t v = std::uint32_t(data[i]) << 16;
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += "==";
  } else if (size - i == 2) {
    std::uint32_t v = std::uint32_t(data[i]) << 16 | std::uint32_t(data[i + 1]) << 8;
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string websocket_accept(std::string_view key) {
  std::string joined(key);
  joined += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  auto digest = sha1(joined);
  return base64_encode(digest.data(), digest.size());
}

std::size_t client_frame_size(std::size_t payload) {
  std::size_t header = payload < 126 ? 2 : payload <= 0xffff ? 4 : 10;
  return header + 4 + payload;
}

void append_client_frame(std::string& out, Opcode op, std::string_view payload, std::uint32_t mask) {
  std::size_t start = out.size();
  std::size_t n = payload.size();
  out.resize(start + client_frame_size(n));
  auto* p = reinterpret_cast<std::uint8_t*>(out.data() + start);
  *p++ = 0x80 | static_cast<std::uint8_t>(op);
  if (n < 126) {
    *p++ = 0x80 | static_cast<std::uint8_t>(n);
  } else if (n <= 0xffff) {
    *p++ = 0x80 | 126;
    *p++ = static_cast<std::uint8_t>(n >> 8);
    *p++ = static_cast<std::uint8_t>(n);
  } else {
    *p++ = 0x80 | 127;
    for (int i = 7; i >= 0; --i) *p++ = static_cast<std::uint8_t>(static_cast<std::uint64_t>(n) >> (8 * i));
  }
  std::uint8_t key[4] = {static_cast<std::uint8_t>(mask >> 24), static_cast<std::uint8_t>(mask >> 16),
                         static_cast<std::uint8_t>(mask >> 8), static_cast<std::uint8_t>(mask)};
  std::memcpy(p, key, 4);
  p += 4;
  const auto* src = reinterpret_cast<const std::uint8_t*>(payload.data());
  for (std::size_t i = 0; i < n; ++i) p[i] = src[i] ^ key[i & 3];
}

ParseStatus parse_frame(char* data, std::size_t size, std::size_t max_payload, Frame& frame, std::size_t& consumed,
                        std::string* error) {
  auto fail = [&](const char* why) {
    if (error) *error = why;
    return ParseStatus::error;
  };
  if (size < 2) return ParseStatus::need_more;
  auto* p = reinterpret_cast<std::uint8_t*>(data);
  bool fin = p[0] & 0x80;
  if (p[0] & 0x70) return fail("reserved bits set");
  auto op = static_cast<Opcode>(p[0] & 0x0f);
  switch (op) {
    case Opcode::continuation:
    case Opcode::text:
    case Opcode::binary: break;
    case Opcode::close:
    case Opcode::ping:
    case Opcode::pong:
      if (!fin) return fail("fragmented control frame");
      break;
    default: return fail("unknown opcode");
  }
  bool masked = p[1] & 0x80;
  std::uint64_t length = p[1] & 0x7f;
  std::size_t header = 2;
  if (length == 126) {
    if (size < 4) return ParseStatus::need_more;
    length = std::uint64_t(p[2]) << 8 | p[3];
    header = 4;
  } else if (length == 127) {
    if (size < 10) return ParseStatus::need_more;
    length = 0;
    for (int i = 0; i < 8; ++i) length = length << 8 | p[2 + i];
    header = 10;
  }
  if (static_cast<int>(op) >= 8 && length > 125) return fail("control frame too long");
  if (length > max_payload) return fail("frame longer than the limit");
  std::size_t mask_at = header;
  if (masked) header += 4;
  if (size < header + length) return ParseStatus::need_more;
  if (masked) {
    std::uint8_t key[4];
    std::memcpy(key, p + mask_at, 4);
    for (std::uint64_t i = 0; i < length; ++i) p[header + i] ^= key[i & 3];
  }
  frame.opcode = op;
  frame.fin = fin;
  frame.payload = std::string_view(data + header, static_cast<std::size_t>(length));
  consumed = header + static_cast<std::size_t>(length);
  return ParseStatus::frame;
}

std::string handshake_request(std::string_view host_port, std::string_view target, std::string_view key) {
  std::string r;
  r.reserve(200 + target.size());
  r += "GET ";
  r += target;
  r += " HTTP/1.1\r\nHost: ";
  r += host_port;
  r += "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ";
  r += key;
  r += "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  return r;
}

HandshakeReply check_handshake_reply(std::string_view buffer, std::string_view expected_accept) {
  HandshakeReply reply;
  auto end = buffer.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (buffer.size() > 16384) {
      reply.status = HandshakeReply::Status::bad;
      reply.error = "handshake reply head too long";
    }
    return reply;
  }
  reply.header_bytes = end + 4;
  std::string_view head = buffer.substr(0, end + 2);
  auto line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  reply.status = HandshakeReply::Status::bad;
  // "HTTP/1.1 101 Switching Protocols"
  if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/" || status_line.substr(8, 4) != " 101") {
    reply.error = "expected 101, got: " + std::string(status_line.substr(0, 80));
    return reply;
  }
  bool upgrade = false, accept_ok = false;
  std::string_view rest = head.substr(line_end + 2);
  while (!rest.empty()) {
    auto eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 2);
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    auto name = trim(line.substr(0, colon));
    auto value = trim(line.substr(colon + 1));
    if (iequals(name, "upgrade") && iequals(value, "websocket")) upgrade = true;
    if (iequals(name, "sec-websocket-accept")) accept_ok = value == expected_accept;
  }
  if (!upgrade) {
    reply.error = "101 without Upgrade: websocket";
    return reply;
  }
  if (!accept_ok) {
    reply.error = "missing or wrong Sec-WebSocket-Accept";
    return reply;
  }
  reply.status = HandshakeReply::Status::ok;
  return reply;
}

std::optional<WsUrl> parse_ws_url(std::string_view url) {
  constexpr std::string_view scheme = "ws://";
  if (url.substr(0, scheme.size()) != scheme) return std::nullopt;
  url.remove_prefix(scheme.size());
  WsUrl out;
  auto slash = url.find_first_of("/?");
  std::string_view authority = url.substr(0, slash);
  std::string_view target = slash == std::string_view::npos ? std::string_view("/") : url.substr(slash);
  out.target = std::string(target);
  if (out.target.front() == '?') out.target.insert(out.target.begin(), '/');
  auto colon = authority.rfind(':');
  if (colon == std::string_view::npos) {
    out.host = std::string(authority);
  } else {
    out.host = std::string(authority.substr(0, colon));
    unsigned port = 0;
    auto digits = authority.substr(colon + 1);
    if (digits.empty() || digits.size() > 5) return std::nullopt;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      port = port * 10 + static_cast<unsigned>(c - '0');
    }
    if (port == 0 || port > 65535) return std::nullopt;
    out.port = static_cast<std::uint16_t>(port);
  }
  if (out.host.empty()) return std::nullopt;
  return out;
}

}  // namespace sb::bench
