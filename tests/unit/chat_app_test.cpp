// ChatApp against a recording FakePool and an in-memory SqliteChatStore: the order of what
// a joining socket receives, userlists, history, Chat fields, room isolation, bad input.
#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "backend/apps/chat.hpp"
#include "backend/apps/chat_protocol.hpp"
#include "backend/store/sqlite_chat_store.hpp"
#include "common/base64.hpp"
#include "common/wsid.hpp"

using namespace sb::backend;
namespace chat = sb::backend::chat;
using nlohmann::json;

namespace {

// Records every Pool call in order.
class FakePool : public Pool {
 public:
  struct Call {
    std::string kind;  // write, end, subscribe, unsubscribe, publish, query
    std::vector<Wsid> targets;
    std::string topic;
    std::string data;
    bool binary = false;
    Wsid except;
    std::uint16_t code = 0;
    std::string dedupe_key;
    std::string order_key;
    std::uint64_t order_version = 0;
  };
  std::vector<Call> calls;

  void write(const Wsid& wsid, std::string_view data, bool binary, std::string_view dedupe_key) override {
    auto& c = add("write");
    c.targets = {wsid};
    c.data = data;
    c.binary = binary;
    c.dedupe_key = dedupe_key;
  }
  void write(const std::vector<Wsid>& wsids, std::string_view data, bool binary, std::string_view dedupe_key) override {
    auto& c = add("write");
    c.targets = wsids;
    c.data = data;
    c.binary = binary;
    c.dedupe_key = dedupe_key;
  }
  void end(const Wsid& wsid, std::uint16_t code, std::string_view reason) override {
    auto& c = add("end");
    c.targets = {wsid};
    c.data = reason;
    c.code = code;
  }
  void subscribe(const Wsid& wsid, std::string_view topic) override {
    auto& c = add("subscribe");
    c.targets = {wsid};
    c.topic = topic;
  }
  void unsubscribe(const Wsid& wsid, std::string_view topic) override {
    auto& c = add("unsubscribe");
    c.targets = {wsid};
    c.topic = topic;
  }
  void publish(std::string_view topic, std::string_view data, bool binary, const Wsid& except,
               std::string_view dedupe_key, std::string_view order_key, std::uint64_t order_version) override {
    auto& c = add("publish");
    c.order_key = order_key;
    c.order_version = order_version;
    c.topic = topic;
    c.data = data;
    c.binary = binary;
    c.except = except;
    c.dedupe_key = dedupe_key;
  }
  void query(const Wsid& wsid, std::function<void(bool)> done) override { add("query").targets = {wsid}; }

  Call& add(const char* kind) {
    calls.emplace_back();
    calls.back().kind = kind;
    return calls.back();
  }
  std::vector<Call> take() { return std::exchange(calls, {}); }
};

json parse(const std::string& text) {
  auto j = json::parse(text, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

std::vector<std::string> names(const json& userlist) {
  std::vector<std::string> out;
  for (const auto& u : userlist.at("Users")) out.push_back(u.at("Name").get<std::string>());
  return out;
}

OpenRequest request(const Wsid& wsid, const std::string& query = "") {
  OpenRequest r;
  r.wsid = wsid;
  r.app = "chat";
  r.path = "/chat";
  r.query = query;
  return r;
}

std::string chat_msg(const std::string& text, const std::string& author = "ignored") {
  return json{{"Message", sb::base64_encode(text)}, {"Author", author}}.dump();
}

std::string user_msg(const std::string& alias) { return json{{"User", alias}}.dump(); }

// 2024-03-05 06:07:08 UTC, advanced by one second per call.
struct FakeClock {
  std::chrono::system_clock::time_point t = std::chrono::system_clock::time_point(std::chrono::seconds(1709618828));
  std::chrono::system_clock::time_point operator()() {
    auto now = t;
    t += std::chrono::seconds(1);
    return now;
  }
};

struct Fixture {
  std::unique_ptr<SqliteChatStore> store;
  FakeClock clock;
  std::optional<ChatApp> app;
  FakePool pool;
  Fixture() {
    std::string error;
    store = SqliteChatStore::open(":memory:", error);
    REQUIRE_MESSAGE(store, error);
    app.emplace(*store, "worker-7", [this] { return clock(); });
  }
  // Ends the app's batch, as the worker does after each loop turn, and returns what it did.
  std::vector<FakePool::Call> take() {
    app->on_batch_end(pool);
    return pool.take();
  }
  // Opens a socket and returns what the app did.
  std::vector<FakePool::Call> join(const Wsid& wsid, const std::string& query = "") {
    auto decision = app->on_open(pool, request(wsid, query));
    REQUIRE(decision.accept);
    return take();
  }
  std::vector<FakePool::Call> send(const Wsid& wsid, const std::string& data, bool binary = false) {
    app->on_message(pool, wsid, data, binary);
    return take();
  }
};

}  // namespace

TEST_CASE("chat: info") {
  Fixture f;
  auto info = f.app->info();
  CHECK(info.name == "chat");
  CHECK(info.mode == sb::proto::AppMode::shared);
  CHECK(info.idle_timeout_ms == 0);
}

TEST_CASE("chat: join sends Status first, subscribes, then history, then the userlist") {
  Fixture f;
  auto calls = f.join("gw.1.abcd");
  REQUIRE(calls.size() == 3);

  CHECK(calls[0].kind == "write");
  CHECK(calls[0].targets == std::vector<Wsid>{"gw.1.abcd"});
  auto status = parse(calls[0].data);
  CHECK(status == json{{"Type", "Status"}, {"WSID", "gw.1.abcd"}, {"Worker", "worker-7"}});
  CHECK(calls[0].data.rfind("{\"Type\":\"Status\"", 0) == 0);  // Type first, as the seeds print it

  CHECK(calls[1].kind == "subscribe");
  CHECK(calls[1].targets == std::vector<Wsid>{"gw.1.abcd"});
  CHECK(calls[1].topic == "chat:default");

  CHECK(calls[2].kind == "publish");
  CHECK(calls[2].topic == "chat:default");
  CHECK(calls[2].except.empty());
  auto users = parse(calls[2].data);
  CHECK(users["Type"] == "userlist");
  CHECK(names(users) == std::vector<std::string>{"guest-abcd"});
}

TEST_CASE("chat: room from the query; empty means default") {
  Fixture f;
  CHECK(f.join("gw.1.a", "room=")[1].topic == "chat:default");
  CHECK(f.join("gw.1.b", "x=1&room=Salle%20%C3%A0%20manger")[1].topic == "chat:Salle à manger");
  CHECK(f.join("gw.1.c", "room=" + std::string(64, 'r'))[1].topic == "chat:" + std::string(64, 'r'));
}

TEST_CASE("chat: a bad room is refused with 1008 and a reason, and nothing is done") {
  Fixture f;
  for (const std::string& query : {"room=" + std::string(65, 'r'), std::string("room=a%0Ab"), std::string("room=%7F"),
                                  std::string("room=%C2%85"), std::string("room=%FF")}) {
    CAPTURE(query);
    auto decision = f.app->on_open(f.pool, request("gw.1.x", query));
    CHECK_FALSE(decision.accept);
    CHECK(decision.code == 1008);
    CHECK_FALSE(decision.reason.empty());
    CHECK(f.take().empty());
  }
  CHECK_FALSE(f.store->member("gw.1.x"));
}

TEST_CASE("chat: userlist on join, alias and leave, in join order") {
  Fixture f;
  f.join("gw.1.aaaa");
  auto second = f.join("gw.1.bbbb");
  CHECK(names(parse(second.back().data)) == std::vector<std::string>{"guest-aaaa", "guest-bbbb"});

  auto calls = f.send("gw.1.aaaa", user_msg("  Ann  "));  // trimmed
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].kind == "publish");
  CHECK(calls[0].topic == "chat:default");
  CHECK(names(parse(calls[0].data)) == std::vector<std::string>{"Ann", "guest-bbbb"});

  calls = f.send("gw.1.bbbb", user_msg("Zoë 🙂"));
  REQUIRE(calls.size() == 1);
  CHECK(names(parse(calls[0].data)) == std::vector<std::string>{"Ann", "Zoë 🙂"});

  // 32 characters (not bytes) is the limit.
  std::string long_alias;
  for (int i = 0; i < 32; ++i) long_alias += "é";
  calls = f.send("gw.1.bbbb", user_msg(long_alias));
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].kind == "publish");

  f.app->on_close(f.pool, "gw.1.aaaa", 1001, "going away");
  calls = f.take();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].kind == "publish");
  CHECK(names(parse(calls[0].data)) == std::vector<std::string>{long_alias});
  CHECK_FALSE(f.store->member("gw.1.aaaa"));

  // A second close (or a gone after the close) finds nothing and publishes nothing.
  f.app->on_close(f.pool, "gw.1.aaaa", 1001, "");
  f.app->on_gone(f.pool, "gw.1.aaaa");
  CHECK(f.take().empty());

  // on_gone alone also removes the member.
  f.app->on_gone(f.pool, "gw.1.bbbb");
  calls = f.take();
  REQUIRE(calls.size() == 1);
  CHECK(names(parse(calls[0].data)).empty());
}

TEST_CASE("chat: a message is stored and published to the room with every field") {
  Fixture f;
  f.join("gw.1.aaaa", "room=lobby");
  f.send("gw.1.aaaa", user_msg("Ann"));

  // The client's Author is not trusted: the stored alias is shown.
  auto calls = f.send("gw.1.aaaa", chat_msg("hello", "Mallory"));
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].kind == "publish");
  CHECK(calls[0].topic == "chat:lobby");
  CHECK(calls[0].except.empty());  // the sender sees its own message through the topic
  CHECK_FALSE(calls[0].binary);
  auto chat = parse(calls[0].data);
  CHECK(chat["Type"] == "Chat");
  CHECK(chat["Message"] == sb::base64_encode("hello"));
  CHECK(chat["Author"] == "Ann");
  CHECK(chat["Sent"] == "2024-03-05 06:07:08");
  CHECK(chat["Room"] == "lobby");
  CHECK(chat["WSID"] == "gw.1.aaaa");
  CHECK(chat["Id"].is_number_integer());
  auto first_id = chat["Id"].get<std::int64_t>();
  CHECK(first_id > 0);

  auto next = parse(f.send("gw.1.aaaa", chat_msg("again"))[0].data);
  CHECK(next["Id"].get<std::int64_t>() > first_id);
  CHECK(next["Sent"] == "2024-03-05 06:07:09");

  auto stored = f.store->recent_messages("lobby", 10);
  REQUIRE(stored.size() == 2);
  CHECK(stored[0].author == "Ann");
  CHECK(stored[0].id == first_id);
}

TEST_CASE("chat: non-ASCII text round trip") {
  Fixture f;
  f.join("gw.1.aaaa");
  const std::string text = "Grüße, 世界! 🙂 <img src=x onerror=alert(1)>";
  auto calls = f.send("gw.1.aaaa", chat_msg(text));
  REQUIRE(calls.size() == 1);
  auto chat = parse(calls[0].data);
  auto decoded = sb::base64_decode(chat["Message"].get<std::string>());
  REQUIRE(decoded);
  CHECK(*decoded == text);

  // And again from history for a newcomer.
  auto join = f.join("gw.1.bbbb");
  REQUIRE(join.size() == 4);
  CHECK(*sb::base64_decode(parse(join[2].data)["Message"].get<std::string>()) == text);
}

TEST_CASE("chat: history on join is the room's last 50, oldest first, before the userlist") {
  Fixture f;
  f.join("gw.1.aaaa", "room=busy");
  f.join("gw.1.cccc", "room=quiet");
  for (int i = 0; i < 60; ++i) f.send("gw.1.aaaa", chat_msg("m" + std::to_string(i)));
  f.send("gw.1.cccc", chat_msg("elsewhere"));

  auto calls = f.join("gw.1.bbbb", "room=busy");
  REQUIRE(calls.size() == 2 + 50 + 1);
  CHECK(parse(calls[0].data)["Type"] == "Status");
  CHECK(calls[1].kind == "subscribe");
  std::int64_t last_id = 0;
  for (int i = 0; i < 50; ++i) {
    const auto& call = calls[2 + i];
    CHECK(call.kind == "write");
    CHECK(call.targets == std::vector<Wsid>{"gw.1.bbbb"});  // history goes to the newcomer only
    auto chat = parse(call.data);
    CHECK(chat["Type"] == "Chat");
    CHECK(chat["Room"] == "busy");
    CHECK(*sb::base64_decode(chat["Message"].get<std::string>()) == "m" + std::to_string(10 + i));
    CHECK(chat["Id"].get<std::int64_t>() > last_id);
    last_id = chat["Id"].get<std::int64_t>();
  }
  CHECK(calls.back().kind == "publish");
  CHECK(parse(calls.back().data)["Type"] == "userlist");

  auto quiet = f.join("gw.1.dddd", "room=quiet");
  REQUIRE(quiet.size() == 4);
  CHECK(*sb::base64_decode(parse(quiet[2].data)["Message"].get<std::string>()) == "elsewhere");
}

TEST_CASE("chat: rooms are isolated") {
  Fixture f;
  f.join("gw.1.aaaa", "room=red");
  auto blue = f.join("gw.1.bbbb", "room=blue");
  CHECK(blue[1].topic == "chat:blue");
  CHECK(names(parse(blue.back().data)) == std::vector<std::string>{"guest-bbbb"});  // not red's members

  auto calls = f.send("gw.1.aaaa", chat_msg("to red"));
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].topic == "chat:red");
  calls = f.send("gw.1.bbbb", user_msg("Bea"));
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].topic == "chat:blue");
  CHECK(names(parse(calls[0].data)) == std::vector<std::string>{"Bea"});

  f.app->on_close(f.pool, "gw.1.bbbb", 1000, "");
  calls = f.take();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].topic == "chat:blue");
  CHECK(f.store->members("red").size() == 1);
}

TEST_CASE("chat: bad input gets an Error to the sender only, nothing published, socket kept") {
  Fixture f;
  f.join("gw.1.aaaa");
  std::string too_long(33, 'a');
  std::string not_utf8_text = sb::base64_encode("caf\xE9");  // Latin-1, as btoa would send it
  struct Case {
    std::string data;
    bool binary;
  };
  const std::vector<Case> cases = {
      {"not json", false},
      {"", false},
      {"{\"User\":", false},
      {"[1,2]", false},
      {"\"just a string\"", false},
      {"42", false},
      {"null", false},
      {"{}", false},
      {"{\"Other\":1}", false},
      {"{\"User\":42}", false},
      {"{\"User\":null}", false},
      {"{\"User\":\"\"}", false},
      {"{\"User\":\"   \"}", false},
      {user_msg(too_long), false},
      {"{\"User\":\"a\\u0007b\"}", false},
      {"{\"User\":\"a\\u0085b\"}", false},
      {"{\"Message\":7,\"Author\":\"x\"}", false},
      {"{\"Message\":[\"aGk=\"]}", false},
      {"{\"Message\":\"\"}", false},
      {"{\"Message\":\"not base64!\"}", false},
      {"{\"Message\":\"aGk\"}", false},  // unpadded
      {"{\"Message\":\"" + not_utf8_text + "\"}", false},
      {"{\"User\":\"x\",\"Message\":\"aGk=\"}", false},
      {user_msg("bin"), true},
      {chat_msg("bin"), true},
  };
  for (const auto& c : cases) {
    CAPTURE(c.data);
    CAPTURE(c.binary);
    auto calls = f.send("gw.1.aaaa", c.data, c.binary);
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].kind == "write");
    CHECK(calls[0].targets == std::vector<Wsid>{"gw.1.aaaa"});
    CHECK_FALSE(calls[0].binary);
    auto error = parse(calls[0].data);
    CHECK(error["Type"] == "Error");
    CHECK(error["Reason"].is_string());
    CHECK_FALSE(error["Reason"].get<std::string>().empty());
  }
  // Still a member with its default alias, and nothing stored.
  CHECK(f.store->member("gw.1.aaaa")->alias == "guest-aaaa");
  CHECK(f.store->recent_messages("default", 10).empty());
  // And the socket still works.
  auto calls = f.send("gw.1.aaaa", chat_msg("ok"));
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].kind == "publish");
}

TEST_CASE("chat: messages from a WSID that never joined get an Error") {
  Fixture f;
  for (const auto& data : {user_msg("Ghost"), chat_msg("boo")}) {
    auto calls = f.send("gw.1.ghost", data);
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].kind == "write");
    CHECK(calls[0].targets == std::vector<Wsid>{"gw.1.ghost"});
    CHECK(parse(calls[0].data)["Type"] == "Error");
  }
  f.app->on_close(f.pool, "gw.1.ghost", 1000, "");
  CHECK(f.take().empty());
}

TEST_CASE("chat: a socket handled by another worker sharing the store") {
  Fixture f;
  ChatApp other(*f.store, "worker-8", [&f] { return f.clock(); });
  f.join("gw.1.aaaa");
  // Another worker opened this one; this worker gets its message (takeover).
  REQUIRE(other.on_open(f.pool, request("gw.1.bbbb")).accept);
  other.on_batch_end(f.pool);
  auto calls = f.take();
  CHECK(parse(calls[0].data)["Worker"] == "worker-8");
  CHECK(names(parse(calls.back().data)) == std::vector<std::string>{"guest-aaaa", "guest-bbbb"});

  calls = f.send("gw.1.bbbb", chat_msg("via worker 7"));
  REQUIRE(calls.size() == 1);
  CHECK(parse(calls[0].data)["Author"] == "guest-bbbb");
}

TEST_CASE("chat: purge of a gateway's old epoch publishes fresh userlists") {
  Fixture f;
  f.join("gw.1.aaaa", "room=a");
  f.join("gw.2.bbbb", "room=a");
  f.join("gw.1.cccc", "room=b");
  f.app->purge_stale_epochs(f.pool, "gw", 2);
  auto calls = f.take();
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].topic == "chat:a");
  CHECK(names(parse(calls[0].data)) == std::vector<std::string>{"guest-bbbb"});
  CHECK(calls[1].topic == "chat:b");
  CHECK(names(parse(calls[1].data)).empty());
  f.app->purge_stale_epochs(f.pool, "gw", 2);
  CHECK(f.take().empty());
}

namespace {
// A store whose writes fail, as a locked or broken database would.
class FailingStore : public ChatStore {
 public:
  bool fail_join = false;
  std::vector<ChatMember> list;
  void add_member(const ChatMember& m) override {
    if (!fail_join) list.push_back(m);
  }
  std::optional<ChatMember> set_alias(const std::string&, const std::string&) override { return std::nullopt; }
  std::optional<ChatMember> remove_member(const std::string&) override { return std::nullopt; }
  std::optional<ChatMember> member(const std::string& wsid) override {
    for (const auto& m : list)
      if (m.wsid == wsid) return m;
    return std::nullopt;
  }
  std::vector<ChatMember> members(const std::string&) override { return list; }
  AppendResult append_message(ChatMessage&) override { return {}; }
  std::vector<ChatMessage> recent_messages(const std::string&, int) override { return {}; }
  std::vector<std::string> remove_stale_epochs(const std::string&, std::uint64_t) override { return {}; }
  std::vector<std::string> remove_gateway_members(const std::string&) override { return {}; }
};
}  // namespace

TEST_CASE("chat: store failures become an Error or a 1011 refusal") {
  FailingStore store;
  ChatApp app(store, "w");
  FakePool pool;
  REQUIRE(app.on_open(pool, request("gw.1.aaaa")).accept);
  app.on_batch_end(pool);
  pool.take();

  app.on_message(pool, "gw.1.aaaa", chat_msg("lost"), false);
  app.on_batch_end(pool);
  auto calls = pool.take();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].kind == "write");
  CHECK(parse(calls[0].data)["Type"] == "Error");

  store.fail_join = true;
  auto decision = app.on_open(pool, request("gw.1.bbbb"));
  CHECK_FALSE(decision.accept);
  CHECK(decision.code == 1011);
  app.on_batch_end(pool);
  for (const auto& call : pool.take()) CHECK(call.kind != "publish");
}

TEST_CASE("chat protocol: helpers") {
  using namespace sb::backend::chat;
  CHECK(default_alias("gw.1.abcdef") == "guest-cdef");
  CHECK(default_alias("ab") == "guest-ab");
  CHECK(format_sent(std::chrono::system_clock::time_point(std::chrono::seconds(0))) == "1970-01-01 00:00:00");
  CHECK(valid_utf8("Zoë 🙂"));
  CHECK_FALSE(valid_utf8("\xC0\xAF"));          // overlong '/'
  CHECK_FALSE(valid_utf8("\xED\xA0\x80"));      // surrogate
  CHECK_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(valid_utf8("\xE2\x82"));          // truncated
  CHECK(utf8_length("Zoë 🙂") == 5);
  CHECK(check_alias("\t Ann \n").alias == "Ann");
  CHECK(error_json("bad \xFF byte").find("Error") != std::string::npos);  // no throw on bad UTF-8
}

// ---------------------------------------------------------------- issue 3: failover

TEST_CASE("chat: a message processed twice (same seq) is stored once and re-published with the same key") {
  Fixture f;
  f.join("gw.1.aaaa");
  f.app->on_message(f.pool, "gw.1.aaaa", chat_msg("hello"), false, 5);
  auto first = f.take();
  REQUIRE(first.size() == 1);
  CHECK(first[0].kind == "publish");
  auto chat = parse(first[0].data);
  auto id = chat["Id"].get<std::int64_t>();
  CHECK(first[0].dedupe_key == "chat:default:" + std::to_string(id));
  CHECK(ChatApp::dedupe_key(f.store->recent_messages("default", 1).at(0)) == first[0].dedupe_key);

  // The worker died before the gateway got the ACK: another worker (same store) gets it again,
  // later (the clock moved on) and after an alias change.
  ChatApp other(*f.store, "worker-8", [&f] { return f.clock(); });
  f.send("gw.1.aaaa", user_msg("Ann"));
  other.on_message(f.pool, "gw.1.aaaa", chat_msg("hello"), false, 5);
  other.on_batch_end(f.pool);
  auto again = f.take();
  REQUIRE(again.size() == 1);
  CHECK(again[0].kind == "publish");
  CHECK(again[0].topic == "chat:default");
  CHECK(again[0].data == first[0].data);  // byte for byte: same id, author, time
  CHECK(again[0].dedupe_key == first[0].dedupe_key);
  CHECK(other.republished() == 1);
  CHECK(f.store->recent_messages("default", 10).size() == 1);

  // The next seq is a new message with a new key.
  f.app->on_message(f.pool, "gw.1.aaaa", chat_msg("next"), false, 6);
  auto next = f.take();
  REQUIRE(next.size() == 1);
  auto next_id = parse(next[0].data)["Id"].get<std::int64_t>();
  CHECK(next_id > id);
  CHECK(next[0].dedupe_key == "chat:default:" + std::to_string(next_id));
  CHECK(parse(next[0].data)["Author"] == "Ann");
  CHECK(f.store->recent_messages("default", 10).size() == 2);
}

TEST_CASE("chat: seq is per sender; without a seq nothing is deduplicated") {
  Fixture f;
  f.join("gw.1.aaaa");
  f.join("gw.1.bbbb");
  f.take();
  f.app->on_message(f.pool, "gw.1.aaaa", chat_msg("a1"), false, 1);
  f.app->on_message(f.pool, "gw.1.bbbb", chat_msg("b1"), false, 1);
  f.app->on_message(f.pool, "gw.1.aaaa", chat_msg("no seq"), false, 0);
  f.app->on_message(f.pool, "gw.1.aaaa", chat_msg("no seq"), false);
  auto calls = f.take();
  REQUIRE(calls.size() == 4);
  std::set<std::string> keys;
  for (const auto& c : calls) keys.insert(c.dedupe_key);
  CHECK(keys.size() == 4);  // every Chat has its own key
  CHECK(f.store->recent_messages("default", 10).size() == 4);
  CHECK(f.app->republished() == 0);
}

TEST_CASE("chat: alias changes and errors carry no dedupe key") {
  Fixture f;
  f.join("gw.1.aaaa");
  f.app->on_message(f.pool, "gw.1.aaaa", user_msg("Ann"), false, 1);
  f.app->on_message(f.pool, "gw.1.aaaa", "junk", false, 2);
  auto calls = f.take();
  REQUIRE(calls.size() == 2);
  for (const auto& c : calls) CHECK(c.dedupe_key.empty());
}

TEST_CASE("chat: resume of a socket whose join is stored does nothing") {
  Fixture f;
  f.join("gw.1.aaaa", "room=r");
  f.app->on_resume(f.pool, request("gw.1.aaaa", "room=r"), 3);
  f.app->on_resume(f.pool, request("gw.1.aaaa", "room=r"), 0);
  CHECK(f.take().empty());
}

TEST_CASE("chat: resume without a stored member repairs the join") {
  Fixture f;
  f.join("gw.1.aaaa", "room=r");
  f.send("gw.1.aaaa", chat_msg("history"));
  f.take();

  // acked_seq 0: the first worker may have died inside on_open: the whole join, Status first.
  auto calls = [&] {
    f.app->on_resume(f.pool, request("gw.1.bbbb", "room=r"), 0);
    return f.take();
  }();
  REQUIRE(calls.size() == 4);
  CHECK(parse(calls[0].data)["Type"] == "Status");
  CHECK(calls[1].kind == "subscribe");
  CHECK(parse(calls[2].data)["Type"] == "Chat");
  CHECK(names(parse(calls[3].data)) == std::vector<std::string>{"guest-aaaa", "guest-bbbb"});

  // acked_seq > 0: it was greeted long ago and lost its membership (e.g. purged): quietly back.
  f.store->remove_member("gw.1.aaaa");
  f.app->on_resume(f.pool, request("gw.1.aaaa", "room=r"), 7);
  calls = f.take();
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].kind == "subscribe");
  CHECK(calls[0].topic == "chat:r");
  CHECK(calls[1].kind == "publish");
  CHECK(names(parse(calls[1].data)) == std::vector<std::string>{"guest-bbbb", "guest-aaaa"});

  // A room it could never have joined: ended instead.
  f.app->on_resume(f.pool, request("gw.1.cccc", "room=" + std::string(65, 'r')), 0);
  calls = f.take();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].kind == "end");
  CHECK(calls[0].code == 1008);
}

TEST_CASE("chat: purge of a lost gateway removes all its members, any epoch, and publishes userlists") {
  Fixture f;
  const auto a_old = sb::make_wsid("gw", 1, 1), a_new = sb::make_wsid("gw", 2, 1);
  const auto other = sb::make_wsid("gw2", 1, 1);
  f.join(a_old, "room=a");
  f.join(other, "room=a");
  f.join(a_new, "room=b");
  f.take();
  f.app->purge_gateway(f.pool, "gw");
  auto calls = f.take();
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].topic == "chat:a");
  CHECK(names(parse(calls[0].data)) == std::vector<std::string>{chat::default_alias(other)});
  CHECK(calls[1].topic == "chat:b");
  CHECK(names(parse(calls[1].data)).empty());
  f.app->purge_gateway(f.pool, "gw");
  CHECK(f.take().empty());
}

TEST_CASE("chat: userlists carry the room's order key and a version that grows with each change") {
  Fixture f;
  f.join("gw.1.aaaa");
  auto second = f.join("gw.1.bbbb");
  auto joined = second.back();
  REQUIRE(joined.kind == "publish");
  CHECK(joined.order_key == "userlist:default");
  auto calls = f.send("gw.1.aaaa", user_msg("Ann"));
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].order_key == "userlist:default");
  CHECK(calls[0].order_version > joined.order_version);
}

TEST_CASE("chat: joins in one batch send one userlist per room, after the batch's greetings") {
  Fixture f;
  for (const char* wsid : {"gw.1.aaaa", "gw.1.bbbb", "gw.1.cccc"})
    REQUIRE(f.app->on_open(f.pool, request(wsid, "room=r")).accept);
  REQUIRE(f.app->on_open(f.pool, request("gw.1.dddd", "room=s")).accept);
  f.app->on_message(f.pool, "gw.1.aaaa", user_msg("Ann"), false, 1);
  auto calls = f.take();
  // Status + subscribe per socket, then one list per room, holding every change of the batch.
  REQUIRE(calls.size() == 4 * 2 + 2);
  for (int i = 0; i < 4; ++i) {
    CHECK(parse(calls[2 * i].data)["Type"] == "Status");
    CHECK(calls[2 * i + 1].kind == "subscribe");
  }
  CHECK(calls[8].kind == "publish");
  CHECK(calls[8].topic == "chat:r");
  CHECK(names(parse(calls[8].data)) == std::vector<std::string>{"Ann", "guest-bbbb", "guest-cccc"});
  CHECK(calls[9].topic == "chat:s");
  CHECK(names(parse(calls[9].data)) == std::vector<std::string>{"guest-dddd"});
  // Committed: a second connection to the store would see them (here: the same store, outside a batch).
  CHECK(f.store->members("r").size() == 3);
  CHECK(f.app->failed_batches() == 0);
  // A batch that changed no room publishes nothing.
  f.app->on_message(f.pool, "gw.1.aaaa", chat_msg("hello"), false, 2);
  calls = f.take();
  REQUIRE(calls.size() == 1);
  CHECK(parse(calls[0].data)["Type"] == "Chat");
}
