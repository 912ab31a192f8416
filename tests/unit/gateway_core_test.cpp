// The gateway state machine without sockets: a fake driver records writer wake-ups and the
// outbox shows exactly what would go to each worker.
#include <doctest/doctest.h>

#include <cctype>
#include <set>

#include "common/close_codes.hpp"
#include "common/wsid.hpp"
#include "gateway/core/gateway_core.hpp"
#include "gateway/core/ws_frame.hpp"

using namespace sb;
using namespace sb::gateway;

namespace {

struct FakeDriver : SocketDriver {
  std::vector<Session*> woken;
  std::vector<std::pair<std::string, bool>> reading;  // (wsid, enabled) calls
  void wake_writer(Session& s) override { woken.push_back(&s); }
  void set_reading(Session& s, bool enabled) override { reading.emplace_back(s.wsid(), enabled); }
};

GatewayConfig test_config() {
  GatewayConfig c;
  c.gateway_id = "gwt";
  c.max_queue_bytes = 1000;
  c.max_write_batch_bytes = 64;
  return c;
}

struct Fixture {
  int transport_token = 0;
  FakeDriver driver;
  GatewayCore core{test_config(), 42, driver};

  // Pops and decodes everything queued for a worker.
  std::vector<proto::Envelope> take(const std::string& worker) {
    std::vector<proto::Envelope> out;
    auto it = core.outbox().find(worker);
    if (it == core.outbox().end()) return out;
    for (const auto& body : it->second) {
      auto d = proto::decode(body);
      REQUIRE(d.ok());
      out.push_back(d.envelope());
    }
    it->second.clear();
    return out;
  }
  void from(const std::string& worker, const proto::Envelope& e, std::int64_t now = 0) {
    core.pool_message(worker, proto::encode(e), now);
  }
  void hello(const std::string& worker, std::vector<proto::AppInfo> apps = {{"chat", proto::AppMode::shared, 0}},
             std::int64_t now = 0) {
    from(worker, proto::Hello{proto::protocol_version, worker, std::move(apps)}, now);
  }
  Session* open(const std::string& app = "chat", std::int64_t now = 0) {
    OpenParams p;
    p.app = app;
    p.path = "/" + app;
    p.query = "room=a";
    p.remote_address = "127.0.0.1";
    p.transport = &transport_token;  // a live socket (the core only compares it with null)
    return core.open_session(std::move(p), now);
  }
  std::string drain(Session& s) {
    std::string out;
    while (core.next_output(s, out) == GatewayCore::Output::data) {}
    return out;
  }
};

}  // namespace

TEST_CASE("HELLO registers a worker and is answered with WELCOME carrying id and epoch") {
  Fixture f;
  f.hello("w1");
  auto sent = f.take("w1");
  REQUIRE(sent.size() == 1);
  auto* welcome = std::get_if<proto::Welcome>(&sent[0]);
  REQUIRE(welcome);
  CHECK(welcome->gateway_id == "gwt");
  CHECK(welcome->epoch == 42);
  CHECK_FALSE(welcome->registered);  // it was not registered before this HELLO
  CHECK(f.core.live_workers() == 1);
  f.hello("w1");
  auto again = f.take("w1");
  REQUIRE(again.size() == 1);
  CHECK(std::get<proto::Welcome>(again[0]).registered);  // still known: its earlier events stand
}

TEST_CASE("only WSIDs of this gateway and epoch, spelled as issued, find a session") {
  Fixture f;
  f.hello("w1");
  f.take("w1");
  Session* a = nullptr;
  for (int i = 0; i < 11; ++i) a = f.open();
  REQUIRE(a);
  std::string wsid = a->wsid();
  CHECK(f.core.find(wsid) == a);
  auto parts = parse_wsid(wsid);
  REQUIRE(parts);
  CHECK(f.core.find(make_wsid(parts->gateway_id, parts->epoch, parts->counter)) == a);
  CHECK(f.core.find(make_wsid("other", parts->epoch, parts->counter)) == nullptr);
  CHECK(f.core.find(make_wsid(parts->gateway_id, parts->epoch + 1, parts->counter)) == nullptr);
  std::string digits = to_base36(parts->counter);
  std::string prefix = wsid.substr(0, wsid.size() - digits.size());
  CHECK(f.core.find(prefix + "0" + digits) == nullptr);  // not the issued spelling
  std::string upper = digits;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  REQUIRE(upper != digits);  // the counter has letters in base 36
  CHECK(f.core.find(prefix + upper) == nullptr);
  CHECK(f.core.find(prefix) == nullptr);
  CHECK(f.core.find(wsid + ".b") == nullptr);
  // A command for a WSID this gateway never issued is answered GONE, as before.
  f.take("w1");  // the OPENs
  f.from("w1", proto::End{prefix + "0" + digits, 1000, ""});
  auto sent = f.take("w1");
  REQUIRE(sent.size() == 1);
  CHECK(std::get<proto::Gone>(sent[0]).wsid == prefix + "0" + digits);
}

TEST_CASE("a closed socket's WSID is never issued again, though its slot is reused") {
  Fixture f;
  f.hello("w1");
  Session* a = f.open();
  REQUIRE(a);
  std::string first = a->wsid();
  auto opens = f.take("w1");
  f.core.session_closed(*a, 1000, "");
  CHECK(f.core.find(first) == nullptr);  // closed: commands for it are answered GONE
  CHECK(f.core.closed_pending() == 1);
  f.take("w1");
  f.from("w1", proto::Ack{first, 1});  // OPEN and CLOSE acknowledged: forgotten
  CHECK(f.core.closed_pending() == 0);
  Session* b = f.open();
  REQUIRE(b);
  CHECK(b == a);  // the same slot, reused first
  CHECK(b->wsid() != first);
  CHECK(f.core.find(first) == nullptr);
  CHECK(f.core.find(b->wsid()) == b);
  CHECK(b->unacked.size() == 1);  // a fresh session: only its own OPEN
  CHECK(b->topics.empty());
  CHECK_FALSE(bool(b->closed));
  CHECK(f.core.session_count() == 1);
}

TEST_CASE("a PUBLISH that excludes another gateway's WSID reaches every member here") {
  Fixture f;
  f.hello("w1");
  Session* a = f.open();
  Session* b = f.open();
  for (Session* s : {a, b}) f.from("w1", proto::Subscribe{s->wsid(), "room"});
  auto parts = parse_wsid(a->wsid());
  REQUIRE(parts);
  // Same counter as `a`, other gateway: excludes nobody here.
  f.from("w1", proto::Publish{"room", false, "hi", make_wsid("gw-other", parts->epoch, parts->counter)});
  CHECK(f.drain(*a) == make_frame("hi", false));
  CHECK(f.drain(*b) == make_frame("hi", false));
  f.from("w1", proto::Publish{"room", false, "yo", a->wsid()});
  CHECK(f.drain(*a).empty());
  CHECK(f.drain(*b) == make_frame("yo", false));
}

TEST_CASE("an idle session stays small (memory per idle socket, bench S3)") {
  // Guards the layout: every byte here is paid by each of up to 19 000 idle sockets.
  CHECK(sizeof(Session) <= 152);
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  REQUIRE(s);
  CHECK(s->query);  // "room=a" is kept for take-overs
  CHECK(s->close_reason().empty());
  CHECK_FALSE(s->close_reason_text);  // allocated only when the socket is being closed
  CHECK_FALSE(s->rx);
  CHECK(s->queue.empty());
  CHECK(s->unacked.size() == 1);  // the OPEN, until the worker acknowledges it
  f.from("w1", proto::Ack{s->wsid(), 0});
  CHECK(s->unacked.empty());      // and then nothing is held for it
}

TEST_CASE("HELLO with another protocol version is ignored and counted") {
  Fixture f;
  f.from("w1", proto::Hello{proto::protocol_version + 1, "w1", {{"chat", proto::AppMode::shared, 0}}});
  CHECK(f.core.live_workers() == 0);
  CHECK(f.core.counters().pool_unexpected == 1);
  CHECK(f.take("w1").empty());
}

TEST_CASE("app state: unknown until declared, unavailable when its workers are gone") {
  Fixture f;
  CHECK(f.core.app_state("chat") == GatewayCore::AppState::unknown);
  CHECK(f.open() == nullptr);
  CHECK(f.core.counters().refused_no_worker == 1);
  f.hello("w1", {{"chat", proto::AppMode::shared, 0}}, 0);
  CHECK(f.core.app_state("chat") == GatewayCore::AppState::available);
  CHECK(f.core.app_state("echo") == GatewayCore::AppState::unknown);
  f.core.tick(10'000);  // silent for longer than worker_dead_ms
  CHECK(f.core.live_workers() == 0);
  CHECK(f.core.app_state("chat") == GatewayCore::AppState::unavailable);
}

TEST_CASE("OPEN goes to the least-loaded worker; WSIDs are unique and name this gateway") {
  Fixture f;
  f.hello("w1");
  f.hello("w2");
  f.take("w1");
  f.take("w2");
  Session* a = f.open();
  Session* b = f.open();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->wsid() != b->wsid());
  CHECK(a->worker != b->worker);  // spread over both
  auto parts = parse_wsid(a->wsid());
  REQUIRE(parts);
  CHECK(parts->gateway_id == "gwt");
  CHECK(parts->epoch == 42);
  auto sent = f.take(a->worker);
  REQUIRE(sent.size() == 1);
  auto* open = std::get_if<proto::Open>(&sent[0]);
  REQUIRE(open);
  CHECK(open->wsid == a->wsid());
  CHECK(open->app == "chat");
  CHECK(open->query == "room=a");
}

TEST_CASE("client messages go to the socket's worker with increasing seq") {
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  f.take("w1");
  f.core.client_message(*s, false, "one", 0);
  f.core.client_message(*s, true, std::string("t\0o", 3), 0);
  auto sent = f.take("w1");
  REQUIRE(sent.size() == 2);
  auto& m1 = std::get<proto::Message>(sent[0]);
  auto& m2 = std::get<proto::Message>(sent[1]);
  CHECK(m1.seq == 1);
  CHECK(m1.payload == "one");
  CHECK_FALSE(m1.binary);
  CHECK(m2.seq == 2);
  CHECK(m2.binary);
  CHECK(m2.payload == std::string("t\0o", 3));
}

TEST_CASE("WRITE from any worker reaches the socket; unknown targets get GONE") {
  Fixture f;
  f.hello("w1");
  f.hello("w2");
  Session* s = f.open();
  f.take("w1");
  f.take("w2");
  std::string other = s->worker == "w1" ? "w2" : "w1";
  f.from(other, proto::Write{{s->wsid(), "gwt.1.1"}, false, "hello"});
  CHECK(f.drain(*s) == make_frame("hello", false));
  auto back = f.take(other);
  REQUIRE(back.size() == 1);
  CHECK(std::get<proto::Gone>(back[0]).wsid == "gwt.1.1");
  CHECK(f.core.counters().gone_sent == 1);
}

TEST_CASE("frames are coalesced up to the batch size but a large frame still goes out alone") {
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  for (int i = 0; i < 5; ++i) f.from("w1", proto::Write{{s->wsid()}, false, "0123456789"});  // 12-byte frames
  std::string first;
  REQUIRE(f.core.next_output(*s, first) == GatewayCore::Output::data);
  CHECK(first.size() == 60);  // 5 x 12 <= 64
  f.from("w1", proto::Write{{s->wsid()}, true, std::string(200, 'x')});
  std::string big;
  REQUIRE(f.core.next_output(*s, big) == GatewayCore::Output::data);
  CHECK(big.size() == 204);
  std::string none;
  CHECK(f.core.next_output(*s, none) == GatewayCore::Output::none);
}

TEST_CASE("PUBLISH frames once for every subscriber but the excepted one; closed sockets leave topics") {
  Fixture f;
  f.hello("w1");
  Session* a = f.open();
  Session* b = f.open();
  Session* c = f.open();
  for (Session* s : {a, b, c}) f.from("w1", proto::Subscribe{s->wsid(), "room"});
  f.from("w1", proto::Publish{"room", false, "hi", b->wsid()});
  CHECK(f.drain(*a) == make_frame("hi", false));
  CHECK(f.drain(*b).empty());
  CHECK(f.drain(*c) == make_frame("hi", false));
  f.core.session_closed(*c, close_code::normal, "");
  f.from("w1", proto::Publish{"room", false, "again", ""});
  CHECK(f.drain(*a) == make_frame("again", false));
  CHECK(f.drain(*b) == make_frame("again", false));
  f.from("w1", proto::Unsubscribe{a->wsid(), "room"});
  f.from("w1", proto::Publish{"room", false, "third", ""});
  CHECK(f.drain(*a).empty());
  CHECK(f.drain(*b) == make_frame("third", false));
}

TEST_CASE("SUBSCRIBE or END of a socket that is not open is answered with GONE") {
  Fixture f;
  f.hello("w1");
  f.take("w1");
  f.from("w1", proto::Subscribe{"gwt.16.9", "room"});
  f.from("w1", proto::End{"gwt.16.a", 1000, ""});
  auto back = f.take("w1");
  REQUIRE(back.size() == 2);
  CHECK(std::get<proto::Gone>(back[0]).wsid == "gwt.16.9");
  CHECK(std::get<proto::Gone>(back[1]).wsid == "gwt.16.a");
}

TEST_CASE("END flushes queued frames first, then closes with the code") {
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  f.from("w1", proto::Write{{s->wsid()}, false, "last words"});
  f.from("w1", proto::End{s->wsid(), 4100, "bye"});
  std::string out;
  CHECK(f.core.next_output(*s, out) == GatewayCore::Output::data);
  CHECK(out == make_frame("last words", false));
  out.clear();
  CHECK(f.core.next_output(*s, out) == GatewayCore::Output::close);
  CHECK(s->close_code == 4100);
  CHECK(s->close_reason() == "bye");
}

TEST_CASE("END with a code that may not be sent becomes 1000") {
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  f.from("w1", proto::End{s->wsid(), 1006, "x"});
  std::string out;
  CHECK(f.core.next_output(*s, out) == GatewayCore::Output::close);
  CHECK(s->close_code == 1000);
}

TEST_CASE("a full send queue closes the socket with 4008 and counts it") {
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  std::string payload(400, 'x');
  f.from("w1", proto::Write{{s->wsid()}, false, payload});
  f.from("w1", proto::Write{{s->wsid()}, false, payload});
  f.from("w1", proto::Write{{s->wsid()}, false, payload});  // 3 x 404 > 1000
  std::string out;
  CHECK(f.core.next_output(*s, out) == GatewayCore::Output::close);
  CHECK(s->close_code == close_code::slow_consumer);
  CHECK(f.core.counters().slow_consumer_closes == 1);
}

TEST_CASE("closing a socket sends CLOSE to its worker with the code") {
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  std::string wsid = s->wsid();
  f.take("w1");
  f.core.session_closed(*s, 1001, "tab closed");
  auto sent = f.take("w1");
  REQUIRE(sent.size() == 1);
  auto& close = std::get<proto::Close>(sent[0]);
  CHECK(close.wsid == wsid);
  CHECK(close.code == 1001);
  CHECK(close.reason == "tab closed");
  CHECK(f.core.session_count() == 0);
  CHECK(f.core.find(wsid) == nullptr);
}

TEST_CASE("a worker silent past the deadline is dropped; any traffic keeps it alive") {
  Fixture f;
  f.hello("w1", {{"chat", proto::AppMode::shared, 0}}, 0);
  f.core.tick(2000);
  CHECK(f.core.live_workers() == 1);
  f.from("w1", proto::Heartbeat{}, 2500);
  f.core.tick(5000);
  CHECK(f.core.live_workers() == 1);
  f.core.tick(9000);
  CHECK(f.core.live_workers() == 0);
  CHECK(f.core.counters().workers_lost == 1);
  CHECK(f.core.counters().failover_detect_ms_last == 6500);
}

TEST_CASE("heartbeats go to every worker once per interval") {
  Fixture f;
  f.hello("w1", {{"chat", proto::AppMode::shared, 0}}, 0);
  f.take("w1");
  f.core.tick(1000);
  f.core.tick(1100);
  auto sent = f.take("w1");
  REQUIRE(sent.size() == 1);
  CHECK(std::holds_alternative<proto::Heartbeat>(sent[0]));
}

TEST_CASE("idle events follow the app's idle timeout and repeat while the client is silent") {
  Fixture f;
  f.hello("w1", {{"chat", proto::AppMode::shared, 1500}}, 0);
  Session* s = f.open("chat", 0);
  f.take("w1");
  f.from("w1", proto::Heartbeat{}, 1000);
  f.core.tick(1000);
  auto count_idle = [&] {
    int n = 0;
    for (auto& e : f.take("w1")) n += std::holds_alternative<proto::Idle>(e);
    return n;
  };
  CHECK(count_idle() == 0);
  f.from("w1", proto::Heartbeat{}, 1600);
  f.core.tick(1600);
  CHECK(count_idle() == 1);
  f.core.client_message(*s, false, "x", 2000);
  f.from("w1", proto::Heartbeat{}, 3000);
  f.core.tick(3000);
  CHECK(count_idle() == 0);
  f.from("w1", proto::Heartbeat{}, 3600);
  f.core.tick(3600);
  CHECK(count_idle() == 1);
}

TEST_CASE("QUERY is answered with STATUS") {
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  f.take("w1");
  f.from("w1", proto::Query{s->wsid()});
  f.from("w1", proto::Query{"gwt.1.zz"});
  auto sent = f.take("w1");
  REQUIRE(sent.size() == 2);
  CHECK(std::get<proto::Status>(sent[0]).open);
  CHECK_FALSE(std::get<proto::Status>(sent[1]).open);
}

TEST_CASE("malformed pool bodies and wrong-direction messages are counted, never fatal") {
  Fixture f;
  f.hello("w1");
  f.core.pool_message("w1", "\xc1garbage", 0);
  f.core.pool_message("w1", "", 0);
  f.from("w1", proto::Open{});
  CHECK(f.core.counters().pool_decode_errors == 2);
  CHECK(f.core.counters().pool_unexpected == 1);
  CHECK(f.core.live_workers() == 1);
}

TEST_CASE("BYE stops new sockets going to a draining worker") {
  Fixture f;
  f.hello("w1");
  f.hello("w2");
  f.from("w1", proto::Bye{});
  for (int i = 0; i < 3; ++i) {
    Session* s = f.open();
    REQUIRE(s);
    CHECK(s->worker == "w2");
  }
}

TEST_CASE("close_all closes every socket after its queue") {
  Fixture f;
  f.hello("w1");
  Session* a = f.open();
  Session* b = f.open();
  f.from("w1", proto::Write{{a->wsid()}, false, "x"});
  f.core.close_all(close_code::going_away, "bye");
  std::string out;
  CHECK(f.core.next_output(*a, out) == GatewayCore::Output::data);
  CHECK(f.core.next_output(*a, out) == GatewayCore::Output::close);
  CHECK(f.core.next_output(*b, out) == GatewayCore::Output::close);
  CHECK(b->close_code == close_code::going_away);
}

// ---------------------------------------------------------------- failover (issue 3)

namespace {
template <typename T>
std::vector<T> only(const std::vector<proto::Envelope>& all) {
  std::vector<T> out;
  for (const auto& e : all)
    if (auto* x = std::get_if<T>(&e)) out.push_back(*x);
  return out;
}
}  // namespace

TEST_CASE("ACKs trim the unacknowledged events; a CLOSE stays until acknowledged") {
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  std::string wsid = s->wsid();
  CHECK(s->unacked.size() == 1);  // the OPEN (event 0)
  f.from("w1", proto::Ack{wsid, 0});
  CHECK(s->unacked.empty());
  f.core.client_message(*s, false, "a", 0);
  f.core.client_message(*s, false, "b", 0);
  CHECK(s->unacked.size() == 2);
  f.from("w1", proto::Ack{wsid, 1});
  CHECK(s->unacked.size() == 1);
  CHECK(s->acked_seq == 1);
  f.core.session_closed(*s, 1000, "");
  CHECK(f.core.session_count() == 0);
  CHECK(f.core.closed_pending() == 1);
  CHECK(f.core.find(wsid) == nullptr);  // closed: WRITEs get GONE
  f.from("w1", proto::Ack{wsid, 2});
  CHECK(f.core.closed_pending() == 1);  // CLOSE (seq 3) still unacknowledged
  f.from("w1", proto::Ack{wsid, 3});
  CHECK(f.core.closed_pending() == 0);
}

TEST_CASE("a dead worker's sockets move to a live worker: OPEN resume, then the unacked events in order") {
  Fixture f;
  f.hello("w1", {{"chat", proto::AppMode::shared, 0}}, 0);
  Session* s = f.open();
  REQUIRE(s->worker == "w1");
  f.core.client_message(*s, false, "one", 0);
  f.core.client_message(*s, false, "two", 0);
  f.core.client_message(*s, false, "three", 0);
  f.from("w1", proto::Ack{s->wsid(), 1}, 0);
  f.hello("w2", {{"chat", proto::AppMode::shared, 0}}, 2500);
  f.take("w2");
  f.core.tick(3500);  // w1 silent since 0: dead
  REQUIRE(f.core.live_workers() == 1);
  CHECK(s->worker == "w2");
  auto sent = f.take("w2");
  sent.erase(std::remove_if(sent.begin(), sent.end(),
                            [](const proto::Envelope& e) { return std::holds_alternative<proto::Heartbeat>(e); }),
             sent.end());
  REQUIRE(sent.size() == 3);
  auto& open = std::get<proto::Open>(sent[0]);
  CHECK(open.resume);
  CHECK(open.acked_seq == 1);
  CHECK(open.wsid == s->wsid());
  CHECK(open.app == "chat");
  CHECK(std::get<proto::Message>(sent[1]).seq == 2);
  CHECK(std::get<proto::Message>(sent[2]).seq == 3);
  CHECK(f.core.counters().sessions_moved == 1);
  CHECK(f.core.counters().events_resent == 2);
  std::string out;  // the browser notices nothing
  CHECK(f.core.next_output(*s, out) == GatewayCore::Output::none);
}

TEST_CASE("with no worker left, sockets wait, keep their events, and are taken over by the next worker") {
  Fixture f;
  f.hello("w1", {{"chat", proto::AppMode::shared, 0}}, 0);
  Session* s = f.open();
  f.core.tick(5000);
  REQUIRE(f.core.live_workers() == 0);
  CHECK(s->worker.empty());
  f.core.client_message(*s, false, "while nobody listens", 5000);
  Session* t = f.open("chat", 5000);
  CHECK(t == nullptr);  // new sockets are refused meanwhile
  f.hello("w3", {{"chat", proto::AppMode::shared, 0}}, 6000);
  auto sent = f.take("w3");
  auto opens = only<proto::Open>(sent);
  auto messages = only<proto::Message>(sent);
  REQUIRE(opens.size() == 1);
  CHECK_FALSE(opens[0].resume);  // w1 never acknowledged the OPEN: w3 gets it whole
  CHECK(opens[0].path == "/chat");
  REQUIRE(messages.size() == 1);
  CHECK(messages[0].payload == "while nobody listens");
}

TEST_CASE("a socket closed while no worker is live keeps its CLOSE for the next worker: on_close runs once") {
  Fixture f;
  f.hello("w1", {{"chat", proto::AppMode::shared, 0}}, 0);
  Session* s = f.open();
  std::string wsid = s->wsid();
  f.core.tick(5000);
  f.core.session_closed(*s, 1001, "gone");
  CHECK(f.core.closed_pending() == 1);
  f.hello("w2", {{"chat", proto::AppMode::shared, 0}}, 6000);
  auto sent = f.take("w2");
  auto closes = only<proto::Close>(sent);
  REQUIRE(closes.size() == 1);
  CHECK(closes[0].wsid == wsid);
  CHECK(closes[0].code == 1001);
  REQUIRE(only<proto::Open>(sent).size() == 1);
  f.from("w2", proto::Ack{wsid, 1}, 6000);
  CHECK(f.core.closed_pending() == 0);
}

TEST_CASE("dedicated sockets are closed with 1012 when their worker is lost") {
  Fixture f;
  f.hello("w1", {{"pinned", proto::AppMode::dedicated, 0}}, 0);
  f.hello("w2", {{"pinned", proto::AppMode::dedicated, 0}}, 2500);
  Session* s = f.open("pinned", 0);
  REQUIRE(s);
  std::string first = s->worker;
  f.from(first == "w1" ? "w2" : "w1", proto::Heartbeat{}, 3000);
  f.core.worker_unreachable(first, 3000);
  std::string out;
  CHECK(f.core.next_output(*s, out) == GatewayCore::Output::close);
  CHECK(s->close_code == close_code::service_restart);
  CHECK(f.core.counters().dedicated_closed == 1);
}

TEST_CASE("BYE moves a draining worker's sockets away and is answered with BYE") {
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  REQUIRE(s->worker == "w1");
  f.hello("w2");
  f.take("w1");
  f.take("w2");
  f.from("w1", proto::Ack{s->wsid(), 0});  // on_open ran
  f.from("w1", proto::Bye{});
  CHECK(s->worker == "w2");
  auto back = f.take("w1");
  REQUIRE(back.size() == 1);
  CHECK(std::holds_alternative<proto::Bye>(back[0]));
  CHECK(only<proto::Open>(f.take("w2")).at(0).resume);
  CHECK(f.core.counters().workers_drained == 1);
  // Its late ACKs no longer count: the socket is w2's now.
  f.core.client_message(*s, false, "x", 0);
  f.from("w1", proto::Ack{s->wsid(), 1});
  CHECK(s->unacked.size() == 1);
  CHECK(f.core.counters().acks_ignored == 1);
}

TEST_CASE("traffic from an unknown worker is answered with WELCOME, at most once per heartbeat") {
  Fixture f;
  f.from("ghost", proto::Heartbeat{}, 0);
  f.from("ghost", proto::Heartbeat{}, 10);
  auto sent = f.take("ghost");
  REQUIRE(sent.size() == 1);
  CHECK_FALSE(std::get<proto::Welcome>(sent[0]).registered);
  f.from("ghost", proto::Heartbeat{}, 1500);
  CHECK(f.take("ghost").size() == 1);
  CHECK(f.core.counters().welcomes_unsolicited == 2);
  CHECK(f.core.live_workers() == 0);
}

TEST_CASE("a repeated dedupe key is delivered once") {
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  f.from("w1", proto::Subscribe{s->wsid(), "room"});
  f.from("w1", proto::Publish{"room", false, "m1", "", "chat:room:1"});
  f.from("w1", proto::Publish{"room", false, "m1", "", "chat:room:1"});
  f.from("w1", proto::Write{{s->wsid()}, false, "w", "k2"});
  f.from("w1", proto::Write{{s->wsid()}, false, "w", "k2"});
  f.from("w1", proto::Publish{"room", false, "plain", ""});
  f.from("w1", proto::Publish{"room", false, "plain", ""});
  CHECK(f.drain(*s) == make_frame("m1", false) + make_frame("w", false) + make_frame("plain", false) +
                           make_frame("plain", false));
  CHECK(f.core.counters().duplicates_suppressed == 2);
}

TEST_CASE("too much unacknowledged pauses the client's reads until the worker catches up") {
  Fixture f;
  f.hello("w1");
  Session* s = f.open();
  const auto limit = f.core.config().max_unacked_events;
  for (std::size_t i = 0; i <= limit; ++i) f.core.client_message(*s, false, "m", 0);
  REQUIRE(f.driver.reading.size() == 1);
  CHECK_FALSE(f.driver.reading[0].second);
  CHECK(bool(s->reading_paused));
  f.from("w1", proto::Ack{s->wsid(), limit});
  REQUIRE(f.driver.reading.size() == 2);
  CHECK(f.driver.reading[1].second);
  CHECK_FALSE(bool(s->reading_paused));
}

TEST_CASE("closed sockets waiting for a worker are bounded; the oldest are dropped and counted") {
  FakeDriver driver;
  GatewayConfig config = test_config();
  config.max_closed_pending = 2;
  GatewayCore core(config, 1, driver);
  core.pool_message("w1", proto::encode(proto::Hello{proto::protocol_version, "w1", {{"chat", proto::AppMode::shared, 0}}}), 0);
  std::vector<Session*> sessions;
  for (int i = 0; i < 3; ++i) {
    OpenParams p;
    p.app = "chat";
    sessions.push_back(core.open_session(std::move(p), 0));
  }
  core.tick(5000);  // the worker dies: nobody acknowledges
  for (Session* s : sessions) core.session_closed(*s, 1000, "");
  CHECK(core.closed_pending() == 2);
  CHECK(core.counters().orphan_closes_dropped == 1);
}

TEST_CASE("a worker that dies before acknowledging OPEN is replaced by one that gets the whole OPEN") {
  Fixture f;
  f.hello("w1", {{"chat", proto::AppMode::shared, 0}}, 0);
  f.hello("w2", {{"chat", proto::AppMode::shared, 0}}, 2500);
  f.take("w2");
  Session* s = f.open();
  REQUIRE(s);
  std::string first = s->worker;
  std::string other = first == "w1" ? "w2" : "w1";
  f.take(other);
  f.core.worker_unreachable(first, 3000);
  auto sent = f.take(other);
  auto opens = only<proto::Open>(sent);
  REQUIRE(opens.size() == 1);
  CHECK_FALSE(opens[0].resume);
  CHECK(opens[0].query == "room=a");
  CHECK(opens[0].remote_address == "127.0.0.1");
}

TEST_CASE("an older snapshot under the same order key is dropped once a newer one went out") {
  Fixture f;
  f.hello("w1");
  f.hello("w2");
  Session* s = f.open();
  f.from("w1", proto::Subscribe{s->wsid(), "room"});
  f.from("w2", proto::Publish{"room", false, "v6", "", "", "userlist:room", 6});
  f.from("w1", proto::Publish{"room", false, "v5", "", "", "userlist:room", 5});  // crossed on the way
  f.from("w1", proto::Publish{"room", false, "v6 again", "", "", "userlist:room", 6});
  f.from("w1", proto::Publish{"room", false, "other", "", "", "userlist:other", 1});
  CHECK(f.drain(*s) == make_frame("v6", false) + make_frame("v6 again", false) + make_frame("other", false));
  CHECK(f.core.counters().stale_suppressed == 1);
}

namespace {
// Runs ticks every 250 ms up to `until`, answering like a browser (b answers pings, c chats);
// `a` never answers. Returns per-session counts of pings seen.
struct KeepAlive {
  FakeDriver driver;
  GatewayCore core;
  int token = 0;
  explicit KeepAlive(std::uint32_t interval_ms)
      : core(
            [&] {
              GatewayConfig c = test_config();
              c.ping_interval_ms = interval_ms;
              c.worker_dead_ms = 1'000'000'000;  // the worker stays alive without heartbeats
              return c;
            }(),
            7, driver) {
    core.pool_message("w1", proto::encode(proto::Hello{proto::protocol_version, "w1", {{"chat", proto::AppMode::shared, 0}}}), 0);
  }
  Session* open() {
    OpenParams p;
    p.app = "chat";
    p.transport = &token;
    return core.open_session(std::move(p), 0);
  }
  static int pings_in(const std::string& bytes) {
    int n = 0;
    // The gateway's ping: FIN + opcode 9, a 1-byte payload "k".
    for (auto at = bytes.find("\x89\x01k", 0, 3); at != std::string::npos; at = bytes.find("\x89\x01k", at + 3, 3)) ++n;
    return n;
  }
};
}  // namespace

TEST_CASE("keep-alive: silent sockets get a ping; one silent through two pings is closed with 4009") {
  KeepAlive k(1000);
  Session* a = k.open();  // never answers (a half-open connection)
  Session* b = k.open();  // answers every ping (a browser)
  Session* c = k.open();  // chats every 500 ms: never needs a ping
  REQUIRE((a && b && c));
  int pings_a = 0, pings_b = 0, pings_c = 0;
  std::int64_t a_closed_at = -1;
  for (std::int64_t now = 250; now <= 6000; now += 250) {
    if (now % 500 == 0) k.core.client_message(*c, false, "hi", now);
    k.core.tick(now);
    for (Session* s : {a, b, c}) {
      if (!s->transport) continue;
      std::string out;
      GatewayCore::Output what;
      while ((what = k.core.next_output(*s, out)) == GatewayCore::Output::data) {}
      int pings = KeepAlive::pings_in(out);
      if (s == a) pings_a += pings;
      if (s == b) pings_b += pings;
      if (s == c) pings_c += pings;
      if (s == b && pings) k.core.heard(*b, now);  // the pong
      if (what == GatewayCore::Output::close) {
        CHECK(s == a);
        CHECK(s->close_code == close_code::ping_timeout);
        a_closed_at = now;
        k.core.session_closed(*s, s->close_code, "ping timeout");  // the shell closes the socket
      }
    }
  }
  CHECK(pings_a >= 1);
  CHECK(a_closed_at >= 2000);  // never before two silent intervals
  CHECK(a_closed_at <= 3250);  // and within three (one pass per interval, plus a tick)
  CHECK(pings_b >= 4);         // pinged about once per interval while otherwise silent
  CHECK(pings_b <= 6);
  CHECK(b->transport);         // answered: kept
  CHECK(pings_c == 0);         // never silent for an interval
  CHECK(c->transport);
  CHECK(k.core.counters().ping_timeouts == 1);
  CHECK(k.core.counters().pings_sent == static_cast<std::uint64_t>(pings_a + pings_b));
  CHECK(k.core.session_count() == 2);
}

TEST_CASE("keep-alive: a socket whose reading we paused is neither pinged nor closed") {
  KeepAlive k(1000);
  Session* s = k.open();
  REQUIRE(s);
  s->reading_paused = true;  // the workers are behind: the gateway stopped reading this client
  for (std::int64_t now = 250; now <= 10'000; now += 250) k.core.tick(now);
  std::string out;
  while (k.core.next_output(*s, out) == GatewayCore::Output::data) {}
  CHECK(KeepAlive::pings_in(out) == 0);
  CHECK_FALSE(bool(s->close_now));
  CHECK(k.core.counters().ping_timeouts == 0);
  // Reading again: silence counts from then on, and the usual rule applies.
  s->reading_paused = false;
  for (std::int64_t now = 10'250; now <= 11'000; now += 250) k.core.tick(now);
  CHECK_FALSE(bool(s->close_now));
  for (std::int64_t now = 11'250; now <= 14'000; now += 250) k.core.tick(now);
  CHECK(bool(s->close_now));  // pinged, never answered
  CHECK(s->close_code == close_code::ping_timeout);
}

TEST_CASE("keep-alive: interval 0 never pings nor closes; closing sockets leave the ring cleanly") {
  KeepAlive off(0);
  Session* quiet = off.open();
  REQUIRE(quiet);
  for (std::int64_t now = 250; now <= 100'000; now += 250) off.core.tick(now);
  std::string out;
  off.core.next_output(*quiet, out);
  CHECK(KeepAlive::pings_in(out) == 0);
  CHECK_FALSE(bool(quiet->close_now));
  CHECK(off.core.counters().pings_sent == 0);

  // Many sockets, closed in a scattered order while passes run: every survivor is still pinged.
  KeepAlive k(1000);
  std::vector<Session*> all;
  for (int i = 0; i < 50; ++i) all.push_back(k.open());
  std::vector<Session*> kept;
  for (std::int64_t now = 250; now <= 1500; now += 250) k.core.tick(now);
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (i % 3 == 0) k.core.session_closed(*all[i], 1000, "");
    else kept.push_back(all[i]);
  }
  for (Session* s : kept) {  // the pings so far; answered
    std::string bytes;
    while (k.core.next_output(*s, bytes) == GatewayCore::Output::data) {}
    k.core.heard(*s, 1500);
  }
  // Two more passes, answering every ping: each survivor is pinged again and none is closed.
  std::set<Session*> pinged;
  for (std::int64_t now = 1750; now <= 4500; now += 250) {
    k.core.tick(now);
    for (Session* s : kept) {
      std::string bytes;
      while (k.core.next_output(*s, bytes) == GatewayCore::Output::data) {}
      if (KeepAlive::pings_in(bytes) == 0) continue;
      pinged.insert(s);
      k.core.heard(*s, now);
    }
  }
  CHECK(pinged.size() == kept.size());
  for (Session* s : kept) CHECK_FALSE(bool(s->close_now));
  CHECK(k.core.counters().ping_timeouts == 0);
  CHECK(k.core.session_count() == kept.size());
}
