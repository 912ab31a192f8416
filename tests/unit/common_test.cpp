// Common utilities: base64, query strings, WSIDs, close codes, option helpers.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <unordered_set>
#include <vector>

#include <unistd.h>

#include "common/base64.hpp"
#include "common/close_codes.hpp"
#include "common/options.hpp"
#include "common/query.hpp"
#include "common/wsid.hpp"

using namespace std::string_literals;

// ============================== base64 ==============================

TEST_CASE("base64: RFC 4648 section 10 test vectors") {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},         {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : vectors) {
    CAPTURE(plain);
    CHECK(sb::base64_encode(plain) == encoded);
    auto back = sb::base64_decode(encoded);
    REQUIRE(back.has_value());
    CHECK(*back == plain);
  }
}

TEST_CASE("base64: every byte value and all lengths round trip") {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  CHECK(sb::base64_encode("\xff\xfe\xfd"s) == "//79");
  CHECK(sb::base64_encode("\xfb\xff"s) == "+/8=");
  CHECK(sb::base64_encode("\0"s) == "AA==");
  for (std::size_t len = 0; len <= bytes.size(); ++len) {
    std::string part = bytes.substr(bytes.size() - len);
    std::string enc = sb::base64_encode(part);
    CHECK(enc.size() == (len + 2) / 3 * 4);
    auto dec = sb::base64_decode(enc);
    REQUIRE(dec.has_value());
    CHECK(*dec == part);
  }
}

TEST_CASE("base64: UTF-8 text round trips byte for byte") {
  // What the chat page sends: btoa over the UTF-8 bytes of the text.
  CHECK(sb::base64_encode("Grüße") == "R3LDvMOfZQ==");
  CHECK(sb::base64_encode("世界") == "5LiW55WM");
  CHECK(sb::base64_encode("🎉") == "8J+OiQ==");
  for (std::string text : {"Grüße, 世界!"s, "Привет"s, "emoji 🎉🚀 mixed é"s, "<img src=x onerror=alert(1)>"s}) {
    auto back = sb::base64_decode(sb::base64_encode(text));
    REQUIRE(back.has_value());
    CHECK(*back == text);
  }
}

TEST_CASE("base64: malformed input is rejected") {
  // Length not a multiple of 4 (unpadded input is not accepted).
  for (std::string bad : {"Z", "Zg", "Zg=", "Zm9vY", "Zm9vYmFy=", "Zm8"}) {
    CAPTURE(bad);
    CHECK_FALSE(sb::base64_decode(bad).has_value());
  }
  // Characters outside the alphabet, including the URL-safe ones and whitespace.
  for (std::string bad : {"Zm9-"s, "Zm9_"s, "Zm 9"s, "Zm9v\n"s, "Zm9v\r\nYmFy"s, "Zm.v"s, "Zm9\0"s, "Zm9\xc3"s,
                          "Zm9vYmF*"s}) {
    CAPTURE(bad);
    CHECK_FALSE(sb::base64_decode(bad).has_value());
  }
  // Padding in the wrong place.
  for (std::string bad : {"====", "Z===", "=Zg=", "Z=g=", "Zg==Zm8=", "Zm8=Zm8=", "Zg=a", "Zm=v", "Zm9v===="}) {
    CAPTURE(bad);
    CHECK_FALSE(sb::base64_decode(bad).has_value());
  }
  // Non-canonical: the bits the padding hides must be zero (RFC 4648 3.5).
  for (std::string bad : {"Zh==", "Zm9=", "QR==", "AB==", "AAB="}) {
    CAPTURE(bad);
    CHECK_FALSE(sb::base64_decode(bad).has_value());
  }
  CHECK(sb::base64_decode("QQ==").value() == "A");
  CHECK(sb::base64_decode("AAA=").value() == "\0\0"s);
}

// ============================== query strings ==============================

TEST_CASE("query: parameters present, absent, empty") {
  using sb::query_param;
  CHECK(query_param("room=lobby", "room").value() == "lobby");
  CHECK(query_param("?room=lobby", "room").value() == "lobby");
  CHECK(query_param("a=1&room=lobby&b=2", "room").value() == "lobby");
  CHECK(query_param("a=1&b=2&room=last", "room").value() == "last");
  CHECK(query_param("room=first&room=second", "room").value() == "first");
  CHECK(query_param("room=a=b", "room").value() == "a=b");
  CHECK_FALSE(query_param("", "room").has_value());
  CHECK_FALSE(query_param("?", "room").has_value());
  CHECK_FALSE(query_param("a=1&b=2", "room").has_value());
  CHECK_FALSE(query_param("rooms=x&myroom=y&roo=z", "room").has_value());
  CHECK_FALSE(query_param("ROOM=x", "room").has_value());  // names are case-sensitive
  CHECK(query_param("room=", "room").value() == "");
  CHECK(query_param("room", "room").value() == "");
  CHECK(query_param("a=1&room&b=2", "room").value() == "");
  CHECK(query_param("&&room=x&&", "room").value() == "x");
}

TEST_CASE("query: percent-decoding and '+'") {
  using sb::query_param;
  CHECK(query_param("room=a%20b", "room").value() == "a b");
  CHECK(query_param("room=a+b", "room").value() == "a b");
  CHECK(query_param("room=a%2Bb", "room").value() == "a+b");
  CHECK(query_param("room=caf%C3%A9", "room").value() == "café");
  CHECK(query_param("room=caf%c3%a9", "room").value() == "café");
  CHECK(query_param("room=%E4%B8%96%E7%95%8C", "room").value() == "世界");
  CHECK(query_param("room=%26%3D%25", "room").value() == "&=%");
  CHECK(query_param("room=%00", "room").value() == "\0"s);  // decoded faithfully; callers validate
  // Encoded names match too (form encoding covers names as well as values).
  CHECK(query_param("ro%6Fm=x", "room").value() == "x");
  CHECK(query_param("my+room=x", "my room").value() == "x");

  using sb::percent_decode;
  CHECK(percent_decode("").value() == "");
  CHECK(percent_decode("plain").value() == "plain");
  CHECK(percent_decode("%41%42c").value() == "ABc");
  CHECK(percent_decode("100%25").value() == "100%");
  CHECK(percent_decode("a++b").value() == "a  b");
}

TEST_CASE("query: broken percent escapes") {
  using sb::percent_decode;
  for (std::string bad : {"%", "%4", "a%", "a%4", "%zz", "%g1", "%1g", "%%41", "x%-1", "%+1", "% 1"}) {
    CAPTURE(bad);
    CHECK_FALSE(percent_decode(bad).has_value());
  }
  // A broken value reads as absent; other parameters are unaffected.
  CHECK_FALSE(sb::query_param("room=%zz", "room").has_value());
  CHECK_FALSE(sb::query_param("room=abc%", "room").has_value());
  CHECK(sb::query_param("x=%zz&room=ok", "room").value() == "ok");
  CHECK(sb::query_param("%zz=1&room=ok", "room").value() == "ok");
}

// ============================== WSIDs ==============================

TEST_CASE("wsid: base36 edges") {
  CHECK(sb::to_base36(0) == "0");
  CHECK(sb::to_base36(35) == "z");
  CHECK(sb::to_base36(36) == "10");
  CHECK(sb::to_base36(36 * 36 - 1) == "zz");
  CHECK(sb::to_base36(UINT64_MAX) == "3w5e11264sgsf");
  CHECK(sb::from_base36("0").value() == 0);
  CHECK(sb::from_base36("z").value() == 35);
  CHECK(sb::from_base36("10").value() == 36);
  CHECK(sb::from_base36("3w5e11264sgsf").value() == UINT64_MAX);
  CHECK(sb::from_base36("3w5e11264sgse").value() == UINT64_MAX - 1);
  // One past UINT64_MAX, and 13 digits well past it.
  CHECK_FALSE(sb::from_base36("3w5e11264sgsg").has_value());
  CHECK_FALSE(sb::from_base36("zzzzzzzzzzzzz").has_value());
  CHECK_FALSE(sb::from_base36("10000000000000").has_value());  // 14 digits
  CHECK_FALSE(sb::from_base36("").has_value());
  CHECK_FALSE(sb::from_base36("A").has_value());  // lower case only
  CHECK_FALSE(sb::from_base36("-1").has_value());
  CHECK_FALSE(sb::from_base36("1 ").has_value());
  std::uint64_t samples[] = {1, 2, 35, 36, 37, 1295, 1296, 0xffffffffULL, 1ULL << 32, 1ULL << 63, UINT64_MAX / 36,
                             UINT64_MAX - 35, UINT64_MAX};
  for (auto v : samples) {
    CAPTURE(v);
    CHECK(sb::from_base36(sb::to_base36(v)).value() == v);
  }
}

TEST_CASE("wsid: make and parse round trip") {
  struct Case {
    std::string gateway;
    std::uint64_t epoch, counter;
  };
  const Case cases[] = {
      {"gw", 0, 0},
      {"gw-1", 1, 1},
      {"Gateway_A-2", 0x0190f3a2b4c5ULL << 16 | 0xbeef, 12345},
      {std::string(32, 'x'), UINT64_MAX, UINT64_MAX},
      {"a", UINT64_MAX, 0},
  };
  for (const auto& c : cases) {
    std::string id = sb::make_wsid(c.gateway, c.epoch, c.counter);
    CAPTURE(id);
    CHECK(id == c.gateway + "." + sb::to_base36(c.epoch) + "." + sb::to_base36(c.counter));
    auto parts = sb::parse_wsid(id);
    REQUIRE(parts.has_value());
    CHECK(parts->gateway_id == c.gateway);
    CHECK(parts->epoch == c.epoch);
    CHECK(parts->counter == c.counter);
  }
  CHECK(sb::make_wsid("gw", 36, 35) == "gw.10.z");
}

TEST_CASE("wsid: malformed ids are rejected") {
  for (std::string bad : {""s, "gw"s, "gw."s, "gw.1"s, "gw.1."s, "gw..1"s, ".1.1"s, "gw.1.1."s, "gw.1.1.1"s,
                          "g.w.1.1"s, "gw.1.1 "s, " gw.1.1"s, "gw.A.1"s, "gw.1.Z"s, "gw.-1.1"s, "gw.1.+1"s,
                          "gw!.1.1"s, "g w.1.1"s, "gw/x.1.1"s, "gé.1.1"s, "gw.1.\0"s, "gw\0.1.1"s,
                          std::string(33, 'x') + ".1.1", "gw.3w5e11264sgsg.1"s, "gw.1.zzzzzzzzzzzzz"s,
                          "gw.1.10000000000000"s,
                          // Leading zeros: make_wsid never writes them, so "gw.01.1" would be a
                          // second spelling of "gw.1.1".
                          "gw.01.1"s, "gw.1.00"s, "gw.00.0"s}) {
    CAPTURE(bad);
    CHECK_FALSE(sb::parse_wsid(bad).has_value());
  }
  CHECK(sb::parse_wsid("gw.0.0").has_value());
  CHECK(sb::valid_gateway_id("gw-1_A"));
  CHECK(sb::valid_gateway_id(std::string(32, 'z')));
  CHECK_FALSE(sb::valid_gateway_id(""));
  CHECK_FALSE(sb::valid_gateway_id(std::string(33, 'z')));
  CHECK_FALSE(sb::valid_gateway_id("gw.1"));
  CHECK_FALSE(sb::valid_gateway_id("gw 1"));
}

TEST_CASE("wsid: uniqueness within an epoch and across epochs") {
  std::uint64_t epoch = sb::new_epoch();
  std::unordered_set<std::string> seen;
  seen.reserve(100'000);
  for (std::uint64_t counter = 1; counter <= 100'000; ++counter) seen.insert(sb::make_wsid("gw-1", epoch, counter));
  CHECK(seen.size() == 100'000);

  // Back to back in one process, even within one millisecond.
  std::uint64_t a = sb::new_epoch();
  std::uint64_t b = sb::new_epoch();
  CHECK(a != b);
  std::unordered_set<std::uint64_t> epochs;
  for (int i = 0; i < 10'000; ++i) epochs.insert(sb::new_epoch());
  CHECK(epochs.size() == 10'000);
  // The same counter under two epochs gives two ids.
  CHECK(sb::make_wsid("gw-1", a, 1) != sb::make_wsid("gw-1", b, 1));

  // High bits are wall-clock milliseconds: plausible (after 2020, before 2200).
  std::uint64_t millis = a >> 16;
  CHECK(millis > 1'577'836'800'000ULL);
  CHECK(millis < 7'258'118'400'000ULL);
}

// ============================== close codes ==============================

TEST_CASE("close codes: sendable and described") {
  namespace cc = sb::close_code;
  for (std::uint16_t ok : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4008,
                           4504, 4999}) {
    CAPTURE(ok);
    CHECK(cc::sendable(ok));
  }
  for (std::uint16_t bad : {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535}) {
    CAPTURE(bad);
    CHECK_FALSE(cc::sendable(bad));
  }
  static_assert(cc::sendable(cc::normal) && cc::sendable(cc::message_too_big) && cc::sendable(cc::slow_consumer));
  static_assert(!cc::sendable(cc::no_status) && !cc::sendable(cc::abnormal));
  CHECK(cc::describe(cc::normal) == "normal");
  CHECK(cc::describe(cc::message_too_big) == "message too big");
  CHECK(cc::describe(cc::slow_consumer) == "slow consumer");
  CHECK(cc::describe(cc::service_restart) == "service restart");
  CHECK(cc::describe(4321) == "other");
}

// ============================== options helpers ==============================

TEST_CASE("options: environment_name") {
  CHECK(sb::environment_name("max-message-bytes") == "SWITCHBOARD_MAX_MESSAGE_BYTES");
  CHECK(sb::environment_name("listen") == "SWITCHBOARD_LISTEN");
  CHECK(sb::environment_name("gateway-id") == "SWITCHBOARD_GATEWAY_ID");
  CHECK(sb::environment_name("log-level") == "SWITCHBOARD_LOG_LEVEL");
  CHECK(sb::environment_name("") == "SWITCHBOARD_");
}

TEST_CASE("options: parse_host_port") {
  auto hp = sb::parse_host_port("127.0.0.1:8080");
  REQUIRE(hp.has_value());
  CHECK(hp->host == "127.0.0.1");
  CHECK(hp->port == 8080);
  CHECK(sb::parse_host_port("localhost:1")->port == 1);
  CHECK(sb::parse_host_port("0.0.0.0:65535")->port == 65535);
  CHECK(sb::parse_host_port("h:0")->port == 0);  // 0: let the system pick
  CHECK(sb::parse_host_port("h:00080")->port == 80);
  for (std::string bad : {"", "127.0.0.1", "127.0.0.1:", ":8080", "h:65536", "h:99999", "h:123456", "h:-1", "h:+80",
                          "h:8o", "h: 80", "h:80 ", "h:0x50"}) {
    CAPTURE(bad);
    CHECK_FALSE(sb::parse_host_port(bad).has_value());
  }
}

TEST_CASE("options: parse_layers precedence and errors") {
  namespace po = boost::program_options;
  int port = 0;
  std::string name;
  po::options_description opts("Test");
  opts.add_options()("port", po::value<int>(&port)->default_value(1), "port")(
      "name", po::value<std::string>(&name)->default_value("d"), "name");

  SUBCASE("defaults") {
    auto r = sb::parse_layers("prog", "summary", opts, {}, {});
    CHECK_FALSE(r.stop);
    CHECK(port == 1);
    CHECK(name == "d");
  }
  SUBCASE("environment over default, command line over environment") {
    auto r = sb::parse_layers("prog", "summary", opts, {"--port", "3"},
                              {{"SWITCHBOARD_PORT", "2"}, {"SWITCHBOARD_NAME", "env"}});
    CHECK_FALSE(r.stop);
    CHECK(port == 3);
    CHECK(name == "env");
  }
  SUBCASE("config file under environment") {
    char path[] = "/tmp/sb_common_test_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    {
      std::ofstream f(path);
      f << "port = 7\nname = file\n";
    }
    auto r = sb::parse_layers("prog", "summary", opts, {"--config", path}, {{"SWITCHBOARD_NAME", "env"}});
    std::remove(path);
    CHECK_FALSE(r.stop);
    CHECK(port == 7);
    CHECK(name == "env");
  }
  SUBCASE("--help stops with exit 0") {
    auto r = sb::parse_layers("prog", "summary", opts, {"--help"}, {});
    CHECK(r.stop);
    CHECK(r.exit_code == 0);
    CHECK(r.message.find("--port") != std::string::npos);
    CHECK(r.message.find("SWITCHBOARD_") != std::string::npos);
  }
  SUBCASE("bad input stops with exit 2") {
    for (auto args : {std::vector<std::string>{"--port", "x"}, std::vector<std::string>{"--nope"}}) {
      auto r = sb::parse_layers("prog", "summary", opts, args, {});
      CHECK(r.stop);
      CHECK(r.exit_code == 2);
      CHECK(r.message.find("prog") == 0);
    }
    auto r = sb::parse_layers("prog", "summary", opts, {}, {{"SWITCHBOARD_PROT", "1"}});  // typo
    CHECK(r.stop);
    CHECK(r.exit_code == 2);
    CHECK(r.message.find("SWITCHBOARD_PROT") != std::string::npos);
    auto missing = sb::parse_layers("prog", "summary", opts, {"--config", "/nonexistent/sb.conf"}, {});
    CHECK(missing.stop);
    CHECK(missing.exit_code == 2);
  }
}
