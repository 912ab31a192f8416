// Unit tests of the bench's pure parts: SHA-1 (FIPS 180 vectors), base64, the RFC 6455
// handshake key, client frame encoding, the server-frame parser, stamps and the histogram.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <string>

#include "bench/src/stats.hpp"
#include "bench/src/ws_wire.hpp"

using namespace sb::bench;

namespace {
std::string hex(const std::array<std::uint8_t, 20>& d) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (auto b : d) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::string server_frame(std::uint8_t first, std::string_view payload) {
  std::string f;
  f += static_cast<char>(first);
  std::size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(n);
  } else if (n <= 0xffff) {
    f += static_cast<char>(126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xff);
  }
  f += payload;
  return f;
}
}  // namespace

TEST_CASE("sha1 matches the FIPS 180 vectors") {
  CHECK(hex(sha1("")) == "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  CHECK(hex(sha1("abc")) == "a9993e364706816aba3e25717850c26c9cd0d89d");
  CHECK(hex(sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  CHECK(hex(sha1(std::string(1000000, 'a'))) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  // Lengths around the padding boundary (55, 56, 64 bytes).
  CHECK(hex(sha1(std::string(55, 'a'))) == "c1c8bbdc22796e28c0e15163d20899b65621d65a");
  CHECK(hex(sha1(std::string(56, 'a'))) == "c2db330f6083854c99d4b5bfb6e8f29f201be699");
  CHECK(hex(sha1(std::string(64, 'a'))) == "0098ba824b5c16427bd7a1122a5a442a25ec644d");
}

TEST_CASE("base64 pads correctly") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
}

TEST_CASE("Sec-WebSocket-Accept of the RFC 6455 example") {
  CHECK(websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST_CASE("handshake reply check") {
  std::string accept = websocket_accept("dGhlIHNhbXBsZSBub25jZQ==");
  std::string ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "sec-websocket-accept: " + accept + "\r\n\r\n";
  auto r = check_handshake_reply(ok + "\x81\x02hi", accept);
  CHECK(r.status == HandshakeReply::Status::ok);
  CHECK(r.header_bytes == ok.size());
  CHECK(check_handshake_reply(ok.substr(0, 40), accept).status == HandshakeReply::Status::incomplete);
  auto wrong = check_handshake_reply(ok, "AAAA");
  CHECK(wrong.status == HandshakeReply::Status::bad);
  auto refused = check_handshake_reply("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", accept);
  CHECK(refused.status == HandshakeReply::Status::bad);
  CHECK(refused.error.find("404") != std::string::npos);
  auto req = handshake_request("127.0.0.1:9", "/echo?room=a", "KEY");
  CHECK(req.rfind("GET /echo?room=a HTTP/1.1\r\n", 0) == 0);
  CHECK(req.find("Sec-WebSocket-Key: KEY\r\n") != std::string::npos);
  CHECK(req.size() >= 4);
  CHECK(req.substr(req.size() - 4) == "\r\n\r\n");
}

TEST_CASE("client frames are masked and round-trip through the parser") {
  for (std::size_t n : {0u, 5u, 125u, 126u, 65535u, 65536u, 70000u}) {
    std::string payload(n, 'x');
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>('a' + i % 26);
    std::string wire;
    append_client_frame(wire, Opcode::text, payload, 0x11223344);
    CHECK(wire.size() == client_frame_size(n));
    CHECK((static_cast<std::uint8_t>(wire[1]) & 0x80) != 0);  // mask bit
    Frame f{};
    std::size_t used = 0;
    REQUIRE(parse_frame(wire.data(), wire.size(), 1 << 20, f, used) == ParseStatus::frame);
    CHECK(used == wire.size());
    CHECK(f.opcode == Opcode::text);
    CHECK(f.fin);
    CHECK(f.payload == payload);
  }
}

TEST_CASE("server frames: 7/16/64-bit lengths, partial input, control frames, errors") {
  for (std::size_t n : {3u, 200u, 70000u}) {
    std::string payload(n, 'p');
    std::string wire = server_frame(0x82, payload);
    Frame f{};
    std::size_t used = 0;
    for (std::size_t cut : {std::size_t{0}, std::size_t{1}, std::size_t{3}, wire.size() - 1})
      CHECK(parse_frame(wire.data(), cut, 1 << 20, f, used) == ParseStatus::need_more);
    REQUIRE(parse_frame(wire.data(), wire.size(), 1 << 20, f, used) == ParseStatus::frame);
    CHECK(f.opcode == Opcode::binary);
    CHECK(f.payload.size() == n);
    CHECK(used == wire.size());
  }
  std::string two = server_frame(0x89, "pi") + server_frame(0x88, std::string("\x03\xe8", 2));
  Frame f{};
  std::size_t used = 0;
  REQUIRE(parse_frame(two.data(), two.size(), 100, f, used) == ParseStatus::frame);
  CHECK(f.opcode == Opcode::ping);
  CHECK(f.payload == "pi");
  REQUIRE(parse_frame(two.data() + used, two.size() - used, 100, f, used) == ParseStatus::frame);
  CHECK(f.opcode == Opcode::close);
  // Fragments.
  std::string frag = server_frame(0x01, "ab");
  REQUIRE(parse_frame(frag.data(), frag.size(), 100, f, used) == ParseStatus::frame);
  CHECK_FALSE(f.fin);
  std::string bad = server_frame(0x83, "x");  // opcode 3 is reserved
  CHECK(parse_frame(bad.data(), bad.size(), 100, f, used) == ParseStatus::error);
  std::string big_ping = server_frame(0x89, std::string(126, 'x'));
  CHECK(parse_frame(big_ping.data(), big_ping.size(), 1000, f, used) == ParseStatus::error);
  std::string too_long = server_frame(0x81, std::string(200, 'x'));
  CHECK(parse_frame(too_long.data(), too_long.size(), 100, f, used) == ParseStatus::error);
  std::string rsv = server_frame(0xC1, "x");
  CHECK(parse_frame(rsv.data(), rsv.size(), 100, f, used) == ParseStatus::error);
}

TEST_CASE("ws URLs") {
  auto u = parse_ws_url("ws://127.0.0.1:8080/echo?room=a");
  REQUIRE(u);
  CHECK(u->host == "127.0.0.1");
  CHECK(u->port == 8080);
  CHECK(u->target == "/echo?room=a");
  auto v = parse_ws_url("ws://localhost");
  REQUIRE(v);
  CHECK(v->port == 80);
  CHECK(v->target == "/");
  CHECK_FALSE(parse_ws_url("http://x:1/"));
  CHECK_FALSE(parse_ws_url("ws://x:0/"));
  CHECK_FALSE(parse_ws_url("ws://x:99999/"));
}

TEST_CASE("stamps round-trip and ignore probes") {
  Stamp s{1234567890123, 42, 7};
  std::string p = make_payload(s, 64);
  CHECK(p.size() == 64);
  Stamp back;
  REQUIRE(parse_stamp(p, back));
  CHECK(back.time_ns == s.time_ns);
  CHECK(back.sender == 42);
  CHECK(back.seq == 7);
  restamp(p, {5, 6, 8});
  REQUIRE(parse_stamp(p, back));
  CHECK(back.time_ns == 5);
  CHECK(back.seq == 8);
  CHECK(make_payload(s, 4).size() == stamp_size);
  CHECK_FALSE(parse_stamp("#probe-1", back));
  CHECK_FALSE(parse_stamp(std::string(40, '#'), back));
}

TEST_CASE("histogram percentiles are within 2 %") {
  Histogram h;
  for (int i = 1; i <= 100000; ++i) h.record(i * 1000LL);  // 1 us .. 100 ms
  CHECK(h.count() == 100000);
  auto near = [](std::uint64_t got, double want) { return got >= want * 0.98 && got <= want * 1.02; };
  CHECK(near(h.percentile(50), 50'000'000.0));
  CHECK(near(h.percentile(99), 99'000'000.0));
  CHECK(h.percentile(100) == 100'000'000u);
  CHECK(h.max() == 100'000'000u);
  Histogram small;
  for (int v : {3, 3, 3, 100}) small.record(v);
  CHECK(small.percentile(50) == 3);
  CHECK(small.percentile(100) == 100);
  for (std::uint64_t v : {127ull, 128ull, 1000ull, 1ull << 40})
    CHECK(Histogram::midpoint(Histogram::index(v)) >= v - v / 64);
  Histogram merged;
  merged.merge(h);
  merged.merge(small);
  CHECK(merged.count() == 100004);
  CHECK(merged.min() == 3);
}

TEST_CASE("tail spread tells stalls from independent delays") {
  const std::int64_t ms = 1000000, phase = 1000 * ms;
  // 20 000 samples over 1 s, 50 us apart, latency 300 us.
  auto make = [&] {
    std::vector<std::pair<std::int64_t, std::int64_t>> v;
    for (std::int64_t i = 0; i < 20000; ++i) v.emplace_back(i * 50000, 300000);
    return v;
  };
  // Stalls: two bursts of 100 consecutive late messages (5 ms each).
  auto stalls = make();
  for (int i = 0; i < 100; ++i) {
    stalls[static_cast<std::size_t>(1000 + i)].second = 2 * ms;
    stalls[static_cast<std::size_t>(15000 + i)].second = 3 * ms;
  }
  auto s = tail_spread(stalls, phase, 10 * ms, 99);
  CHECK(s.windows == 100);
  CHECK(s.tail_samples == 200);
  CHECK(s.windows_with_tail == 2);  // each burst fits in one 10 ms window
  // Independent: every 100th message late, spread evenly.
  auto spread = make();
  for (std::size_t i = 0; i < spread.size(); i += 100) spread[i].second = 2 * ms;
  auto e = tail_spread(spread, phase, 10 * ms, 99);
  CHECK(e.tail_samples == 200);
  CHECK(e.windows_with_tail == 100);
  CHECK(tail_spread({}, phase, 10 * ms, 99).windows == 0);
}
