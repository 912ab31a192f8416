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
  void on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary, std::uint64_t seq) override {
    seqs.push_back(seq);
    App::on_message(pool, wsid, data, binary, seq);  // the default forwards to the 4-argument form
  }
  void on_resume(Pool& pool, const OpenRequest& request, std::uint64_t acked_seq) override {
    resumes.push_back({request, acked_seq});
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
    if (on_close_do) on_close_do(pool, wsid);
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
  std::vector<std::pair<OpenRequest, std::uint64_t>> resumes;
  std::vector<std::uint64_t> seqs;
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
  std::function<void(Pool&, const Wsid&)> on_close_do;

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
  bool refuse[2] = {false, false};                     // the shell cannot hand that gateway's batch to ZeroMQ

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
      if (refuse[g]) return dispatcher.batch_undelivered(g, now);
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
  // Within the lease, commands for a silent gateway still go out (a stalled gateway reads them
  // when it resumes); its sockets are not given up.
  h.dispatcher.write(b1, "x");
  h.dispatcher.publish("room", "p");
  h.flush();
  CHECK(h.echo.gones.empty());
  CHECK(h.take_kind<proto::Write>(1).size() == 1);
  CHECK(h.dispatcher.counters().unroutable == 0);
  CHECK(h.take_kind<proto::Publish>(0).size() == 1);
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

  h.welcome(0, "ga", 8);  // restarted (unasked: it greets the workers it does not know)
  REQUIRE(h.chat.closes.size() == 2);
  for (const auto& c : h.chat.closes) {
    CHECK(c.code == close_code::going_away);
    CHECK(parse_wsid(c.wsid)->gateway_id == "ga");
  }
  CHECK(h.dispatcher.open_sockets() == 1);  // b1
  CHECK(h.dispatcher.counters().purged_stale == 2);
  CHECK(answered);
  CHECK(welcomes.back() == std::pair<std::string, std::uint64_t>{"ga", 8});
  CHECK(h.dispatcher.counters().forgotten == 0);  // a restart is not "forgotten"
  h.in(0, proto::Close{a1, 1006, ""});  // a straggler from the old epoch: no second on_close
  CHECK(h.chat.closes.size() == 2);
  // It did not know us: HELLO again, and its answer ends the registration.
  CHECK(h.take_kind<proto::Hello>(0).size() == 1);
  CHECK(h.dispatcher.registering(0));
  h.welcome(0, "ga", 8);
  CHECK_FALSE(h.dispatcher.registering(0));
  CHECK(h.take_kind<proto::Hello>(0).empty());
}

TEST_CASE("dispatcher: a new epoch that answers our HELLO needs no second HELLO") {
  Harness h;
  h.ready();
  h.open(0, a1);
  for (int i = 0; i < 3; ++i) {  // our loop keeps turning (no stall); ga stays silent: dead, HELLO
    h.advance(1000ms);
    h.in(1, proto::Heartbeat{});
  }
  CHECK(h.dispatcher.registering(0));
  CHECK(h.take_kind<proto::Hello>(0).size() == 1);
  h.welcome(0, "ga", 8);  // the restarted gateway answers
  CHECK(h.chat.closes.size() == 1);
  CHECK_FALSE(h.dispatcher.registering(0));
  CHECK(h.take_kind<proto::Hello>(0).empty());
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
  h.dispatcher.start_drain(h.now);
  h.flush();
  CHECK(h.take_kind<proto::Bye>(0).size() == 1);
  CHECK(h.take_kind<proto::Bye>(1).empty());
}

TEST_CASE("dispatcher: an undelivered HELLO is retried soon, backing off to the heartbeat") {
  Harness h;
  h.refuse[0] = true;
  h.start();  // the first HELLO to gateway 0 cannot be handed over
  CHECK(h.take(0).empty());
  CHECK(h.take_kind<proto::Hello>(1).size() == 1);
  CHECK(h.dispatcher.next_deadline() == t0 + 10ms);
  h.refuse[0] = false;
  h.advance(10ms);
  CHECK(h.take_kind<proto::Hello>(0).size() == 1);
  CHECK(h.take(1).empty());  // gateway 1 keeps its normal period
  h.refuse[0] = true;
  h.advance(1000ms);  // the next HELLO is due a heartbeat later and refused again
  h.refuse[0] = false;
  h.advance(19ms);
  CHECK(h.take(0).empty());
  h.advance(1ms);  // 20 ms: doubled
  CHECK(h.take_kind<proto::Hello>(0).size() == 1);
  h.refuse[0] = true;
  for (int i = 0; i < 10; ++i) h.advance(1000ms);
  CHECK(h.dispatcher.next_deadline() <= h.now + 1000ms);  // capped at the heartbeat
  h.refuse[0] = false;
  h.welcome(0, "ga", 7);
  CHECK(h.dispatcher.welcomed(0));
  CHECK_FALSE(h.dispatcher.registering(0));
  h.take(0);
  h.refuse[0] = true;
  h.dispatcher.write(a1, "x");
  h.flush();  // refused, but no HELLO in it: no HELLO retry once welcomed
  h.refuse[0] = false;
  h.advance(100ms);
  CHECK(h.take_kind<proto::Hello>(0).empty());
}

// ---------------------------------------------------------------- issue 3: failover

namespace {

proto::Open resume_of(const std::string& wsid, std::uint64_t acked_seq, const std::string& app = "chat") {
  proto::Open o;
  o.wsid = wsid;
  o.app = app;
  o.query = "room=blue";
  o.resume = true;
  o.acked_seq = acked_seq;
  return o;
}

}  // namespace

TEST_CASE("dispatcher: on_message gets the event's seq") {
  Harness h;
  h.ready();
  h.open(0, a1);
  h.message(0, a1, 1, "one");
  h.message(0, a1, 4, "four");
  CHECK(h.chat.seqs == std::vector<std::uint64_t>{1, 4});
  REQUIRE(h.chat.messages.size() == 2);  // and the default forwards to the 4-argument form
  CHECK(h.chat.messages[1].data == "four");
}

TEST_CASE("dispatcher: OPEN resume takes a socket over without on_open, from acked_seq on") {
  Harness h;
  h.ready();
  h.in(0, resume_of(a1, 5));
  CHECK(h.chat.opens.empty());
  REQUIRE(h.chat.resumes.size() == 1);
  CHECK(h.chat.resumes[0].first.wsid == a1);
  CHECK(h.chat.resumes[0].first.param("room") == "blue");
  CHECK(h.chat.resumes[0].second == 5);
  CHECK(h.dispatcher.counters().resumes == 1);
  CHECK(h.dispatcher.counters().opens == 0);
  CHECK(h.dispatcher.open_sockets() == 1);
  CHECK(h.dispatcher.last_seq(a1) == 5u);

  // Re-sent events: what the dead worker acknowledged is skipped, the rest is processed once.
  h.message(0, a1, 5, "acked already");
  h.message(0, a1, 6, "six");
  h.message(0, a1, 6, "six again");
  h.message(0, a1, 7, "seven");
  CHECK(h.chat.seqs == std::vector<std::uint64_t>{6, 7});
  CHECK(h.dispatcher.counters().duplicate_messages == 2);
  h.flush();
  auto acks = h.take_kind<proto::Ack>(0);
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].seq == 7);

  h.in(0, proto::Close{a1, 1000, ""});
  REQUIRE(h.chat.closes.size() == 1);  // on_close runs here, exactly once
  h.flush();
  acks = h.take_kind<proto::Ack>(0);
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].seq == 8);  // a CLOSE is acknowledged as last seq + 1
}

TEST_CASE("dispatcher: a CLOSE is ACKed with last seq + 1, after on_close; repeats are re-ACKed") {
  Harness h;
  h.ready();
  h.open(0, a1);
  h.message(0, a1, 1, "one");
  h.message(0, a1, 2, "two");
  h.in(0, proto::Close{a1, 1001, "bye"});
  h.flush();
  auto acks = h.take_kind<proto::Ack>(0);
  REQUIRE(acks.size() == 1);  // merged with the MESSAGE ACK: one per WSID per flush
  CHECK(acks[0].seq == 3);
  CHECK(h.dispatcher.counters().close_acks == 1);

  // The gateway did not get it (or moved the socket meanwhile) and sends the CLOSE again.
  h.in(0, proto::Close{a1, 1001, "bye"});
  CHECK(h.chat.closes.size() == 1);
  h.flush();
  acks = h.take_kind<proto::Ack>(0);
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].seq == 3);

  // A socket with no messages: seq 1. Refused sockets too (the gateway keeps the CLOSE until ACKed).
  h.open(0, a2);
  h.in(0, proto::Close{a2, 1000, ""});
  h.chat.refuse = true;
  h.open(1, b1);
  h.in(1, proto::Close{b1, 4100, ""});
  h.flush();
  acks = h.take_kind<proto::Ack>(0);
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].wsid == a2);
  CHECK(acks[0].seq == 1);
  auto to_b = h.take_kind<proto::Ack>(1);
  REQUIRE(to_b.size() == 1);
  CHECK(to_b[0].seq == 1);

  // A CLOSE for a WSID never seen: on_gone, and no ACK (its seq is unknown).
  h.in(0, proto::Close{make_wsid("ga", 7, 40), 1000, ""});
  h.flush();
  CHECK(h.take_kind<proto::Ack>(0).empty());
}

TEST_CASE("dispatcher: what on_close sends leaves before the CLOSE's ACK") {
  Harness h;
  h.ready();
  h.open(0, a1, "echo");
  h.message(0, a1, 1, "one");
  h.flush();
  h.take(0);
  // A gateway that got the ACK before on_close's commands could forget the socket's CLOSE while
  // they were lost with a dying worker; commands go first, ACKs last, in one batch.
  h.echo.on_close_do = [&](Pool& pool, const Wsid& wsid) { pool.publish("room", "left: " + wsid); };
  h.in(0, proto::Close{a1, 1000, ""});
  h.flush();
  auto out = h.take(0);
  REQUIRE(out.size() == 2);
  CHECK(std::get<proto::Publish>(out[0]).payload == "left: " + a1);
  CHECK(std::get<proto::Ack>(out[1]).seq == 2);
}

TEST_CASE("dispatcher: OPEN resume for an app we do not serve is left alone; its CLOSE is ACKed") {
  Harness h;
  h.ready();
  h.in(0, resume_of(a1, 2, "nope"));
  CHECK(h.dispatcher.counters().resume_unknown_apps == 1);
  h.message(0, a1, 3, "x");
  h.in(0, proto::Close{a1, 1000, ""});
  h.flush();
  auto out = h.take(0);
  REQUIRE(out.size() == 1);  // no END: the socket is not ours to judge
  CHECK(std::get<proto::Ack>(out[0]).seq == 4);
  CHECK(h.chat.closes.empty());
  CHECK(h.chat.gones.empty());
}

TEST_CASE("dispatcher: OPEN resume of a socket that already closed here does not run on_close again") {
  Harness h;
  h.ready();
  h.open(0, a1);
  h.message(0, a1, 1, "one");
  h.in(0, proto::Close{a1, 1000, ""});
  h.flush();
  h.take(0);
  // Our ACK was lost and the gateway gives the socket to us again.
  h.in(0, resume_of(a1, 1));
  CHECK(h.chat.resumes.empty());
  CHECK(h.dispatcher.counters().duplicate_opens == 1);
  h.in(0, proto::Close{a1, 1000, ""});
  CHECK(h.chat.closes.size() == 1);
  h.flush();
  auto acks = h.take_kind<proto::Ack>(0);
  REQUIRE(acks.size() == 1);
  CHECK(acks[0].seq == 2);
}

TEST_CASE("dispatcher: an unasked WELCOME of the same epoch means forgotten: sockets dropped without on_close") {
  Harness h;
  std::vector<std::uint64_t> welcomes;
  h.dispatcher.add_welcome_listener([&](Pool&, const std::string&, std::uint64_t epoch) { welcomes.push_back(epoch); });
  h.ready();
  h.open(0, a1);
  h.open(0, a2, "echo");
  h.open(1, b1);
  h.message(0, a1, 1, "one");
  h.flush();
  h.take(0);

  h.welcome(0, "ga", 7);  // we never asked: the gateway declared us dead and moved our sockets
  CHECK(h.chat.closes.empty());
  CHECK(h.echo.closes.empty());
  CHECK(h.chat.gones.empty());
  CHECK(h.dispatcher.open_sockets() == 1);  // b1 only
  CHECK(h.dispatcher.counters().forgotten == 1);
  CHECK(h.dispatcher.counters().handed_off == 2);
  CHECK(h.dispatcher.registering(0));
  CHECK(h.dispatcher.welcomed(0));  // still routable: commands from us are still carried out
  CHECK(h.take_kind<proto::Hello>(0).size() == 1);
  CHECK(welcomes.size() == 3);

  // Commands for its sockets still go out (they live on, on another worker).
  h.dispatcher.write(a1, "x");
  h.flush();
  CHECK(h.take_kind<proto::Write>(0).size() == 1);
  CHECK(h.chat.gones.empty());

  h.welcome(0, "ga", 7);  // the answer to our HELLO: nothing more dropped
  CHECK_FALSE(h.dispatcher.registering(0));
  CHECK(h.dispatcher.counters().forgotten == 1);
  CHECK(h.take_kind<proto::Hello>(0).empty());

  // The gateway gives one back (take-over): registered again, without on_open.
  h.in(0, resume_of(a1, 3));
  CHECK(h.chat.opens.size() == 2);  // a1 and b1, earlier
  CHECK(h.chat.resumes.size() == 1);
  h.message(0, a1, 4, "four");
  CHECK(h.chat.seqs == std::vector<std::uint64_t>{1, 4});
  h.in(0, proto::Close{a1, 1000, ""});
  CHECK(h.chat.closes.size() == 1);
  CHECK(h.dispatcher.counters().revived == 0);
}

TEST_CASE("dispatcher: a handed-off socket whose events still come here is revived") {
  Harness h;
  h.ready();
  h.open(0, a1);
  h.message(0, a1, 1, "one");
  h.welcome(0, "ga", 7);  // taken for "forgotten"
  CHECK(h.dispatcher.open_sockets() == 0);
  h.message(0, a1, 1, "one again");  // the gateway still sends its events here
  h.message(0, a1, 2, "two");
  CHECK(h.dispatcher.counters().revived == 1);
  CHECK(h.chat.seqs == std::vector<std::uint64_t>{1, 2});  // its seq memory came back with it
  CHECK(h.dispatcher.open_sockets() == 1);
  h.in(0, proto::Close{a1, 1000, ""});
  CHECK(h.chat.closes.size() == 1);
  CHECK(h.dispatcher.counters().unknown_closes == 0);
}

TEST_CASE("dispatcher: late answers to repeated HELLOs are not taken for 'forgotten'") {
  Harness h;
  h.start();
  h.advance(1000ms);
  h.advance(1000ms);  // a stalled gateway: three HELLOs queued
  CHECK(h.dispatcher.counters().hellos_sent == 6);
  h.welcome(0, "ga", 7);  // it resumes and answers them all, with a socket in between
  h.open(0, a1);
  h.welcome(0, "ga", 7);
  h.welcome(0, "ga", 7);
  CHECK(h.dispatcher.counters().forgotten == 0);
  CHECK(h.dispatcher.open_sockets() == 1);
  CHECK_FALSE(h.dispatcher.registering(0));
  h.welcome(0, "ga", 7);  // a fourth: nobody asked
  CHECK(h.dispatcher.counters().forgotten == 1);
}

TEST_CASE("dispatcher: a HELLO that never left is not waited for") {
  Harness h;
  h.refuse[0] = true;
  h.start();  // the HELLO to ga cannot be handed to ZeroMQ
  h.refuse[0] = false;
  h.now += 5ms;
  h.welcome(0, "ga", 7);  // so this WELCOME answers nothing: the gateway does not know us yet
  CHECK(h.dispatcher.registering(0));
  CHECK(h.take_kind<proto::Hello>(0).size() == 1);
  h.welcome(0, "ga", 7);  // this one answers
  CHECK_FALSE(h.dispatcher.registering(0));
}

TEST_CASE("dispatcher: a gateway silent past the lease is given up") {
  Harness h;
  std::vector<std::string> lost;
  h.dispatcher.add_gateway_lost_listener([&](Pool& pool, const std::string& id) {
    lost.push_back(id);
    pool.publish("chat:room", "fresh userlist");  // listeners may use the pool
  });
  h.ready();
  h.open(0, a1);
  h.open(0, a2, "echo");
  h.open(1, b1);
  h.message(0, a1, 1, "one");
  bool answered = false, value = true;
  h.dispatcher.query(a1, [&](bool open) {
    answered = true;
    value = open;
  });
  for (int i = 0; i < 9; ++i) {
    h.advance(1000ms);
    h.in(1, proto::Heartbeat{});  // gb stays alive
  }
  h.advance(999ms);
  CHECK(lost.empty());
  CHECK(h.chat.closes.empty());
  CHECK_FALSE(h.dispatcher.lost(0));
  h.take(0);
  h.take(1);

  h.advance(1ms);  // 10 s of silence
  CHECK(h.dispatcher.lost(0));
  CHECK_FALSE(h.dispatcher.lost(1));
  CHECK(lost == std::vector<std::string>{"ga"});
  REQUIRE(h.chat.closes.size() == 1);
  CHECK(h.chat.closes[0].wsid == a1);
  CHECK(h.chat.closes[0].code == close_code::going_away);
  REQUIRE(h.echo.closes.size() == 1);
  CHECK(h.dispatcher.counters().purged_lost == 2);
  CHECK(h.dispatcher.counters().gateways_expired == 1);
  CHECK(h.dispatcher.open_sockets() == 1);
  CHECK(answered);
  CHECK_FALSE(value);
  CHECK(h.take_kind<proto::Publish>(1).size() == 1);  // the listener's publish, to gb only
  CHECK(h.take_kind<proto::Publish>(0).empty());

  // Now commands for it are answered with on_gone, and PUBLISH skips it.
  h.dispatcher.write(a1, "x");
  h.dispatcher.publish("t", "y");
  h.flush();
  CHECK(h.chat.gones == std::vector<Wsid>{a1});
  CHECK(h.take_kind<proto::Write>(0).empty());
  CHECK(h.take_kind<proto::Publish>(0).empty());
  CHECK(h.dispatcher.counters().unroutable == 1);

  // The lease fires once; HELLO keeps knocking; a late CLOSE after its return is no second on_close.
  h.advance(5000ms);
  CHECK(lost.size() == 1);
  CHECK_FALSE(h.take_kind<proto::Hello>(0).empty());
  h.welcome(0, "ga", 7);
  CHECK_FALSE(h.dispatcher.lost(0));
  CHECK(h.dispatcher.counters().forgotten == 0);
  h.in(0, proto::Close{a1, 1006, ""});
  CHECK(h.chat.closes.size() == 1);
}

TEST_CASE("dispatcher: another gateway id at an endpoint gives the old one up") {
  Harness h;
  std::vector<std::string> lost;
  h.dispatcher.add_gateway_lost_listener([&](Pool&, const std::string& id) { lost.push_back(id); });
  h.ready();
  h.open(0, a1);
  h.welcome(0, "gc", 3);
  CHECK(lost == std::vector<std::string>{"ga"});
  CHECK(h.chat.closes.size() == 1);
  CHECK(h.dispatcher.gateway_id(0) == "gc");
  h.dispatcher.write(a1, "x");
  h.flush();
  CHECK(h.chat.gones == std::vector<Wsid>{a1});
}

TEST_CASE("dispatcher: drain says BYE, keeps serving, and is done when every gateway answered") {
  Harness h;
  h.ready();
  h.open(0, a1);
  h.open(1, b1);
  CHECK_FALSE(h.dispatcher.drained());
  h.dispatcher.start_drain(h.now);
  h.flush();
  CHECK(h.take_kind<proto::Bye>(0).size() == 1);
  CHECK(h.take_kind<proto::Bye>(1).size() == 1);
  CHECK(h.dispatcher.draining());
  CHECK_FALSE(h.dispatcher.drained());
  CHECK(h.dispatcher.counters().byes_sent == 2);

  // In-flight events are still processed and acknowledged.
  h.message(0, a1, 1, "late but welcome");
  h.flush();
  CHECK(h.chat.seqs == std::vector<std::uint64_t>{1});
  CHECK(h.take_kind<proto::Ack>(0).size() == 1);

  h.in(0, proto::Bye{});
  CHECK(h.dispatcher.released(0));
  CHECK_FALSE(h.dispatcher.drained());
  h.advance(1000ms);
  CHECK(h.take_kind<proto::Heartbeat>(1).size() == 1);  // still alive for the slow one
  h.in(1, proto::Bye{});
  CHECK(h.dispatcher.drained());
  CHECK(h.dispatcher.counters().byes_received == 2);
  CHECK(h.chat.closes.empty());  // the sockets moved; their on_close runs elsewhere
}

TEST_CASE("dispatcher: draining, a gateway that dies or forgets us counts as released; no HELLOs") {
  Harness h;
  h.ready();
  h.dispatcher.start_drain(h.now);
  h.flush();
  h.take(0);
  h.take(1);
  h.welcome(0, "ga", 7);  // forgot us: holds nothing of ours
  CHECK(h.dispatcher.released(0));
  CHECK(h.take_kind<proto::Hello>(0).empty());
  h.in(0, proto::Heartbeat{});
  h.advance(2000ms);
  h.in(0, proto::Heartbeat{});
  h.advance(1000ms);  // gb silent for 3 s: dead
  CHECK(h.dispatcher.released(1));
  CHECK(h.dispatcher.drained());
  h.advance(5000ms);
  CHECK(h.take_kind<proto::Hello>(1).empty());
}

TEST_CASE("dispatcher: draining, a gateway that registers us late still gets a BYE") {
  Harness h;
  h.start();
  h.welcome(0, "ga", 7);
  h.take(0);
  h.take(1);
  h.dispatcher.start_drain(h.now);
  h.flush();
  CHECK(h.take_kind<proto::Bye>(0).size() == 1);
  CHECK(h.take_kind<proto::Bye>(1).empty());  // not welcomed: nothing to say
  h.in(0, proto::Bye{});
  CHECK(h.dispatcher.drained());
  h.welcome(1, "gb", 9);  // answers the HELLO we sent before draining
  h.flush();
  CHECK(h.take_kind<proto::Bye>(1).size() == 1);
  CHECK_FALSE(h.dispatcher.drained());
  h.in(1, proto::Bye{});
  CHECK(h.dispatcher.drained());
}

TEST_CASE("dispatcher: an unexpected BYE is counted and ignored") {
  Harness h;
  h.ready();
  h.in(0, proto::Bye{});
  CHECK(h.dispatcher.counters().unexpected_byes == 1);
  CHECK_FALSE(h.dispatcher.drained());
}

TEST_CASE("dispatcher: dedupe keys ride on WRITE and PUBLISH") {
  Harness h;
  h.ready();
  h.dispatcher.write(a1, "w", false, "k1");
  h.dispatcher.write(std::vector<Wsid>{a1, b1}, "m", false, "k2");
  h.dispatcher.publish("t", "p", false, {}, "k3");
  h.dispatcher.write(a2, "plain");
  h.flush();
  auto to_a = h.take_kind<proto::Write>(0);  // (and its PUBLISH, dropped here)
  REQUIRE(to_a.size() == 3);
  CHECK(to_a[0].dedupe_key == "k1");
  CHECK(to_a[1].dedupe_key == "k2");
  CHECK(to_a[2].dedupe_key.empty());
  auto to_b = h.take(1);
  REQUIRE(to_b.size() == 2);
  CHECK(std::get<proto::Write>(to_b[0]).dedupe_key == "k2");  // each gateway dedupes on its own
  CHECK(std::get<proto::Publish>(to_b[1]).dedupe_key == "k3");
}

TEST_CASE("dispatcher: deadlines never point at work tick() will not do") {
  Harness h;
  h.ready();
  h.open(0, a1);
  // Whatever state we are in, the loop must not spin: after tick+flush the next deadline is ahead.
  auto settles = [&] {
    for (int i = 0; i < 3; ++i) {
      h.dispatcher.tick(h.now);
      h.flush();
    }
    return h.dispatcher.next_deadline() > h.now;
  };
  CHECK(settles());
  h.welcome(0, "ga", 7);  // forgotten: registering while welcomed
  CHECK(settles());
  h.dispatcher.start_drain(h.now);
  CHECK(settles());
  h.advance(3000ms);
  CHECK(settles());
  h.advance(20000ms);  // leases run out
  CHECK(settles());
}

TEST_CASE("dispatcher: OPEN is ACKed as event 0 after on_open's commands, accepted or refused") {
  Harness h;
  h.ready();
  h.open(0, a1);
  h.flush();
  auto sent = h.take(0);
  REQUIRE_FALSE(sent.empty());
  auto* ack = std::get_if<proto::Ack>(&sent.back());
  REQUIRE(ack);
  CHECK(ack->wsid == a1);
  CHECK(ack->seq == 0);

  h.chat.refuse = true;
  h.open(0, a2);
  h.flush();
  sent = h.take(0);
  REQUIRE(sent.size() == 2);
  CHECK(std::holds_alternative<proto::End>(sent[0]));  // the refusal leaves first
  CHECK(std::get<proto::Ack>(sent[1]).seq == 0);
}

TEST_CASE("dispatcher: after a stall, events are held until the gateway says whether it still knows us") {
  SUBCASE("it still knows us: the held events are handled, in order") {
    Harness h;
    h.ready();
    h.open(0, a1);
    h.take(0);
    h.now += 5000ms;  // SIGSTOP: nothing ran for 5 s
    h.message(0, a1, 1, "sent before the stop");
    CHECK(h.chat.messages.empty());  // held
    h.flush();
    CHECK(h.take_kind<proto::Hello>(0).size() == 1);  // "do you still know me?"
    h.in(0, proto::Welcome{proto::protocol_version, "ga", 7, 1000, true});
    REQUIRE(h.chat.messages.size() == 1);
    CHECK(h.chat.messages[0].data == "sent before the stop");
    CHECK(h.dispatcher.counters().fenced_replayed == 1);
  }
  SUBCASE("it declared us dead: the held events were re-sent elsewhere, the sockets are dropped") {
    Harness h;
    h.ready();
    h.open(0, a1);
    h.now += 5000ms;
    h.in(0, proto::Close{a1, 1001, "closed while we were stopped"});
    h.in(0, proto::Welcome{proto::protocol_version, "ga", 7, 1000, false});
    CHECK(h.chat.closes.empty());  // the worker that took the socket over runs on_close
    CHECK(h.dispatcher.open_sockets() == 0);
    CHECK(h.dispatcher.counters().fenced_discarded == 1);
    CHECK(h.dispatcher.counters().stalls == 1);
  }
}
