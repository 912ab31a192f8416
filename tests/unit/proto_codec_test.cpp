// Wire protocol codec: every kind round-trips field for field; malformed input of any shape
// comes back as an error value and never as an exception.
#include <doctest/doctest.h>
#include <msgpack.hpp>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "proto/codec.hpp"

using namespace sb::proto;
using namespace std::string_literals;

namespace {

// ---- field-by-field comparison, one CHECK per field so a failure names it ----

void check_same(const Hello& a, const Hello& b) {
  CHECK(a.version == b.version);
  CHECK(a.worker_id == b.worker_id);
  REQUIRE(a.apps.size() == b.apps.size());
  for (std::size_t i = 0; i < a.apps.size(); ++i) {
    CHECK(a.apps[i].name == b.apps[i].name);
    CHECK(a.apps[i].mode == b.apps[i].mode);
    CHECK(a.apps[i].idle_timeout_ms == b.apps[i].idle_timeout_ms);
  }
}
void check_same(const Welcome& a, const Welcome& b) {
  CHECK(a.version == b.version);
  CHECK(a.gateway_id == b.gateway_id);
  CHECK(a.epoch == b.epoch);
  CHECK(a.heartbeat_ms == b.heartbeat_ms);
  CHECK(a.registered == b.registered);
}
void check_same(const Heartbeat&, const Heartbeat&) {}
void check_same(const Bye&, const Bye&) {}
void check_same(const Open& a, const Open& b) {
  CHECK(a.wsid == b.wsid);
  CHECK(a.app == b.app);
  CHECK(a.path == b.path);
  CHECK(a.query == b.query);
  CHECK(a.headers == b.headers);
  CHECK(a.session_id == b.session_id);
  CHECK(a.remote_address == b.remote_address);
  CHECK(a.resume == b.resume);
  CHECK(a.acked_seq == b.acked_seq);
}
void check_same(const Message& a, const Message& b) {
  CHECK(a.wsid == b.wsid);
  CHECK(a.seq == b.seq);
  CHECK(a.binary == b.binary);
  CHECK(a.payload == b.payload);
}
void check_same(const Close& a, const Close& b) {
  CHECK(a.wsid == b.wsid);
  CHECK(a.code == b.code);
  CHECK(a.reason == b.reason);
}
void check_same(const Idle& a, const Idle& b) { CHECK(a.wsid == b.wsid); }
void check_same(const Write& a, const Write& b) {
  CHECK(a.targets == b.targets);
  CHECK(a.binary == b.binary);
  CHECK(a.payload == b.payload);
  CHECK(a.dedupe_key == b.dedupe_key);
}
void check_same(const End& a, const End& b) {
  CHECK(a.wsid == b.wsid);
  CHECK(a.code == b.code);
  CHECK(a.reason == b.reason);
}
void check_same(const Subscribe& a, const Subscribe& b) {
  CHECK(a.wsid == b.wsid);
  CHECK(a.topic == b.topic);
}
void check_same(const Unsubscribe& a, const Unsubscribe& b) {
  CHECK(a.wsid == b.wsid);
  CHECK(a.topic == b.topic);
}
void check_same(const Publish& a, const Publish& b) {
  CHECK(a.topic == b.topic);
  CHECK(a.binary == b.binary);
  CHECK(a.payload == b.payload);
  CHECK(a.except_wsid == b.except_wsid);
  CHECK(a.dedupe_key == b.dedupe_key);
  CHECK(a.order_key == b.order_key);
  CHECK(a.order_version == b.order_version);
}
void check_same(const Query& a, const Query& b) { CHECK(a.wsid == b.wsid); }
void check_same(const Gone& a, const Gone& b) { CHECK(a.wsid == b.wsid); }
void check_same(const Ack& a, const Ack& b) {
  CHECK(a.wsid == b.wsid);
  CHECK(a.seq == b.seq);
}
void check_same(const Status& a, const Status& b) {
  CHECK(a.wsid == b.wsid);
  CHECK(a.open == b.open);
}

// Encodes, decodes, and checks the result is the same kind with the same fields.
template <typename T>
void round_trip(const T& original) {
  Envelope envelope(original);
  std::string bytes = encode(envelope);
  REQUIRE_FALSE(bytes.empty());
  Decoded decoded = decode(bytes);
  INFO("kind " << kind_name(kind_of(envelope)) << ": " << (decoded.ok() ? "ok" : decoded.error()));
  REQUIRE(decoded.ok());
  REQUIRE(std::holds_alternative<T>(decoded.envelope()));
  CHECK(kind_of(decoded.envelope()) == kind_of(envelope));
  check_same(std::get<T>(decoded.envelope()), original);
  // Encoding is deterministic, so the decoded value re-encodes to the same bytes.
  CHECK(encode(decoded.envelope()) == bytes);
}

// Binary payload with NUL bytes and every byte value.
std::string all_bytes() {
  std::string out;
  for (int i = 0; i < 256; ++i) out += static_cast<char>(i);
  out += "\0\0tail\0"s;
  return out;
}
const std::string non_ascii = "Grüße, 世界, Привет, 🎉 — ok";

// ---- raw msgpack builders for malformed bodies ----

struct Raw {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> p{buffer};
  std::string str() const { return std::string(buffer.data(), buffer.size()); }
  Raw& array(std::uint32_t n) { p.pack_array(n); return *this; }
  Raw& map(std::uint32_t n) { p.pack_map(n); return *this; }
  Raw& kind(Kind k) { p.pack(static_cast<std::uint8_t>(k)); return *this; }
  Raw& u(std::uint64_t v) { p.pack(v); return *this; }
  Raw& i(std::int64_t v) { p.pack(v); return *this; }
  Raw& b(bool v) { p.pack(v); return *this; }
  Raw& nil() { p.pack_nil(); return *this; }
  // float64 written by hand: msgpack-c packs whole-valued doubles as integers.
  Raw& f(double v) {
    std::uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    char out[9] = {static_cast<char>(0xcb)};
    for (int k = 0; k < 8; ++k) out[1 + k] = static_cast<char>(bits >> (56 - 8 * k));
    buffer.write(out, sizeof out);
    return *this;
  }
  Raw& s(const std::string& v) {
    p.pack_str(static_cast<std::uint32_t>(v.size()));
    p.pack_str_body(v.data(), static_cast<std::uint32_t>(v.size()));
    return *this;
  }
  Raw& bin(const std::string& v) {
    p.pack_bin(static_cast<std::uint32_t>(v.size()));
    p.pack_bin_body(v.data(), static_cast<std::uint32_t>(v.size()));
    return *this;
  }
};

// Decodes and requires a refusal with a reason. Returns the reason for further checks.
std::string refused(std::string_view bytes, const DecodeLimits& limits = {}) {
  Decoded d = Decoded{std::string("not run")};
  CHECK_NOTHROW(d = decode(bytes, limits));
  INFO("decode unexpectedly accepted " << bytes.size() << " bytes");
  CHECK_FALSE(d.ok());
  if (d.ok()) return {};
  CHECK_FALSE(d.error().empty());
  return d.error();
}

std::vector<Envelope> samples() {
  std::vector<Envelope> out;
  out.emplace_back(Hello{protocol_version, "worker-1", {{"chat", AppMode::shared, 0}, {"echo", AppMode::dedicated, 30000}}});
  out.emplace_back(Welcome{protocol_version, "gw-a", 0x0123456789abcdefULL, 1000});
  out.emplace_back(Heartbeat{});
  out.emplace_back(Bye{});
  out.emplace_back(Open{"gw.k1.1", "chat", "/chat", "room=a%20b", {{"origin", "http://x"}, {"cookie", "s=1"}}, "sess",
                        "127.0.0.1:5000"});
  out.emplace_back(Message{"gw.k1.1", 7, true, "\0\1\2"s});
  out.emplace_back(Close{"gw.k1.1", 1001, "bye"});
  out.emplace_back(Idle{"gw.k1.1"});
  out.emplace_back(Write{{"gw.k1.1", "gw.k1.2"}, false, "hello"});
  out.emplace_back(End{"gw.k1.1", 4008, "slow"});
  out.emplace_back(Subscribe{"gw.k1.1", "room:a"});
  out.emplace_back(Unsubscribe{"gw.k1.1", "room:a"});
  out.emplace_back(Publish{"room:a", true, "x\0y"s, "gw.k1.2"});
  out.emplace_back(Query{"gw.k1.1"});
  out.emplace_back(Gone{"gw.k1.1"});
  out.emplace_back(Ack{"gw.k1.1", 99});
  out.emplace_back(Status{"gw.k1.1", true});
  return out;
}

}  // namespace

// ============================== round trips ==============================

TEST_CASE("proto: HELLO round trip") {
  round_trip(Hello{protocol_version, "worker-ü-1", {}});
  std::vector<AppInfo> apps = {{"chat", AppMode::shared, 0},
                               {"echo", AppMode::dedicated, 1},
                               {"broadcast", AppMode::shared, UINT32_MAX},
                               {non_ascii, AppMode::dedicated, 60'000}};
  round_trip(Hello{UINT32_MAX, "w", apps});
  round_trip(Hello{0, "", {{"", AppMode::shared, 0}}});
}

TEST_CASE("proto: WELCOME round trip") {
  round_trip(Welcome{protocol_version, "gw-1", 0, 1000});
  round_trip(Welcome{UINT32_MAX, "gateway_B-2", UINT64_MAX, UINT32_MAX});
  round_trip(Welcome{1, "g", (std::uint64_t{1} << 56) + 12345, 1});
  round_trip(Welcome{1, "g", 5, 1000, false});
}

TEST_CASE("proto: HEARTBEAT and BYE round trip") {
  round_trip(Heartbeat{});
  round_trip(Bye{});
  // Both are the one-element array [kind].
  CHECK(encode(Heartbeat{}) == "\x91\x03"s);
  CHECK(encode(Bye{}) == "\x91\x04"s);
}

TEST_CASE("proto: OPEN round trip with headers") {
  Open open;
  open.wsid = "gw-a.lq3k2x0000.1z";
  open.app = "chat";
  open.path = "/csp/user/Chat.Server.cls";
  open.query = "room=caf%C3%A9&x=1";
  open.headers = {{"origin", "http://127.0.0.1:8080"},
                  {"user-agent", "Mozilla/5.0 (X11; Linux x86_64)"},
                  {"cookie", "sb_session=abc; other=1"},
                  {"x-note", non_ascii},
                  {"x-empty", ""},
                  {"x-dup", "1"},
                  {"x-dup", "2"}};  // duplicates and order are preserved
  open.session_id = "0123456789abcdef0123456789abcdef";
  open.remote_address = "[::1]:54321";
  round_trip(open);
  round_trip(Open{"a.0.0", "", "", "", {}, "", ""});
  round_trip(Open{"a.0.0", "chat", "/chat", "room=x", {}, "s", "127.0.0.1", true, UINT64_MAX});
}

TEST_CASE("proto: MESSAGE round trip with binary and text payloads") {
  round_trip(Message{"gw.1.1", 1, true, all_bytes()});
  round_trip(Message{"gw.1.1", UINT64_MAX, false, non_ascii});
  round_trip(Message{"gw.1.1", 0, false, ""});
  round_trip(Message{"gw.1.1", 42, true, std::string(70'000, '\0')});  // bin32 length prefix
}

TEST_CASE("proto: CLOSE round trip") {
  round_trip(Close{"gw.1.2", 1000, ""});
  round_trip(Close{"gw.1.2", 65535, non_ascii});
  round_trip(Close{"gw.1.2", 0, "no status"});
  round_trip(Close{"gw.1.2", 1006, std::string(123, 'r')});
}

TEST_CASE("proto: IDLE round trip") {
  round_trip(Idle{"gw.1.3"});
  round_trip(Idle{""});
}

TEST_CASE("proto: WRITE round trip with many targets") {
  Write w;
  for (int i = 0; i < 5000; ++i) w.targets.push_back("gw-" + std::to_string(i % 3) + ".k1." + std::to_string(i));
  w.binary = true;
  w.payload = all_bytes();
  round_trip(w);
  round_trip(Write{{}, false, "to nobody"});
  round_trip(Write{{"gw.1.1"}, false, "once", "chat:room:17"});
  round_trip(Write{{"gw.1.1"}, false, non_ascii});
}

TEST_CASE("proto: END round trip") {
  round_trip(End{"gw.1.4", 1000, ""});
  round_trip(End{"gw.1.4", 4504, non_ascii});
  round_trip(End{"gw.1.4", 65535, std::string(123, 'x')});
}

TEST_CASE("proto: SUBSCRIBE and UNSUBSCRIBE round trip") {
  round_trip(Subscribe{"gw.1.5", "chat/room/" + non_ascii});
  round_trip(Unsubscribe{"gw.1.5", "chat/room/" + non_ascii});
  round_trip(Subscribe{"gw.1.5", ""});
  round_trip(Unsubscribe{"gw.1.5", ""});
}

TEST_CASE("proto: PUBLISH round trip") {
  round_trip(Publish{"room:default", false, non_ascii, ""});
  round_trip(Publish{"room:default", true, all_bytes(), "gw.1.9"});
  round_trip(Publish{"", false, "", ""});
  round_trip(Publish{"chat:a", false, "m", "", "chat:a:42"});
  round_trip(Publish{"chat:a", false, "[]", "", "", "userlist:a", UINT64_MAX});
}

TEST_CASE("proto: QUERY, GONE, ACK, STATUS round trip") {
  round_trip(Query{"gw.1.6"});
  round_trip(Gone{"gw.1.6"});
  round_trip(Ack{"gw.1.6", 0});
  round_trip(Ack{"gw.1.6", UINT64_MAX});
  round_trip(Status{"gw.1.6", true});
  round_trip(Status{"gw.1.6", false});
}

TEST_CASE("proto: samples cover every kind exactly once") {
  auto all = samples();
  CHECK(all.size() == std::variant_size_v<Envelope>);
  for (std::size_t i = 0; i < all.size(); ++i) {
    CHECK(all[i].index() == i);
    Decoded d = decode(encode(all[i]));
    REQUIRE(d.ok());
    CHECK(d.envelope().index() == i);
    CHECK(encode(d.envelope()) == encode(all[i]));
  }
}

TEST_CASE("proto: kind_of and kind_name for every kind") {
  struct Expect {
    Envelope envelope;
    Kind kind;
    int number;
    const char* name;
  };
  const Expect table[] = {
      {Hello{}, Kind::hello, 1, "HELLO"},          {Welcome{}, Kind::welcome, 2, "WELCOME"},
      {Heartbeat{}, Kind::heartbeat, 3, "HEARTBEAT"}, {Bye{}, Kind::bye, 4, "BYE"},
      {Open{}, Kind::open, 10, "OPEN"},            {Message{}, Kind::message, 11, "MESSAGE"},
      {Close{}, Kind::close, 12, "CLOSE"},         {Idle{}, Kind::idle, 13, "IDLE"},
      {Write{}, Kind::write, 20, "WRITE"},         {End{}, Kind::end, 21, "END"},
      {Subscribe{}, Kind::subscribe, 22, "SUBSCRIBE"}, {Unsubscribe{}, Kind::unsubscribe, 23, "UNSUBSCRIBE"},
      {Publish{}, Kind::publish, 24, "PUBLISH"},   {Query{}, Kind::query, 25, "QUERY"},
      {Gone{}, Kind::gone, 30, "GONE"},            {Ack{}, Kind::ack, 31, "ACK"},
      {Status{}, Kind::status, 32, "STATUS"},
  };
  CHECK(std::size(table) == std::variant_size_v<Envelope>);
  for (const auto& row : table) {
    CAPTURE(row.name);
    CHECK(kind_of(row.envelope) == row.kind);
    CHECK(static_cast<int>(row.kind) == row.number);
    CHECK(kind_name(row.kind) == row.name);
    // The first element on the wire is the kind number.
    std::string bytes = encode(row.envelope);
    REQUIRE(bytes.size() >= 2);
    CHECK(static_cast<unsigned char>(bytes[1]) == row.number);
  }
  CHECK(kind_name(static_cast<Kind>(0)) == "UNKNOWN");
  CHECK(kind_name(static_cast<Kind>(99)) == "UNKNOWN");
  CHECK(protocol_version == 1);
}

TEST_CASE("proto: encode_into appends; each body decodes on its own") {
  std::string out = "prefix";
  encode_into(Ack{"gw.1.1", 5}, out);
  std::size_t first_end = out.size();
  encode_into(Gone{"gw.1.2"}, out);
  CHECK(out.compare(0, 6, "prefix") == 0);
  Decoded a = decode(std::string_view(out).substr(6, first_end - 6));
  Decoded b = decode(std::string_view(out).substr(first_end));
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(std::get<Ack>(a.envelope()).seq == 5);
  CHECK(std::get<Gone>(b.envelope()).wsid == "gw.1.2");
  // Two bodies concatenated are not one body.
  refused(std::string_view(out).substr(6));
}

// ============================== decoding tolerance ==============================

TEST_CASE("proto: payloads may arrive as str; extra trailing fields are ignored") {
  Decoded d = decode(Raw().array(5).kind(Kind::message).s("gw.1.1").u(3).b(false).s("as str").str());
  REQUIRE(d.ok());
  CHECK(std::get<Message>(d.envelope()).payload == "as str");

  Decoded w = decode(Raw().array(4).kind(Kind::write).array(1).s("gw.1.1").b(true).s("p").str());
  REQUIRE(w.ok());
  CHECK(std::get<Write>(w.envelope()).payload == "p");

  Decoded p = decode(Raw().array(5).kind(Kind::publish).s("t").b(false).s("x").s("").str());
  REQUIRE(p.ok());
  CHECK(std::get<Publish>(p.envelope()).payload == "x");

  // A newer peer may append fields; an older decoder ignores them.
  Decoded extra = decode(Raw().array(5).kind(Kind::ack).s("gw.1.1").u(9).s("future").map(0).str());
  REQUIRE(extra.ok());
  CHECK(std::get<Ack>(extra.envelope()).seq == 9);
  Decoded hb = decode(Raw().array(3).kind(Kind::heartbeat).u(1).s("x").str());
  CHECK(hb.ok());
  // App entries may carry extra trailing fields too.
  Decoded hello =
      decode(Raw().array(4).kind(Kind::hello).u(1).s("w").array(1).array(4).s("chat").u(1).u(5).s("x").str());
  REQUIRE(hello.ok());
  CHECK(std::get<Hello>(hello.envelope()).apps.at(0).mode == AppMode::dedicated);
  // Small integers packed in a wider signed format are still unsigned values.
  Decoded wide = decode("\x93\xd0\x1f\xa1w\xd3\x00\x00\x00\x00\x00\x00\x00\x07"s);  // [int8 31, "w", int64 7]
  REQUIRE(wide.ok());
  CHECK(std::get<Ack>(wide.envelope()).seq == 7);
}

// ============================== malformed input ==============================

TEST_CASE("proto: structurally malformed bodies are refused") {
  CHECK(refused("") == "empty body");
  refused(Raw().u(1).str());                    // a bare integer
  refused(Raw().s("hello").str());              // a string
  refused(Raw().nil().str());                   // nil
  refused(Raw().map(1).u(0).u(1).str());        // a map
  refused(Raw().array(0).str());                // empty array
  refused(Raw().array(1).s("HELLO").str());     // kind as string
  refused(Raw().array(1).i(-1).str());          // negative kind
  refused(Raw().array(1).u(256).str());         // kind out of uint8 range
  refused(Raw().array(1).f(3.0).str());         // kind as float
  refused(Raw().array(1).nil().str());          // kind nil
  for (int unknown : {0, 5, 9, 14, 19, 26, 29, 33, 200, 255}) {
    CAPTURE(unknown);
    std::string why = refused(Raw().array(1).u(static_cast<std::uint64_t>(unknown)).str());
    CHECK(why.find("unknown") != std::string::npos);
  }
}

TEST_CASE("proto: wrong field types are refused with the field named") {
  struct Case {
    const char* what;
    std::string bytes;
    const char* field;
  };
  const Case cases[] = {
      {"close code float 1000.0", Raw().array(4).kind(Kind::close).s("w").f(1000.0).s("").str(), "code"},
      {"hello version as str", Raw().array(4).kind(Kind::hello).s("1").s("w").array(0).str(), "version"},
      {"hello worker_id as int", Raw().array(4).kind(Kind::hello).u(1).u(7).array(0).str(), "worker_id"},
      {"hello apps as map", Raw().array(4).kind(Kind::hello).u(1).s("w").map(0).str(), "apps"},
      {"hello app not an array", Raw().array(4).kind(Kind::hello).u(1).s("w").array(1).s("chat").str(), "apps"},
      {"hello app too short", Raw().array(4).kind(Kind::hello).u(1).s("w").array(1).array(2).s("c").u(0).str(),
       "apps"},
      {"hello app mode 2", Raw().array(4).kind(Kind::hello).u(1).s("w").array(1).array(3).s("c").u(2).u(0).str(),
       "apps"},
      {"hello app idle as bool",
       Raw().array(4).kind(Kind::hello).u(1).s("w").array(1).array(3).s("c").u(0).b(true).str(), "apps"},
      {"hello app idle over uint32",
       Raw().array(4).kind(Kind::hello).u(1).s("w").array(1).array(3).s("c").u(0).u(1ull << 32).str(), "apps"},
      {"hello app name as bin",
       Raw().array(4).kind(Kind::hello).u(1).s("w").array(1).array(3).bin("c").u(0).u(0).str(), "apps"},
      {"welcome epoch negative", Raw().array(5).kind(Kind::welcome).u(1).s("g").i(-5).u(1000).str(), "epoch"},
      {"welcome epoch float", Raw().array(5).kind(Kind::welcome).u(1).s("g").f(1.5).u(1000).str(), "epoch"},
      {"welcome gateway_id as bin", Raw().array(5).kind(Kind::welcome).u(1).bin("g").u(1).u(1000).str(),
       "gateway_id"},
      {"open headers as array",
       Raw().array(8).kind(Kind::open).s("w").s("a").s("/").s("").array(0).s("").s("").str(), "headers"},
      {"open header value int",
       Raw().array(8).kind(Kind::open).s("w").s("a").s("/").s("").map(1).s("k").u(1).s("").s("").str(), "headers"},
      {"open header key int",
       Raw().array(8).kind(Kind::open).s("w").s("a").s("/").s("").map(1).u(1).s("v").s("").s("").str(), "headers"},
      {"open remote_address nil",
       Raw().array(8).kind(Kind::open).s("w").s("a").s("/").s("").map(0).s("").nil().str(), "remote_address"},
      {"message seq as str", Raw().array(5).kind(Kind::message).s("w").s("1").b(false).bin("x").str(), "seq"},
      {"message binary as int", Raw().array(5).kind(Kind::message).s("w").u(1).u(1).bin("x").str(), "binary"},
      {"message payload as int", Raw().array(5).kind(Kind::message).s("w").u(1).b(true).u(0).str(), "payload"},
      {"message wsid as bin", Raw().array(5).kind(Kind::message).bin("w").u(1).b(true).bin("x").str(), "wsid"},
      {"close code as str", Raw().array(4).kind(Kind::close).s("w").s("1000").s("").str(), "code"},
      {"close reason as bin", Raw().array(4).kind(Kind::close).s("w").u(1000).bin("r").str(), "reason"},
      {"idle wsid nil", Raw().array(2).kind(Kind::idle).nil().str(), "wsid"},
      {"write targets as str", Raw().array(4).kind(Kind::write).s("gw.1.1").b(false).bin("x").str(), "targets"},
      {"write target as int", Raw().array(4).kind(Kind::write).array(2).s("gw.1.1").u(5).b(false).bin("x").str(),
       "targets"},
      {"write binary as nil", Raw().array(4).kind(Kind::write).array(0).nil().bin("x").str(), "binary"},
      {"end code negative", Raw().array(4).kind(Kind::end).s("w").i(-1000).s("").str(), "code"},
      {"subscribe topic as int", Raw().array(3).kind(Kind::subscribe).s("w").u(1).str(), "topic"},
      {"unsubscribe wsid as array", Raw().array(3).kind(Kind::unsubscribe).array(0).s("t").str(), "wsid"},
      {"publish except as nil", Raw().array(5).kind(Kind::publish).s("t").b(false).bin("x").nil().str(),
       "except_wsid"},
      {"publish payload as map", Raw().array(5).kind(Kind::publish).s("t").b(false).map(0).s("").str(), "payload"},
      {"query wsid as int", Raw().array(2).kind(Kind::query).u(1).str(), "wsid"},
      {"gone wsid as bool", Raw().array(2).kind(Kind::gone).b(true).str(), "wsid"},
      {"ack seq negative", Raw().array(3).kind(Kind::ack).s("w").i(-1).str(), "seq"},
      {"ack seq float", Raw().array(3).kind(Kind::ack).s("w").f(2.0).str(), "seq"},
      {"status open as int", Raw().array(3).kind(Kind::status).s("w").u(1).str(), "open"},
  };
  for (const auto& c : cases) {
    std::string what = c.what;
    CAPTURE(what);
    std::string why = refused(c.bytes);
    CHECK(why.find(c.field) != std::string::npos);
  }
}

TEST_CASE("proto: missing fields are refused for every kind that has fields") {
  // Drop the last element (the top-level array count shrinks by one) of each sample and
  // expect a refusal naming a missing field; HEARTBEAT and BYE have no fields to drop.
  for (const auto& sample : samples()) {
    Kind k = kind_of(sample);
    CAPTURE(kind_name(k));
    std::string bytes = encode(sample);
    auto header = static_cast<unsigned char>(bytes[0]);
    REQUIRE((header & 0xf0) == 0x90);  // fixarray
    std::size_t fields = (header & 0x0f) - 1;
    if (fields == 0) continue;
    // Re-pack with only the first n-1 fields by decoding to msgpack objects.
    msgpack::object_handle h = msgpack::unpack(bytes.data(), bytes.size());
    const auto& arr = h.get().via.array;
    // Fields added later (issue 3) are optional in groups: these prefix lengths decode to defaults.
    std::vector<std::size_t> complete_prefixes;
    if (k == Kind::open) complete_prefixes = {fields - 2};
    if (k == Kind::write || k == Kind::welcome) complete_prefixes = {fields - 1};
    if (k == Kind::publish) complete_prefixes = {fields - 3, fields - 2};
    for (std::size_t keep = 0; keep < fields; ++keep) {
      CAPTURE(keep);
      Raw raw;
      raw.array(static_cast<std::uint32_t>(keep + 1));
      for (std::size_t i = 0; i <= keep; ++i) raw.p.pack(arr.ptr[i]);
      if (std::find(complete_prefixes.begin(), complete_prefixes.end(), keep) != complete_prefixes.end()) {
        CHECK(decode(raw.str()).ok());
        continue;
      }
      std::string why = refused(raw.str());
      CHECK(why.find("missing field") != std::string::npos);
      CHECK(why.find(std::string(kind_name(k))) != std::string::npos);
    }
  }
}

TEST_CASE("proto: integers out of range are refused") {
  CHECK(refused(Raw().array(4).kind(Kind::close).s("w").u(65536).s("").str()).find("code") != std::string::npos);
  CHECK(refused(Raw().array(4).kind(Kind::end).s("w").u(70000).s("").str()).find("code") != std::string::npos);
  CHECK(refused(Raw().array(4).kind(Kind::end).s("w").u(UINT64_MAX).s("").str()).find("code") != std::string::npos);
  CHECK(refused(Raw().array(4).kind(Kind::hello).u(1ull << 32).s("w").array(0).str()).find("version") !=
        std::string::npos);
  CHECK(refused(Raw().array(5).kind(Kind::welcome).u(1).s("g").u(1).u(1ull << 32).str()).find("heartbeat_ms") !=
        std::string::npos);
  // The limits themselves are accepted.
  Decoded ok = decode(Raw().array(4).kind(Kind::end).s("w").u(65535).s("").str());
  REQUIRE(ok.ok());
  CHECK(std::get<End>(ok.envelope()).code == 65535);
}

TEST_CASE("proto: bodies over max_bytes are refused unread") {
  DecodeLimits defaults;
  CHECK(defaults.max_bytes == 16u << 20);
  // A valid message padded past the limit inside a payload.
  std::string big = encode(Message{"gw.1.1", 1, true, std::string(defaults.max_bytes, 'x')});
  REQUIRE(big.size() > defaults.max_bytes);
  CHECK(refused(big).find("exceeds") != std::string::npos);

  // With a small explicit limit: exactly at the limit passes, one byte over fails.
  std::string body = encode(Message{"gw.1.1", 1, false, "12345"});
  DecodeLimits tight;
  tight.max_bytes = body.size();
  CHECK(decode(body, tight).ok());
  tight.max_bytes = body.size() - 1;
  CHECK(refused(body, tight).find("exceeds") != std::string::npos);
}

TEST_CASE("proto: arrays, maps and strings over the limits are refused") {
  DecodeLimits limits;
  limits.max_array = 10;  // applies to the message array itself too (OPEN has 10 elements)
  limits.max_map = 2;
  limits.max_string = 16;

  // WRITE with targets at and over max_array.
  Write w{{}, false, "x"};
  for (int i = 0; i < 10; ++i) w.targets.push_back("a.0." + std::to_string(i));
  CHECK(decode(encode(w), limits).ok());
  w.targets.push_back("a.0.b");
  refused(encode(w), limits);

  // OPEN headers at and over max_map.
  Open open{"a.0.1", "chat", "/", "", {{"a", "1"}, {"b", "2"}}, "", ""};
  CHECK(decode(encode(open), limits).ok());
  open.headers.emplace_back("c", "3");
  refused(encode(open), limits);

  // Payload (bin) and string at and over max_string.
  CHECK(decode(encode(Message{"a.0.1", 1, true, std::string(16, 'b')}), limits).ok());
  refused(encode(Message{"a.0.1", 1, true, std::string(17, 'b')}), limits);
  refused(encode(Message{"a.0.1", 1, false, std::string(17, 's')}), limits);
  refused(encode(Idle{std::string(17, 'w')}), limits);

  // Default max_array is 100 000 targets.
  Write huge;
  huge.targets.assign(DecodeLimits{}.max_array + 1, "g.0.0");
  refused(encode(huge));
  huge.targets.pop_back();
  CHECK(decode(encode(huge)).ok());

  // Announced sizes far beyond the data are refused without allocating them.
  refused("\x91\xdd\xff\xff\xff\xff"s);               // array32 of 4 billion
  refused("\x92\x0b\xdb\xff\xff\xff\xff"s);           // str32 of 4 GiB
  refused("\x92\x0b\xc6\xff\xff\xff\xff"s);           // bin32 of 4 GiB
  refused("\x92\x03\xdf\xff\xff\xff\xff"s);           // map32 of 4 billion
  refused("\x92\x03\xc9\xff\xff\xff\xff\x01"s);       // ext32 of 4 GiB
}

TEST_CASE("proto: nesting deeper than max_depth is refused") {
  DecodeLimits defaults;
  CHECK(defaults.max_depth == 4);
  // HELLO nests 3 deep: fine by default, refused with a limit of 2.
  std::string hello = encode(Hello{1, "w", {{"chat", AppMode::shared, 0}}});
  CHECK(decode(hello).ok());
  DecodeLimits shallow;
  shallow.max_depth = 2;
  refused(hello, shallow);

  // [3, [[[ ]]]] is 4 deep: an ignored extra field, accepted. One more level is refused.
  CHECK(decode(Raw().array(2).kind(Kind::heartbeat).array(1).array(1).array(0).str()).ok());
  CHECK(refused(Raw().array(2).kind(Kind::heartbeat).array(1).array(1).array(1).array(0).str()).find("nesting") !=
        std::string::npos);
  // Maps count as nesting too.
  refused(Raw().array(2).kind(Kind::heartbeat).map(1).s("k").map(1).s("k").map(1).s("k").map(0).str());

  // A very deep body (10 000 nested arrays) is refused, not a stack overflow.
  std::string deep(10'000, '\x91');
  deep += '\x03';
  refused(deep);
}

TEST_CASE("proto: truncated msgpack is refused at every cut") {
  for (const auto& sample : samples()) {
    std::string bytes = encode(sample);
    CAPTURE(kind_name(kind_of(sample)));
    for (std::size_t cut = 1; cut < bytes.size(); ++cut) {
      CAPTURE(cut);
      refused(std::string_view(bytes).substr(0, cut));
    }
  }
  CHECK(refused("\x92\x1f"s).find("truncated") != std::string::npos);
}

TEST_CASE("proto: trailing bytes after a valid message are refused") {
  for (const auto& sample : samples()) {
    std::string bytes = encode(sample);
    CAPTURE(kind_name(kind_of(sample)));
    CHECK(refused(bytes + '\0').find("trailing") != std::string::npos);
    refused(bytes + "\xc0"s);
    refused(bytes + bytes);
  }
}

TEST_CASE("proto: invalid msgpack bytes are refused") {
  refused("\xc1"s);            // the never-used byte
  refused("\x91\xc1"s);
  refused("\x92\x03\xc1"s);
}

// ============================== fuzz ==============================

namespace {
// splitmix64: tiny, deterministic everywhere (std distributions are not).
struct Rng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(next() % n); }
};

// Bytes that steer msgpack parsers into interesting states.
constexpr unsigned char interesting[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3,
                                         0xc4, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcc, 0xcf, 0xd0, 0xd3, 0xd4,
                                         0xd8, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};

std::string mutate(Rng& rng, std::string bytes) {
  int edits = 1 + static_cast<int>(rng.below(4));
  for (int e = 0; e < edits; ++e) {
    switch (rng.below(6)) {
      case 0:  // flip a bit
        if (!bytes.empty()) bytes[rng.below(bytes.size())] ^= static_cast<char>(1u << rng.below(8));
        break;
      case 1:  // set an interesting byte
        if (!bytes.empty())
          bytes[rng.below(bytes.size())] = static_cast<char>(interesting[rng.below(std::size(interesting))]);
        break;
      case 2:  // truncate
        bytes.resize(rng.below(bytes.size() + 1));
        break;
      case 3:  // insert a byte
        bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(rng.below(bytes.size() + 1)),
                     static_cast<char>(rng.next()));
        break;
      case 4:  // delete a byte
        if (!bytes.empty()) bytes.erase(rng.below(bytes.size()), 1);
        break;
      default:  // append random bytes
        for (std::size_t n = rng.below(8); n > 0; --n) bytes += static_cast<char>(rng.next());
        break;
    }
  }
  return bytes;
}
}  // namespace

TEST_CASE("proto: deterministic fuzz never throws; accepted input is stable") {
  Rng rng{0x5b0a4d2025ULL};
  auto seeds = samples();
  seeds.emplace_back(Write{{"g.1.1", "g.1.2", "g.1.3"}, true, all_bytes().substr(0, 40)});
  seeds.emplace_back(Open{"g.1.1", "chat", "/chat", "room=x", {{"origin", "o"}, {"cookie", "c"}}, "s", "r"});
  DecodeLimits small;  // tight limits exercise the overflow paths too
  small.max_array = 8;
  small.max_map = 4;
  small.max_string = 64;
  small.max_depth = 3;

  int accepted = 0, refused_count = 0;
  auto probe = [&](const std::string& input, const DecodeLimits& limits) {
    Decoded d = Decoded{std::string()};
    REQUIRE_NOTHROW(d = decode(input, limits));
    if (!d.ok()) {
      ++refused_count;
      REQUIRE_FALSE(d.error().empty());
      return;
    }
    ++accepted;
    // Anything accepted re-encodes to a body that decodes to the same bytes again.
    std::string again = encode(d.envelope());
    Decoded d2 = decode(again);
    REQUIRE(d2.ok());
    REQUIRE(kind_of(d2.envelope()) == kind_of(d.envelope()));
    REQUIRE(encode(d2.envelope()) == again);
  };

  for (int i = 0; i < 3000; ++i) {
    std::string base = encode(seeds[rng.below(seeds.size())]);
    std::string input = mutate(rng, base);
    probe(input, DecodeLimits{});
    probe(input, small);
  }
  for (int i = 0; i < 2000; ++i) {
    std::string input;
    std::size_t len = rng.below(48);
    // Start most inputs with a small array header so the codec gets past the first check.
    if (rng.below(2)) input += static_cast<char>(0x91 + rng.below(8));
    if (rng.below(2)) input += static_cast<char>(interesting[rng.below(std::size(interesting))]);
    for (std::size_t n = 0; n < len; ++n) {
      input += rng.below(3) == 0 ? static_cast<char>(interesting[rng.below(std::size(interesting))])
                                 : static_cast<char>(rng.next());
    }
    probe(input, DecodeLimits{});
    probe(input, small);
  }
  MESSAGE("fuzz: " << accepted << " accepted, " << refused_count << " refused");
  CHECK(refused_count > 0);
  CHECK(accepted > 0);  // mutations that only touch payload bytes stay valid
}
