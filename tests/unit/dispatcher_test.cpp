// The worker's pure core with fake apps and two fake gateways: bodies in, bodies out.
#include <doctest/doctest.h>

#include <stdexcept>

#include "backend/runtime/dispatcher.hpp"
#include "common/close_codes.hpp"
#include "common/wsid.hpp"

using namespace sb;
using namespace sb::backend;
using namespace std::chrono_literals;

namespace {

// Records every callback; behaviour switches let tests script refusals, throws and commands.
class FakeApp : public App {
 public:
  explicit FakeApp(std::string name) : name_(std::move(name)) {}
  proto::AppInfo info() const override { return {name_, proto::AppMode::shared, 0}; }

  OpenDecision on_open(Pool& pool, const OpenRequest& request) override {
    opens.push_back(request);
    if (throw_on_open) throw std::runtime_error("open exploded");
    if (refuse) return OpenDecision::refused(4100, "not today");
    return OpenDecision::accepted();
  }
  void on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary) override {
    in_call = true;
    messages.push_back({wsid, std::string(data), binary});
    if (throw_on_message) {
      in_call = false;
      throw std::runtime_error("message exploded");
    }
    if (on_message_do) on_message_do(pool, wsid, data);
    in_call = false;
  }
  void on_close(Pool& pool, const Wsid& wsid, std::uint16_t code, std::string_view reason) override {
    closes.push_back({wsid, code, std::string(reason)});
  }
  void on_idle(Pool& pool, const Wsid& wsid) override { idles.push_back(wsid); }
  void on_gone(Pool& pool, const Wsid& wsid) override {
    gone_during_call = gone_during_call || in_call;
    gones.push_back(wsid);
  }

  struct Msg {
    Wsid wsid;
    std::string data;
    bool binary;
  };
  struct Closed {
    Wsid wsid;
    std::uint16_t code;
    std::string reason;
  };
  std::vector<OpenRequest> opens;
  std::vector<Msg> messages;
  std::vector<Closed> closes;
  std::vector<Wsid> idles;
  std::vector<Wsid> gones;
  bool refuse = false;
  bool throw_on_open = false;
  bool throw_on_message = false;
  bool in_call = false;
  bool gone_during_call = false;
  std::function<void(Pool&, const Wsid&, std::string_view)> on_message_do;

 private:
  std::string name_;
};

const SteadyTime t0 = SteadyTime{} + 1000h;  // an arbitrary monotonic origin

struct Harness {
  FakeApp chat{"chat"};
  FakeApp echo{"echo"};
  DispatcherSettings settings = [] {
    DispatcherSettings s;
    s.worker_id = "w-test";
    s.heartbeat = 1000ms;
    s.gateway_dead = 3000ms;
    s.query_timeout = 5000ms;
    return s;
  }();
  Dispatcher dispatcher;
  SteadyTime now = t0;
  std::vector<std::vector<proto::Envelope>> sent{2};  // per gateway, decoded, in order

  explicit Harness(DispatcherSettings custom = {}, bool use_custom = false)
      : dispatcher(use_custom ? custom : settings, {&chat, &echo}, {"tcp://g0", "tcp://g1"}) {}

  void start() {
    dispatcher.start(now);
    flush();
  }
  void in(std::size_t gateway, const proto::Envelope& envelope) {
    dispatcher.receive(gateway, proto::encode(envelope), now);
  }
  void flush() {
    dispatcher.flush(now, [&](std::size_t g, std::vector<std::string>& bodies) {
      for (const auto& body : bodies) {
        auto decoded = proto::decode(body);
        REQUIRE(decoded.ok());
        sent[g].push_back(decoded.envelope());
      }
    });
  }
  void advance(std::chrono::milliseconds by) {
    now += by;
    dispatcher.tick(now);
    flush();
  }
  // Drains and returns what went to gateway g since the last take.
  std::vector<proto::Envelope> take(std::size_t g) {
    auto out = std::move(sent[g]);
    sent[g].clear();
    return out;
  }
  template <typename T>
  std::vector<T> take_kind(std::size_t g) {
    std::vector<T> out;
    for (auto& e : take(g))
      if (auto* m = std::get_if<T>(&e)) out.push_back(*m);
    return out;
  }
  void welcome(std::size_t g, const std::string& id, std::uint64_t epoch) {
    in(g, proto::Welcome{proto::protocol_version, id, epoch, 1000});
    flush();
  }
  // Both gateways welcomed: "ga" epoch 7 at 0, "gb" epoch 9 at 1; output drained.
  void ready() {
    start();
    welcome(0, "ga", 7);
    welcome(1, "gb", 9);
    take(0);
    take(1);
  }
  void open(std::size_t g, const std::string& wsid, const std::string& app = "chat", const std::string& query = "") {
    proto::Open o;
    o.wsid = wsid;
    o.app = app;
    o.path = "/" + app;
    o.query = query;
    o.headers = {{"origin", "http://x"}};
    o.session_id = "sess";
    o.remote_address = "10.0.0.1";
    in(g, o);
  }
  void message(std::size_t g, const std::string& wsid, std::uint64_t seq, const std::string& data, bool binary = false) {
    in(g, proto::Message{wsid, seq, binary, data});
  }
};

const std::string a1 = make_wsid("ga", 7, 1);
const std::string a2 = make_wsid("ga", 7, 2);
const std::string b1 = make_wsid("gb", 9, 1);

}  // namespace

TEST_CASE("dispatcher: HELLO until WELCOME, then heartbeats") {
  Harness h;
  h.start();
  for (std::size_t g = 0; g < 2; ++g) {
    auto hellos = h.take_kind<proto::Hello>(g);
    REQUIRE(hellos.size() == 1);
    CHECK(hellos[0].version == proto::protocol_version);
    CHECK(hellos[0].worker_id == "w-test");
    REQUIRE(hellos[0].apps.size() == 2);
    CHECK(hellos[0].apps[0].name == "chat");
    CHECK(hellos[0].apps[1].name == "echo");
  }
  h.advance(500ms);
  CHECK(h.take(0).empty());
  h.advance(500ms);
  CHECK(h.take_kind<proto::Hello>(0).size() == 1);  // repeated every heartbeat
  h.take(1);

  h.welcome(0, "ga", 7);
  CHECK(h.dispatcher.welcomed(0));
  CHECK_FALSE(h.dispatcher.welcomed(1));
  CHECK(h.dispatcher.gateway_id(0) == "ga");
  CHECK(h.dispatcher.gateway_epoch(0) == 7);
  h.advance(1000ms);
  auto to_a = h.take(0);
  REQUIRE(to_a.size() == 1);
  CHECK(std::holds_alternative<proto::Heartbeat>(to_a[0]));  // welcomed: heartbeat, no HELLO
  CHECK(h.take_kind<proto::Hello>(1).size() == 1);           // still knocking at gb
  CHECK(h.dispatcher.counters().welcomes == 1);
}

TEST_CASE("dispatcher: a WELCOME of another protocol version is ignored") {
  Harness h;
  h.start();
  h.in(0, proto::Welcome{proto::protocol_version + 1, "ga", 7, 1000});
  CHECK_FALSE(h.dispatcher.welcomed(0));
  CHECK(h.dispatcher.counters().version_mismatches == 1);
}

TEST_CASE("dispatcher: any traffic keeps a gateway alive; silence marks it dead and HELLO resumes") {
  Harness h;
  h.ready();
  h.advance(2000ms);
  h.in(0, proto::Heartbeat{});  // ga talks, gb stays silent
  h.advance(1000ms);            // gb silent for 3000 ms
  CHECK(h.dispatcher.welcomed(0));
  CHECK_FALSE(h.dispatcher.welcomed(1));
  CHECK(h.dispatcher.counters().gateways_lost == 1);
  CHECK(h.take_kind<proto::Hello>(1).size() == 1);
  CHECK(h.take_kind<proto::Hello>(0).empty());
  // Traffic for a dead gateway's sockets goes to on_gone (deferred), nothing is sent.
  h.dispatcher.write(b1, "x");
  CHECK(h.echo.gones.empty());
  h.flush();
  CHECK(h.echo.gones == std::vector<Wsid>{b1});
  CHECK(h.take_kind<proto::Write>(1).empty());
  CHECK(h.dispatcher.counters().unroutable == 1);
}

TEST_CASE("dispatcher: deadline follows the timers") {
  Harness h;
  h.start();
  CHECK(h.dispatcher.next_deadline() == t0 + 1000ms);  // next HELLO
  h.welcome(0, "ga", 7);
  h.welcome(1, "gb", 9);
  // After flushing WELCOME answers nothing was sent since start, so heartbeat is due at t0+1s.
  CHECK(h.dispatcher.next_deadline() == t0 + 1000ms);
  h.dispatcher.write(a1, "x");
  CHECK(h.dispatcher.next_deadline() == h.now);  // something to flush
  h.flush();
  CHECK(h.dispatcher.next_deadline() == t0 + 1000ms);
}

TEST_CASE("dispatcher: OPEN, MESSAGE, ACK, CLOSE") {
  Harness h;
  h.ready();
  h.open(0, a1, "chat", "room=blue");
  REQUIRE(h.chat.opens.size() == 1);
  const auto& request = h.chat.opens[0];
  CHECK(request.wsid == a1);
  CHECK(request.app == "chat");
  CHECK(request.path == "/chat");
  CHECK(request.param("room") == "blue");
  CHECK(request.header("origin") == "http://x");
  CHECK(request.session_id == "sess");
  CHECK(request.remote_address == "10.0.0.1");
  CHECK(h.echo.opens.empty());
  CHECK(h.dispatcher.open_sockets() == 1);

  h.message(0, a1, 1, "hello");
  h.message(0, a1, 2, std::string("\x00\xff", 2), true);
  REQUIRE(h.chat.messages.size() == 2);
  CHECK(h.chat.messages[0].data == "hello");
  CHECK_FALSE(h.chat.messages[0].binary);
  CHECK(h.chat.messages[1].data == std::string("\x00\xff", 2));
  CHECK(h.chat.messages[1].binary);
  h.flush();
  auto acks = h.take_kind<proto::Ack>(0);
  REQUIRE(acks.size() == 1);  // one ACK per WSID per flush, with the highest seq
  CHECK(acks[0].wsid == a1);
  CHECK(acks[0].seq == 2);

  h.in(0, proto::Close{a1, 1001, "bye"});
  REQUIRE(h.chat.closes.size() == 1);
  CHECK(h.chat.closes[0].code == 1001);
  CHECK(h.chat.closes[0].reason == "bye");
  h.in(0, proto::Close{a1, 1001, "bye"});  // duplicate
  CHECK(h.chat.closes.size() == 1);
  CHECK(h.dispatcher.counters().duplicate_closes == 1);
  CHECK(h.chat.gones.empty());
  CHECK(h.dispatcher.open_sockets() == 0);

  h.message(0, a1, 3, "late");
  CHECK(h.chat.messages.size() == 2);
  CHECK(h.dispatcher.counters().late_messages == 1);
}

TEST_CASE("dispatcher: duplicate and old MESSAGEs are dropped, counted and re-ACKed") {
  Harness h;
  h.ready();
  h.open(0, a1);
  h.message(0, a1, 1, "one");
  h.message(0, a1, 2, "two");
  h.flush();
  h.take(0);
  h.message(0, a1, 2, "two again");
  h.message(0, a1, 1, "one again");
  CHECK(h.chat.messages.size() == 2);
  CHECK(h.dispatcher.counters().duplicate_messages == 2);
  h.flush();
  auto acks = h.take_kind<proto::Ack>(0);
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].seq == 2);
  h.message(0, a1, 5, "gap is fine");  // seq only has to increase
  CHECK(h.chat.messages.size() == 3);
}

TEST_CASE("dispatcher: ACKs go per WSID to the gateway the message came from") {
  Harness h;
  h.ready();
  h.open(0, a1);
  h.open(0, a2, "echo");
  h.open(1, b1);
  h.message(0, a1, 1, "x");
  h.message(0, a2, 1, "y");
  h.message(1, b1, 1, "z");
  h.message(0, a1, 2, "x2");
  h.flush();
  auto to_a = h.take_kind<proto::Ack>(0);
  REQUIRE(to_a.size() == 2);
  CHECK(to_a[0].wsid == a1);
  CHECK(to_a[0].seq == 2);
  CHECK(to_a[1].wsid == a2);
  auto to_b = h.take_kind<proto::Ack>(1);
  REQUIRE(to_b.size() == 1);
  CHECK(to_b[0].wsid == b1);
  CHECK(h.dispatcher.counters().acks_sent == 3);
}

TEST_CASE("dispatcher: a refused OPEN gets END and no on_close") {
  Harness h;
  h.ready();
  h.chat.refuse = true;
  h.open(0, a1);
  h.flush();
  auto ends = h.take_kind<proto::End>(0);
  REQUIRE(ends.size() == 1);
  CHECK(ends[0].wsid == a1);
  CHECK(ends[0].code == 4100);
  CHECK(ends[0].reason == "not today");
  CHECK(h.dispatcher.counters().refused == 1);
  CHECK(h.dispatcher.open_sockets() == 0);
  h.message(0, a1, 1, "ignored");  // raced with the END
  CHECK(h.chat.messages.empty());
  h.in(0, proto::Close{a1, 4100, "not today"});
  CHECK(h.chat.closes.empty());
  CHECK(h.chat.gones.empty());
}

TEST_CASE("dispatcher: OPEN for an app this worker does not serve is ended with 4504") {
  Harness h;
  h.ready();
  h.open(1, b1, "nope");
  h.flush();
  auto ends = h.take_kind<proto::End>(1);
  REQUIRE(ends.size() == 1);
  CHECK(ends[0].code == close_code::unknown_app);
  CHECK(h.dispatcher.counters().unknown_apps == 1);
  h.in(1, proto::Close{b1, 4504, ""});
  CHECK(h.chat.gones.empty());
}

TEST_CASE("dispatcher: duplicate OPEN is ignored") {
  Harness h;
  h.ready();
  h.open(0, a1);
  h.open(0, a1);
  CHECK(h.chat.opens.size() == 1);
  CHECK(h.dispatcher.counters().duplicate_opens == 1);
}

TEST_CASE("dispatcher: CLOSE of a WSID never opened here goes to every app's on_gone") {
  Harness h;
  h.ready();
  h.in(0, proto::Close{a2, 1000, ""});
  CHECK(h.chat.closes.empty());
  CHECK(h.chat.gones == std::vector<Wsid>{a2});
  CHECK(h.echo.gones == std::vector<Wsid>{a2});
  CHECK(h.dispatcher.counters().unknown_closes == 1);
}

TEST_CASE("dispatcher: MESSAGE and IDLE for unknown WSIDs are counted") {
  Harness h;
  h.ready();
  h.message(0, a1, 1, "who?");
  h.in(0, proto::Idle{a1});
  CHECK(h.dispatcher.counters().unknown_wsids == 2);
  h.flush();
  CHECK(h.take_kind<proto::Ack>(0).size() == 1);  // acknowledged so the gateway can forget it
  h.open(0, a2, "echo");
  h.in(0, proto::Idle{a2});
  CHECK(h.echo.idles == std::vector<Wsid>{a2});
}

TEST_CASE("dispatcher: WRITE is grouped by gateway, one WRITE each, targets in order") {
  Harness h;
  h.ready();
  const auto a3 = make_wsid("ga", 7, 3);
  h.dispatcher.write(std::vector<Wsid>{a1, b1, a2, a3}, "payload", true);
  h.flush();
  auto to_a = h.take_kind<proto::Write>(0);
  auto to_b = h.take_kind<proto::Write>(1);
  REQUIRE(to_a.size() == 1);
  REQUIRE(to_b.size() == 1);
  CHECK(to_a[0].targets == std::vector<std::string>{a1, a2, a3});
  CHECK(to_a[0].payload == "payload");
  CHECK(to_a[0].binary);
  CHECK(to_b[0].targets == std::vector<std::string>{b1});
}

TEST_CASE("dispatcher: END, SUBSCRIBE, UNSUBSCRIBE, QUERY go to the WSID's gateway in call order") {
  Harness h;
  h.ready();
  h.dispatcher.subscribe(b1, "room:x");
  h.dispatcher.write(b1, "w");
  h.dispatcher.unsubscribe(b1, "room:x");
  h.dispatcher.end(b1, 4001, "done");
  h.dispatcher.query(b1, [](bool) {});
  h.flush();
  CHECK(h.take(0).empty());
  auto out = h.take(1);
  REQUIRE(out.size() == 5);
  CHECK(std::get<proto::Subscribe>(out[0]).topic == "room:x");
  CHECK(std::get<proto::Write>(out[1]).payload == "w");
  CHECK(std::get<proto::Unsubscribe>(out[2]).wsid == b1);
  CHECK(std::get<proto::End>(out[3]).code == 4001);
  CHECK(std::get<proto::End>(out[3]).reason == "done");
  CHECK(std::get<proto::Query>(out[4]).wsid == b1);
}

TEST_CASE("dispatcher: PUBLISH goes to every welcomed gateway") {
  Harness h;
  h.start();
  h.welcome(1, "gb", 9);
  h.take(0);
  h.take(1);
  h.dispatcher.publish("room:x", "hi", false, b1);
  h.flush();
  CHECK(h.take_kind<proto::Publish>(0).empty());
  auto to_b = h.take_kind<proto::Publish>(1);
  REQUIRE(to_b.size() == 1);
  CHECK(to_b[0].topic == "room:x");
  CHECK(to_b[0].payload == "hi");
  CHECK(to_b[0].except_wsid == b1);
  h.welcome(0, "ga", 7);
  h.take(0);
  h.dispatcher.publish("room:x", "again");
  h.flush();
  CHECK(h.take_kind<proto::Publish>(0).size() == 1);
  CHECK(h.take_kind<proto::Publish>(1).size() == 1);
}

TEST_CASE("dispatcher: commands for unknown gateways, bad WSIDs and old epochs -> deferred on_gone") {
  Harness h;
  h.ready();
  h.open(0, a1, "echo");
  const auto unknown_gateway = make_wsid("gz", 1, 1);
  const auto old_epoch = make_wsid("ga", 6, 1);
  h.echo.on_message_do = [&](Pool& pool, const Wsid&, std::string_view) {
    pool.write(unknown_gateway, "x");
    pool.end("not-a-wsid", 1000, "");
    pool.write(old_epoch, "x");
  };
  h.message(0, a1, 1, "go");
  CHECK_FALSE(h.echo.gone_during_call);  // never re-entrant
  CHECK(h.echo.gones == std::vector<Wsid>{unknown_gateway, "not-a-wsid", old_epoch});
  CHECK(h.chat.gones == std::vector<Wsid>{unknown_gateway, "not-a-wsid", old_epoch});
  CHECK(h.dispatcher.counters().unroutable == 2);
  CHECK(h.dispatcher.counters().bad_wsids == 1);
  h.flush();
  CHECK(h.take_kind<proto::Write>(0).empty());
  CHECK(h.take_kind<proto::End>(0).empty());
}

TEST_CASE("dispatcher: GONE from a gateway reaches every app's on_gone") {
  Harness h;
  h.ready();
  h.in(1, proto::Gone{b1});
  CHECK(h.chat.gones == std::vector<Wsid>{b1});
  CHECK(h.echo.gones == std::vector<Wsid>{b1});
  CHECK(h.dispatcher.counters().gones_received == 1);
}

TEST_CASE("dispatcher: QUERY answers through STATUS, in order, or time out as not open") {
  Harness h;
  h.ready();
  std::vector<std::pair<int, bool>> answers;
  h.dispatcher.query(a1, [&](bool open) { answers.push_back({1, open}); });
  h.dispatcher.query(a1, [&](bool open) { answers.push_back({2, open}); });
  h.dispatcher.query(b1, [&](bool open) { answers.push_back({3, open}); });
  CHECK(h.dispatcher.pending_queries() == 3);
  h.flush();
  CHECK(h.take_kind<proto::Query>(0).size() == 2);
  h.in(0, proto::Status{a1, true});
  h.in(0, proto::Status{a1, false});
  REQUIRE(answers.size() == 2);
  CHECK(answers[0] == std::pair{1, true});
  CHECK(answers[1] == std::pair{2, false});
  h.in(0, proto::Status{a1, true});  // nobody asked
  CHECK(h.dispatcher.counters().unmatched_statuses == 1);
  h.in(0, proto::Status{b1, true});  // b1 lives on gateway 1: a STATUS from 0 does not match
  CHECK(answers.size() == 2);

  h.advance(4999ms);
  CHECK(answers.size() == 2);
  h.advance(1ms);
  REQUIRE(answers.size() == 3);
  CHECK(answers[2] == std::pair{3, false});
  CHECK(h.dispatcher.counters().query_timeouts == 1);
  CHECK(h.dispatcher.pending_queries() == 0);
}

TEST_CASE("dispatcher: QUERY for an unroutable WSID is answered false later, not inside the call") {
  Harness h;
  h.ready();
  bool answered = false;
  bool value = true;
  h.dispatcher.query(make_wsid("gz", 1, 1), [&](bool open) {
    answered = true;
    value = open;
  });
  CHECK_FALSE(answered);
  h.dispatcher.tick(h.now);
  CHECK(answered);
  CHECK_FALSE(value);
}

TEST_CASE("dispatcher: pending QUERYs are bounded") {
  DispatcherSettings s;
  s.worker_id = "w";
  s.max_pending_queries = 1;
  Harness h(s, true);
  h.ready();
  int falses = 0;
  h.dispatcher.query(a1, [&](bool open) { falses += !open; });
  h.dispatcher.query(a2, [&](bool open) { falses += !open; });
  h.dispatcher.tick(h.now);
  CHECK(falses == 1);
  CHECK(h.dispatcher.counters().queries_refused == 1);
}

TEST_CASE("dispatcher: an exception in on_message is caught, counted and the socket ended with 1011") {
  Harness h;
  h.ready();
  h.open(0, a1);
  h.chat.throw_on_message = true;
  h.message(0, a1, 1, "boom");
  CHECK(h.dispatcher.counters().app_errors == 1);
  h.flush();
  auto ends = h.take_kind<proto::End>(0);
  REQUIRE(ends.size() == 1);
  CHECK(ends[0].wsid == a1);
  CHECK(ends[0].code == close_code::internal_error);
  h.in(0, proto::Close{a1, 1011, "internal error"});
  CHECK(h.chat.closes.size() == 1);  // still gets its on_close
}

TEST_CASE("dispatcher: an exception in on_open ends the socket with 1011; on_close still follows") {
  Harness h;
  h.ready();
  h.chat.throw_on_open = true;
  h.open(0, a1);
  CHECK(h.dispatcher.counters().app_errors == 1);
  h.flush();
  auto ends = h.take_kind<proto::End>(0);
  REQUIRE(ends.size() == 1);
  CHECK(ends[0].code == close_code::internal_error);
  h.in(0, proto::Close{a1, 1011, ""});
  CHECK(h.chat.closes.size() == 1);
}

TEST_CASE("dispatcher: an exception in a query callback is contained") {
  Harness h;
  h.ready();
  h.dispatcher.query(a1, [](bool) { throw std::runtime_error("callback exploded"); });
  h.in(0, proto::Status{a1, true});
  CHECK(h.dispatcher.counters().app_errors == 1);
}

TEST_CASE("dispatcher: undecodable and misdirected bodies are counted, the link survives") {
  Harness h;
  h.ready();
  h.dispatcher.receive(0, "\xc1garbage", h.now);
  h.dispatcher.receive(0, "", h.now);
  CHECK(h.dispatcher.counters().decode_errors == 2);
  h.in(0, proto::Write{{a1}, false, "x"});  // only workers send WRITE
  h.in(0, proto::Hello{proto::protocol_version, "x", {}});
  CHECK(h.dispatcher.counters().unexpected_kinds == 2);
  CHECK(h.dispatcher.welcomed(0));
}

TEST_CASE("dispatcher: a gateway's new epoch purges its old sockets with on_close and notifies listeners") {
  Harness h;
  std::vector<std::pair<std::string, std::uint64_t>> welcomes;
  h.dispatcher.add_welcome_listener(
      [&](Pool&, const std::string& id, std::uint64_t epoch) { welcomes.push_back({id, epoch}); });
  h.ready();
  CHECK(welcomes.size() == 2);
  h.open(0, a1);
  h.open(0, a2);
  h.open(1, b1);
  h.chat.refuse = true;
  const auto a3 = make_wsid("ga", 7, 3);
  h.open(0, a3);  // refused: purged silently
  bool answered = false;
  h.dispatcher.query(a1, [&](bool open) { answered = !open; });

  h.welcome(0, "ga", 7);  // same epoch again (e.g. after we thought it dead): nothing purged
  CHECK(h.chat.closes.empty());
  CHECK(h.dispatcher.open_sockets() == 3);

  h.welcome(0, "ga", 8);  // restarted
  REQUIRE(h.chat.closes.size() == 2);
  for (const auto& c : h.chat.closes) {
    CHECK(c.code == close_code::going_away);
    CHECK(parse_wsid(c.wsid)->gateway_id == "ga");
  }
  CHECK(h.dispatcher.open_sockets() == 1);  // b1
  CHECK(h.dispatcher.counters().purged_stale == 2);
  CHECK(answered);
  CHECK(welcomes.back() == std::pair<std::string, std::uint64_t>{"ga", 8});
  h.in(0, proto::Close{a1, 1006, ""});  // a straggler from the old epoch: no second on_close
  CHECK(h.chat.closes.size() == 2);
}

TEST_CASE("dispatcher: the outbox is bounded and drops are counted") {
  DispatcherSettings s;
  s.worker_id = "w";
  s.max_outbox_bodies = 3;
  Harness h(s, true);
  h.ready();
  for (int i = 0; i < 5; ++i) h.dispatcher.write(a1, "x");
  CHECK(h.dispatcher.counters().outbox_drops == 2);
  h.flush();
  CHECK(h.take_kind<proto::Write>(0).size() == 3);
  h.dispatcher.write(a1, "y");  // room again after the flush
  h.flush();
  CHECK(h.take_kind<proto::Write>(0).size() == 1);
}

TEST_CASE("dispatcher: BYE goes to welcomed gateways only") {
  Harness h;
  h.start();
  h.welcome(0, "ga", 7);
  h.take(0);
  h.take(1);
  h.dispatcher.say_goodbye();
  h.flush();
  CHECK(h.take_kind<proto::Bye>(0).size() == 1);
  CHECK(h.take_kind<proto::Bye>(1).empty());
}

TEST_CASE("dispatcher: an undelivered HELLO is retried soon, backing off to the heartbeat") {
  Harness h;
  h.start();
  h.take(0);
  h.take(1);
  h.dispatcher.hello_undelivered(0, h.now);
  CHECK(h.dispatcher.next_deadline() == t0 + 10ms);
  h.advance(10ms);
  CHECK(h.take_kind<proto::Hello>(0).size() == 1);
  CHECK(h.take(1).empty());  // gateway 1 keeps its normal period
  h.dispatcher.hello_undelivered(0, h.now);
  h.advance(19ms);
  CHECK(h.take(0).empty());
  h.advance(1ms);  // 20 ms: doubled
  CHECK(h.take_kind<proto::Hello>(0).size() == 1);
  for (int i = 0; i < 10; ++i) h.dispatcher.hello_undelivered(0, h.now);
  CHECK(h.dispatcher.next_deadline() <= h.now + 1000ms);  // capped at the heartbeat
  h.welcome(0, "ga", 7);
  h.dispatcher.hello_undelivered(0, h.now);  // ignored once welcomed
  CHECK(h.dispatcher.welcomed(0));
}
