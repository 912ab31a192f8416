#include <doctest/doctest.h>

#include "backend/apps/broadcast.hpp"
#include "backend/apps/echo.hpp"
#include "common/close_codes.hpp"

using namespace sb::backend;

namespace {

// Records what an app asks of the pool.
class FakePool : public Pool {
 public:
  struct Written {
    std::vector<Wsid> targets;
    std::string data;
    bool binary;
  };
  struct Published {
    std::string topic;
    std::string data;
    bool binary;
    Wsid except;
  };
  std::vector<Written> writes;
  std::vector<Published> publishes;
  std::vector<std::pair<Wsid, std::string>> subscribes;
  std::vector<std::pair<Wsid, std::string>> unsubscribes;
  std::vector<std::pair<Wsid, std::uint16_t>> ends;

  void write(const Wsid& wsid, std::string_view data, bool binary, std::string_view) override {
    writes.push_back({{wsid}, std::string(data), binary});
  }
  void write(const std::vector<Wsid>& wsids, std::string_view data, bool binary, std::string_view) override {
    writes.push_back({wsids, std::string(data), binary});
  }
  void end(const Wsid& wsid, std::uint16_t code, std::string_view) override { ends.push_back({wsid, code}); }
  void subscribe(const Wsid& wsid, std::string_view topic) override { subscribes.push_back({wsid, std::string(topic)}); }
  void unsubscribe(const Wsid& wsid, std::string_view topic) override {
    unsubscribes.push_back({wsid, std::string(topic)});
  }
  void publish(std::string_view topic, std::string_view data, bool binary, const Wsid& except, std::string_view,
               std::string_view, std::uint64_t) override {
    publishes.push_back({std::string(topic), std::string(data), binary, except});
  }
  void query(const Wsid&, std::function<void(bool)> done) override { done(true); }
};

OpenRequest request(const Wsid& wsid, const std::string& query) {
  OpenRequest r;
  r.wsid = wsid;
  r.app = "broadcast";
  r.path = "/broadcast";
  r.query = query;
  return r;
}

}  // namespace

TEST_CASE("echo: each message goes back to its sender with the same binary flag") {
  EchoApp echo;
  FakePool pool;
  CHECK(echo.info().name == "echo");
  CHECK(echo.info().mode == sb::proto::AppMode::shared);
  CHECK(echo.on_open(pool, request("g.1.1", "")).accept);
  echo.on_message(pool, "g.1.1", "hello", false);
  const std::string bytes("\x00\x01\xfe\xff", 4);
  echo.on_message(pool, "g.1.2", bytes, true);
  echo.on_message(pool, "g.1.1", "", false);
  REQUIRE(pool.writes.size() == 3);
  CHECK(pool.writes[0].targets == std::vector<Wsid>{"g.1.1"});
  CHECK(pool.writes[0].data == "hello");
  CHECK_FALSE(pool.writes[0].binary);
  CHECK(pool.writes[1].targets == std::vector<Wsid>{"g.1.2"});
  CHECK(pool.writes[1].data == bytes);
  CHECK(pool.writes[1].binary);
  CHECK(pool.writes[2].data.empty());
  CHECK(pool.publishes.empty());
}

TEST_CASE("broadcast: joins the room's topic and publishes each message byte for byte") {
  BroadcastApp app;
  FakePool pool;
  CHECK(app.info().name == "broadcast");
  REQUIRE(app.on_open(pool, request("g.1.1", "room=blue")).accept);
  REQUIRE(app.on_open(pool, request("g.1.2", "")).accept);
  REQUIRE(app.on_open(pool, request("g.1.3", "x=1&room=a%20b")).accept);
  REQUIRE(pool.subscribes.size() == 3);
  CHECK(pool.subscribes[0] == std::pair<Wsid, std::string>{"g.1.1", "broadcast:blue"});
  CHECK(pool.subscribes[1] == std::pair<Wsid, std::string>{"g.1.2", "broadcast:default"});
  CHECK(pool.subscribes[2] == std::pair<Wsid, std::string>{"g.1.3", "broadcast:a b"});
  CHECK(app.sockets() == 3);

  const std::string bytes("\x00\xff{\"not\":\"json\"}", 16);
  app.on_message(pool, "g.1.1", bytes, true);
  app.on_message(pool, "g.1.2", "text", false);
  REQUIRE(pool.publishes.size() == 2);
  CHECK(pool.publishes[0].topic == "broadcast:blue");
  CHECK(pool.publishes[0].data == bytes);
  CHECK(pool.publishes[0].binary);
  CHECK(pool.publishes[0].except.empty());  // the sender gets its own message too
  CHECK(pool.publishes[1].topic == "broadcast:default");
  CHECK(pool.publishes[1].data == "text");
  CHECK_FALSE(pool.publishes[1].binary);
  CHECK(pool.writes.empty());
}

TEST_CASE("broadcast: forgets sockets on close and gone; unknown senders are dropped") {
  BroadcastApp app;
  FakePool pool;
  app.on_open(pool, request("g.1.1", "room=r"));
  app.on_open(pool, request("g.1.2", "room=r"));
  app.on_close(pool, "g.1.1", 1000, "");
  app.on_gone(pool, "g.1.2");
  CHECK(app.sockets() == 0);
  app.on_message(pool, "g.1.1", "after close", false);
  CHECK(pool.publishes.empty());
  CHECK(app.unknown_senders() == 1);
}

TEST_CASE("broadcast: an empty room means default, an over-long one is refused") {
  BroadcastApp app;
  FakePool pool;
  CHECK(app.on_open(pool, request("g.1.1", "room=")).accept);
  CHECK(pool.subscribes.back().second == "broadcast:default");
  auto decision = app.on_open(pool, request("g.1.2", "room=" + std::string(BroadcastApp::max_room_bytes + 1, 'x')));
  CHECK_FALSE(decision.accept);
  CHECK(decision.code == sb::close_code::policy_violation);
  CHECK(pool.subscribes.size() == 1);
}

TEST_CASE("broadcast: a socket taken over from another worker keeps publishing to its room") {
  BroadcastApp app;
  FakePool pool;
  app.on_resume(pool, request("g.1.7", "room=blue"), 3);
  CHECK(pool.subscribes.empty());  // the gateway kept the topic membership
  app.on_message(pool, "g.1.7", "hi", false);
  REQUIRE(pool.publishes.size() == 1);
  CHECK(pool.publishes[0].topic == "broadcast:blue");
  CHECK(app.unknown_senders() == 0);
  app.on_resume(pool, request("g.1.8", "room=" + std::string(BroadcastApp::max_room_bytes + 1, 'x')), 0);
  CHECK(app.sockets() == 1);  // could never have been accepted
}

TEST_CASE("echo: the seq-carrying on_message forwards to the plain one") {
  EchoApp echo;
  FakePool pool;
  App& app = echo;
  app.on_message(pool, "g.1.1", "x", false, 42);
  REQUIRE(pool.writes.size() == 1);
  CHECK(pool.writes[0].data == "x");
}
