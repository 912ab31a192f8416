// SqliteChatStore: membership, message log, stale-epoch purge, and two "workers" (two
// connections) sharing one file.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "backend/store/sqlite_chat_store.hpp"
#include "common/wsid.hpp"

using sb::backend::ChatMember;
using sb::backend::ChatMessage;
using sb::backend::SqliteChatStore;

namespace {

// A fresh database path in the temp dir, removed (with its WAL files) afterwards.
struct TempDb {
  std::filesystem::path path;
  TempDb() {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("sb-store-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()) + ".db");
  }
  ~TempDb() {
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"})
      std::filesystem::remove(path.string() + suffix, ec);
  }
};

std::unique_ptr<SqliteChatStore> open_store(const std::string& path) {
  std::string error;
  auto store = SqliteChatStore::open(path, error);
  REQUIRE_MESSAGE(store, error);
  CHECK(error.empty());
  return store;
}

ChatMessage make_message(const std::string& room, const std::string& text) {
  ChatMessage m;
  m.room = room;
  m.author = "alice";
  m.message = text;
  m.sent = "2024-01-02 03:04:05";
  m.wsid = "gw.1.1";
  return m;
}

std::vector<std::string> aliases(const std::vector<ChatMember>& members) {
  std::vector<std::string> out;
  for (const auto& m : members) out.push_back(m.alias);
  return out;
}

// Runs one SQL statement on a separate raw connection; returns the first column of the first row.
std::string raw_query(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  std::string result;
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_text(st, 0)) result = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  CHECK((rc == SQLITE_ROW || rc == SQLITE_DONE));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return result;
}

}  // namespace

TEST_CASE("sqlite store: members keep join order and aliases") {
  auto store = open_store(":memory:");
  store->add_member({"gw.1.a", "lobby", "guest-1.a"});
  store->add_member({"gw.1.b", "lobby", "guest-1.b"});
  store->add_member({"gw.1.c", "other", "guest-1.c"});
  store->add_member({"gw.1.d", "lobby", "guest-1.d"});

  CHECK(aliases(store->members("lobby")) == std::vector<std::string>{"guest-1.a", "guest-1.b", "guest-1.d"});
  CHECK(aliases(store->members("other")) == std::vector<std::string>{"guest-1.c"});
  CHECK(store->members("nobody").empty());

  auto changed = store->set_alias("gw.1.b", "Bob");
  REQUIRE(changed);
  CHECK(changed->wsid == "gw.1.b");
  CHECK(changed->room == "lobby");
  CHECK(changed->alias == "Bob");
  CHECK(aliases(store->members("lobby")) == std::vector<std::string>{"guest-1.a", "Bob", "guest-1.d"});
  CHECK_FALSE(store->set_alias("gw.1.zz", "x"));

  auto one = store->member("gw.1.c");
  REQUIRE(one);
  CHECK(one->room == "other");
  CHECK_FALSE(store->member("gw.1.zz"));

  // Removing returns the member once; a second remove finds nothing.
  auto removed = store->remove_member("gw.1.a");
  REQUIRE(removed);
  CHECK(removed->room == "lobby");
  CHECK(removed->alias == "guest-1.a");
  CHECK_FALSE(store->remove_member("gw.1.a"));
  CHECK(aliases(store->members("lobby")) == std::vector<std::string>{"Bob", "guest-1.d"});

  // A newcomer goes last even after the previous last one left.
  store->remove_member("gw.1.d");
  store->add_member({"gw.1.e", "lobby", "Eve"});
  CHECK(aliases(store->members("lobby")) == std::vector<std::string>{"Bob", "Eve"});

  // A re-delivered join of the same WSID keeps its place and takes the new values.
  store->add_member({"gw.1.b", "lobby", "guest-1.b"});
  CHECK(aliases(store->members("lobby")) == std::vector<std::string>{"guest-1.b", "Eve"});
  CHECK(store->error_count() == 0);
}

TEST_CASE("sqlite store: messages get increasing ids; history is the last N, oldest first") {
  auto store = open_store(":memory:");
  std::int64_t last = 0;
  for (int i = 0; i < 60; ++i) {
    auto m = make_message(i % 2 ? "odd" : "even", "m" + std::to_string(i));
    auto result = store->append_message(m);
    CHECK(result.ok);
    CHECK(result.inserted);
    CHECK(m.id > last);
    last = m.id;
  }
  auto even = store->recent_messages("even", 5);
  REQUIRE(even.size() == 5);
  CHECK(even.front().message == "m50");
  CHECK(even.back().message == "m58");
  for (std::size_t i = 1; i < even.size(); ++i) CHECK(even[i - 1].id < even[i].id);
  for (const auto& m : even) {
    CHECK(m.room == "even");
    CHECK(m.author == "alice");
    CHECK(m.sent == "2024-01-02 03:04:05");
    CHECK(m.wsid == "gw.1.1");
  }
  CHECK(store->recent_messages("odd", 100).size() == 30);
  CHECK(store->recent_messages("odd", 0).empty());
  CHECK(store->recent_messages("none", 10).empty());
}

TEST_CASE("sqlite store: non-ASCII text is stored byte for byte") {
  auto store = open_store(":memory:");
  std::string alias = "Zoë 日本 🙂";
  store->add_member({"gw.1.a", "salle à manger", alias});
  auto members = store->members("salle à manger");
  REQUIRE(members.size() == 1);
  CHECK(members[0].alias == alias);
  auto m = make_message("salle à manger", "w6npw6k=");
  m.author = alias;
  store->append_message(m);
  auto history = store->recent_messages("salle à manger", 1);
  REQUIRE(history.size() == 1);
  CHECK(history[0].author == alias);
}

TEST_CASE("sqlite store: remove_stale_epochs removes only older epochs of that gateway") {
  auto store = open_store(":memory:");
  const std::uint64_t old_epoch = 1000, live = 2000;
  store->add_member({sb::make_wsid("gw", old_epoch, 1), "a", "x1"});
  store->add_member({sb::make_wsid("gw", old_epoch, 2), "b", "x2"});
  store->add_member({sb::make_wsid("gw", old_epoch, 3), "a", "x3"});
  store->add_member({sb::make_wsid("gw", live, 1), "a", "live"});
  // Other gateways whose ids share a prefix, or contain LIKE wildcards, are untouched.
  store->add_member({sb::make_wsid("gw2", old_epoch, 1), "a", "other-gateway"});
  store->add_member({sb::make_wsid("g_", old_epoch, 1), "c", "wildcard-gateway"});
  store->add_member({sb::make_wsid("gwx", old_epoch, 1), "c", "gwx"});

  auto rooms = store->remove_stale_epochs("gw", live);
  CHECK(rooms == std::vector<std::string>{"a", "b"});
  CHECK(aliases(store->members("a")) == std::vector<std::string>{"live", "other-gateway"});
  CHECK(store->members("b").empty());
  CHECK(store->members("c").size() == 2);

  // Idempotent.
  CHECK(store->remove_stale_epochs("gw", live).empty());
  CHECK(store->remove_stale_epochs("nope", live).empty());
  // "g_" must not match "gw" as LIKE would.
  CHECK(store->remove_stale_epochs("g_", live) == std::vector<std::string>{"c"});
  CHECK(aliases(store->members("c")) == std::vector<std::string>{"gwx"});
}

TEST_CASE("sqlite store: two workers on one file share members and ids") {
  TempDb tmp;
  auto first = open_store(tmp.path.string());
  auto second = open_store(tmp.path.string());
  CHECK(raw_query(tmp.path.string(), "PRAGMA journal_mode") == "wal");

  first->add_member({"gw.1.a", "lobby", "Ann"});
  second->add_member({"gw.1.b", "lobby", "Ben"});
  CHECK(aliases(first->members("lobby")) == std::vector<std::string>{"Ann", "Ben"});
  CHECK(aliases(second->members("lobby")) == std::vector<std::string>{"Ann", "Ben"});

  // An alias set through one connection is seen by the other.
  second->set_alias("gw.1.a", "Anna");
  CHECK(first->member("gw.1.a")->alias == "Anna");

  std::int64_t last = 0;
  for (int i = 0; i < 20; ++i) {
    auto m = make_message("lobby", std::to_string(i));
    CHECK((i % 2 ? first : second)->append_message(m).ok);
    CHECK(m.id > last);
    last = m.id;
  }
  auto history = first->recent_messages("lobby", 50);
  REQUIRE(history.size() == 20);
  for (int i = 0; i < 20; ++i) CHECK(history[i].message == std::to_string(i));

  // Removal through one is final for both.
  CHECK(first->remove_member("gw.1.b"));
  CHECK_FALSE(second->remove_member("gw.1.b"));

  // Reopening the file (a worker restart) keeps everything.
  first.reset();
  auto again = open_store(tmp.path.string());
  CHECK(again->recent_messages("lobby", 50).size() == 20);
  CHECK(aliases(again->members("lobby")) == std::vector<std::string>{"Anna"});
  CHECK(again->error_count() == 0);
  CHECK(second->error_count() == 0);
}

TEST_CASE("sqlite store: concurrent first start on a fresh file") {
  TempDb tmp;
  constexpr int workers = 6, per_worker = 25;
  std::vector<std::vector<std::int64_t>> ids(workers);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      // Separate connections in separate threads, as separate processes would have.
      std::string error;
      auto store = SqliteChatStore::open(tmp.path.string(), error);
      if (!store) {
        ++failures;
        return;
      }
      store->add_member({"gw.1." + std::to_string(w), "lobby", "w" + std::to_string(w)});
      for (int i = 0; i < per_worker; ++i) {
        auto m = make_message("lobby", "x");
        store->append_message(m);
        ids[w].push_back(m.id);
      }
      if (store->error_count() != 0) ++failures;
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(failures == 0);

  std::set<std::int64_t> all;
  for (const auto& list : ids) {
    for (std::size_t i = 0; i < list.size(); ++i) {
      CHECK(list[i] > 0);
      if (i > 0) CHECK(list[i] > list[i - 1]);  // increasing per worker
      all.insert(list[i]);
    }
  }
  CHECK(all.size() == static_cast<std::size_t>(workers * per_worker));  // unique across workers
  auto store = open_store(tmp.path.string());
  CHECK(store->members("lobby").size() == workers);
  CHECK(store->recent_messages("lobby", 1000).size() == static_cast<std::size_t>(workers * per_worker));
}

TEST_CASE("sqlite store: errors are returned and counted, never thrown") {
  std::string error;
  auto bad = SqliteChatStore::open("/nonexistent-dir-for-sb-test/x.db", error);
  CHECK_FALSE(bad);
  CHECK(error.find("nonexistent-dir-for-sb-test") != std::string::npos);

  TempDb tmp;
  auto store = open_store(tmp.path.string());
  store->add_member({"gw.1.a", "lobby", "Ann"});
  // Another process wrecks the schema under us: every call fails softly.
  raw_query(tmp.path.string(), "DROP TABLE messages");
  raw_query(tmp.path.string(), "DROP TABLE members");
  auto m = make_message("lobby", "x");
  CHECK_FALSE(store->append_message(m).ok);
  CHECK(m.id == 0);
  CHECK(store->recent_messages("lobby", 10).empty());
  CHECK(store->members("lobby").empty());
  CHECK_FALSE(store->member("gw.1.a"));
  CHECK_FALSE(store->set_alias("gw.1.a", "x"));
  CHECK_FALSE(store->remove_member("gw.1.a"));
  store->add_member({"gw.1.b", "lobby", "Ben"});
  CHECK(store->remove_stale_epochs("gw", 5).empty());
  CHECK(store->remove_gateway_members("gw").empty());
  CHECK(store->error_count() >= 9);
}

// ---------------------------------------------------------------- issue 3

TEST_CASE("sqlite store: (wsid, seq) is stored once; a repeat hands back the stored row") {
  auto store = open_store(":memory:");
  auto m = make_message("lobby", "first");
  m.seq = 3;
  auto result = store->append_message(m);
  CHECK(result.ok);
  CHECK(result.inserted);
  const auto id = m.id;

  auto again = make_message("other-room", "second try");
  again.author = "someone else";
  again.sent = "2030-01-01 00:00:00";
  again.seq = 3;
  result = store->append_message(again);
  CHECK(result.ok);
  CHECK_FALSE(result.inserted);
  CHECK(again.id == id);
  CHECK(again.room == "lobby");
  CHECK(again.message == "first");
  CHECK(again.author == "alice");
  CHECK(again.sent == "2024-01-02 03:04:05");
  CHECK(again.wsid == "gw.1.1");
  CHECK(store->recent_messages("lobby", 10).size() == 1);
  CHECK(store->recent_messages("other-room", 10).empty());

  // Another sender, another seq, or no seq at all: new rows.
  auto other_sender = make_message("lobby", "x");
  other_sender.wsid = "gw.1.2";
  other_sender.seq = 3;
  CHECK(store->append_message(other_sender).inserted);
  auto next = make_message("lobby", "x");
  next.seq = 4;
  CHECK(store->append_message(next).inserted);
  for (int i = 0; i < 2; ++i) {
    auto plain = make_message("lobby", "x");
    CHECK(store->append_message(plain).inserted);
  }
  CHECK(store->recent_messages("lobby", 10).size() == 5);
  CHECK(store->error_count() == 0);
}

TEST_CASE("sqlite store: two workers storing the same (wsid, seq) keep one row") {
  TempDb tmp;
  auto first = open_store(tmp.path.string());
  auto second = open_store(tmp.path.string());
  auto m = make_message("lobby", "once");
  m.seq = 9;
  auto m2 = m;
  CHECK(first->append_message(m).inserted);
  auto result = second->append_message(m2);
  CHECK(result.ok);
  CHECK_FALSE(result.inserted);
  CHECK(m2.id == m.id);
  CHECK(first->recent_messages("lobby", 10).size() == 1);
}

TEST_CASE("sqlite store: remove_gateway_members removes every epoch of that gateway only") {
  auto store = open_store(":memory:");
  store->add_member({sb::make_wsid("gw", 1000, 1), "a", "old"});
  store->add_member({sb::make_wsid("gw", 2000, 1), "b", "new"});
  store->add_member({sb::make_wsid("gw2", 1000, 1), "a", "other-gateway"});
  store->add_member({sb::make_wsid("g_", 1000, 1), "c", "wildcard-gateway"});
  store->add_member({"gw.not-a-wsid", "c", "junk-under-prefix"});
  CHECK(store->remove_gateway_members("gw") == std::vector<std::string>{"a", "b", "c"});
  CHECK(aliases(store->members("a")) == std::vector<std::string>{"other-gateway"});
  CHECK(store->members("b").empty());
  CHECK(aliases(store->members("c")) == std::vector<std::string>{"wildcard-gateway"});
  CHECK(store->remove_gateway_members("gw").empty());
  CHECK(store->error_count() == 0);
}

namespace {

// The schema exactly as issue 2 wrote it.
constexpr const char* issue2_schema = R"sql(
CREATE TABLE members (wsid TEXT PRIMARY KEY NOT NULL, room TEXT NOT NULL, alias TEXT NOT NULL, joined INTEGER NOT NULL);
CREATE INDEX members_room_joined ON members (room, joined);
CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, room TEXT NOT NULL, author TEXT NOT NULL,
  message TEXT NOT NULL, sent TEXT NOT NULL, wsid TEXT NOT NULL);
CREATE INDEX messages_room_id ON messages (room, id);
INSERT INTO members VALUES ('gw.1.a', 'lobby', 'Ann', 1);
INSERT INTO messages (room, author, message, sent, wsid) VALUES ('lobby', 'Ann', 'b2xk', '2024-01-01 00:00:00', 'gw.1.a');
INSERT INTO messages (room, author, message, sent, wsid) VALUES ('lobby', 'Ann', 'b2xk', '2024-01-01 00:00:01', 'gw.1.a');
)sql";

void write_issue2_file(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* error = nullptr;
  int rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, &error);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, issue2_schema, nullptr, nullptr, &error);
  INFO((error ? error : ""));
  CHECK(rc == SQLITE_OK);
  sqlite3_free(error);
  sqlite3_close(db);
}

}  // namespace

TEST_CASE("sqlite store: a file written by issue 2 is upgraded in place") {
  TempDb tmp;
  write_issue2_file(tmp.path.string());
  CHECK(raw_query(tmp.path.string(), "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'seq'") ==
        "0");
  {
    auto store = open_store(tmp.path.string());
    auto old = store->recent_messages("lobby", 10);
    REQUIRE(old.size() == 2);  // old rows (NULL seq) are kept and do not collide
    CHECK(old[0].author == "Ann");
    CHECK(store->member("gw.1.a"));
    auto m = make_message("lobby", "new");
    m.seq = 1;
    CHECK(store->append_message(m).inserted);
    CHECK(m.id > old[1].id);
    auto m2 = make_message("lobby", "new again");
    m2.seq = 1;
    CHECK_FALSE(store->append_message(m2).inserted);
    CHECK(store->error_count() == 0);
  }
  CHECK(raw_query(tmp.path.string(), "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'seq'") ==
        "1");
  CHECK(raw_query(tmp.path.string(), "SELECT COUNT(*) FROM pragma_index_list('messages') WHERE name = "
                                     "'messages_wsid_seq' AND \"unique\" = 1") == "1");
  // Opening again (every worker start) changes nothing.
  auto again = open_store(tmp.path.string());
  CHECK(again->recent_messages("lobby", 10).size() == 3);
}

TEST_CASE("sqlite store: workers starting together on an issue-2 file upgrade it once") {
  TempDb tmp;
  write_issue2_file(tmp.path.string());
  constexpr int workers = 6;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&, w] {
      std::string error;
      auto store = SqliteChatStore::open(tmp.path.string(), error);
      if (!store) {
        ++failures;
        return;
      }
      auto m = make_message("lobby", "x");
      m.wsid = "gw.1." + std::to_string(w);
      m.seq = 1;
      if (!store->append_message(m).inserted) ++failures;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  CHECK(open_store(tmp.path.string())->recent_messages("lobby", 100).size() == 2 + workers);
}

TEST_CASE("sqlite store: a room's version grows with every membership or alias change") {
  TempDb tmp;
  auto first = open_store(tmp.path.string());
  auto second = open_store(tmp.path.string());  // another worker on the same file
  CHECK(first->room_snapshot("lobby").version == 0);
  first->add_member({"gw.1.a", "lobby", "Ann"});
  auto v1 = second->room_snapshot("lobby");
  CHECK(v1.version >= 1);
  CHECK(aliases(v1.members) == std::vector<std::string>{"Ann"});
  second->add_member({"gw.1.b", "lobby", "Ben"});
  auto v2 = first->room_snapshot("lobby");
  CHECK(v2.version > v1.version);
  CHECK(aliases(v2.members) == std::vector<std::string>{"Ann", "Ben"});
  first->set_alias("gw.1.b", "Benny");
  auto v3 = second->room_snapshot("lobby");
  CHECK(v3.version > v2.version);
  CHECK(aliases(v3.members) == std::vector<std::string>{"Ann", "Benny"});
  second->remove_member("gw.1.a");
  auto v4 = first->room_snapshot("lobby");
  CHECK(v4.version > v3.version);
  CHECK(aliases(v4.members) == std::vector<std::string>{"Benny"});
  first->add_member({"gw.1.c", "other", "Cy"});
  CHECK(first->room_snapshot("lobby").version == v4.version);  // other rooms do not count
}

TEST_CASE("sqlite store: a batch is one transaction; a failed call inside it undoes only itself") {
  TempDb tmp;
  const auto path = tmp.path.string();
  auto store = open_store(path);
  // A trigger makes one particular write fail, as a constraint or I/O error would.
  raw_query(path,
            "CREATE TRIGGER refuse_boom BEFORE UPDATE ON members WHEN NEW.alias = 'boom'"
            " BEGIN SELECT RAISE(ABORT, 'boom refused'); END");

  store->begin_batch();
  store->add_member({"gw.1.a", "lobby", "Ann"});
  store->add_member({"gw.1.b", "lobby", "Ben"});
  auto m = make_message("lobby", "hi");
  CHECK(store->append_message(m).ok);
  CHECK_FALSE(store->set_alias("gw.1.a", "boom"));  // fails: only this call is undone
  CHECK(store->error_count() == 1);
  // Inside the batch the store reads its own writes; other connections see nothing yet.
  CHECK(aliases(store->members("lobby")) == std::vector<std::string>{"Ann", "Ben"});
  CHECK(raw_query(path, "SELECT COUNT(*) FROM members") == "0");
  CHECK(raw_query(path, "SELECT COUNT(*) FROM messages") == "0");

  CHECK(store->end_batch());
  CHECK(raw_query(path, "SELECT COUNT(*) FROM members") == "2");
  CHECK(raw_query(path, "SELECT group_concat(alias) FROM members") == "Ann,Ben");
  CHECK(raw_query(path, "SELECT COUNT(*) FROM messages") == "1");

  // After the batch every call commits on its own again.
  store->add_member({"gw.1.c", "lobby", "Cy"});
  CHECK(raw_query(path, "SELECT COUNT(*) FROM members") == "3");
  // An empty batch commits nothing and succeeds.
  store->begin_batch();
  CHECK(store->end_batch());
  CHECK(store->error_count() == 1);
}
