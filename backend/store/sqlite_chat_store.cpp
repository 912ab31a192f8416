#include "backend/store/sqlite_chat_store.hpp"

#include <sqlite3.h>

#include <algorithm>

#include "common/log.hpp"
#include "common/wsid.hpp"

namespace sb::backend {
namespace {

constexpr int busy_timeout_ms = 5000;  // workers queue this long for the write lock

// Idempotent: every worker runs it at start, possibly at the same moment; each step runs in
// one BEGIN IMMEDIATE transaction, so they take turns (see open()).
constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS members (
  wsid   TEXT PRIMARY KEY NOT NULL,
  room   TEXT NOT NULL,
  alias  TEXT NOT NULL,
  joined INTEGER NOT NULL  -- join order within the room
);
CREATE INDEX IF NOT EXISTS members_room_joined ON members (room, joined);
CREATE TABLE IF NOT EXISTS messages (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, increasing across workers
  room    TEXT NOT NULL,
  author  TEXT NOT NULL,
  message TEXT NOT NULL,  -- base64 as the client sent it
  sent    TEXT NOT NULL,  -- 'YYYY-MM-DD HH:MM:SS' UTC
  wsid    TEXT NOT NULL,
  seq     INTEGER         -- the sender's MESSAGE seq; NULL = none (UNIQUE ignores NULLs)
);
CREATE INDEX IF NOT EXISTS messages_room_id ON messages (room, id);
-- A room's version grows with every change to its members, inside the changing transaction,
-- so workers can order their userlist snapshots (the gateway drops older ones).
CREATE TABLE IF NOT EXISTS room_versions (
  room    TEXT PRIMARY KEY NOT NULL,
  version INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS members_versions_insert AFTER INSERT ON members BEGIN
  INSERT INTO room_versions (room, version) VALUES (NEW.room, 1)
    ON CONFLICT (room) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER IF NOT EXISTS members_versions_update AFTER UPDATE ON members BEGIN
  INSERT INTO room_versions (room, version) VALUES (NEW.room, 1)
    ON CONFLICT (room) DO UPDATE SET version = version + 1;
  INSERT INTO room_versions (room, version) SELECT OLD.room, 1 WHERE OLD.room <> NEW.room
    ON CONFLICT (room) DO UPDATE SET version = version + 1;
END;
CREATE TRIGGER IF NOT EXISTS members_versions_delete AFTER DELETE ON members BEGIN
  INSERT INTO room_versions (room, version) VALUES (OLD.room, 1)
    ON CONFLICT (room) DO UPDATE SET version = version + 1;
END;
)sql";

// Issue-2 files have no messages.seq: added in place (old rows keep NULL).
constexpr const char* has_seq_sql = "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'seq'";
constexpr const char* add_seq_sql = "ALTER TABLE messages ADD COLUMN seq INTEGER";
// A message processed twice (worker failover) is stored once.
constexpr const char* seq_index_sql = "CREATE UNIQUE INDEX IF NOT EXISTS messages_wsid_seq ON messages (wsid, seq)";

// Indexed by SqliteChatStore::Stmt.
constexpr const char* statement_sql[] = {
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT op",
    "RELEASE op",
    "ROLLBACK TO op",
    // A re-delivered OPEN (worker takeover) keeps the member's place in the list.
    "INSERT INTO members (wsid, room, alias, joined) VALUES (?1, ?2, ?3,"
    " (SELECT COALESCE(MAX(joined), 0) + 1 FROM members WHERE room = ?2))"
    " ON CONFLICT (wsid) DO UPDATE SET room = excluded.room, alias = excluded.alias",
    "UPDATE members SET alias = ?2 WHERE wsid = ?1 RETURNING wsid, room, alias",
    "DELETE FROM members WHERE wsid = ?1 RETURNING wsid, room, alias",
    "SELECT wsid, room, alias FROM members WHERE wsid = ?1",
    "SELECT wsid, room, alias FROM members WHERE room = ?1 ORDER BY joined",
    // No row back: (wsid, seq) was stored before.
    "INSERT INTO messages (room, author, message, sent, wsid, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    " ON CONFLICT (wsid, seq) DO NOTHING RETURNING id",
    "SELECT id, room, author, message, sent, wsid FROM messages WHERE wsid = ?1 AND seq = ?2",
    "SELECT id, room, author, message, sent, wsid FROM"
    " (SELECT * FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id",
    // A key range instead of LIKE: gateway ids may contain '_', a LIKE wildcard.
    "SELECT wsid, room FROM members WHERE wsid >= ?1 AND wsid < ?2",
    // One statement, so one consistent snapshot: the version row, then the members in order.
    "SELECT 0, NULL, NULL, NULL, version FROM room_versions WHERE room = ?1"
    " UNION ALL SELECT 1, wsid, room, alias, joined FROM members WHERE room = ?1 ORDER BY 1, 5",
};

void bind(sqlite3_stmt* st, int index, const std::string& text) {
  // STATIC is safe: Use clears the bindings before the string can go away.
  sqlite3_bind_text(st, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

std::string column(sqlite3_stmt* st, int index) {
  auto* text = reinterpret_cast<const char*>(sqlite3_column_text(st, index));
  return text ? std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(st, index))) : std::string();
}

ChatMember member_row(sqlite3_stmt* st) { return {column(st, 0), column(st, 1), column(st, 2)}; }

// Columns id, room, author, message, sent, wsid.
ChatMessage message_row(sqlite3_stmt* st) {
  ChatMessage m;
  m.id = sqlite3_column_int64(st, 0);
  m.room = column(st, 1);
  m.author = column(st, 2);
  m.message = column(st, 3);
  m.sent = column(st, 4);
  m.wsid = column(st, 5);
  return m;
}

}  // namespace

// Borrows a cached statement; resets it and clears its bindings when done, so no read
// snapshot stays open and no bound pointer outlives its string.
class SqliteChatStore::Use {
 public:
  Use(SqliteChatStore& store, Stmt which) : st_(store.stmts_[which]) {}
  ~Use() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  sqlite3_stmt* get() const { return st_; }

 private:
  sqlite3_stmt* st_;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back on any early return. In a batch: a savepoint in
// the batch's transaction (begun here by the first write), released or rolled back alone.
class SqliteChatStore::Tx {
 public:
  explicit Tx(SqliteChatStore& store) : store_(store) {}
  ~Tx() {
    // A failed statement may already have ended the transaction (autocommit is back on).
    if (!active_ || sqlite3_get_autocommit(store_.db_)) return;
    if (!nested_) {
      Use use(store_, rollback);
      sqlite3_step(use.get());
      return;
    }
    // Undo this call only; the batch's earlier changes stay.
    store_.exec(rollback_to, "rollback to savepoint");
    store_.exec(release, "release savepoint");
  }
  Tx(const Tx&) = delete;
  Tx& operator=(const Tx&) = delete;
  bool begin(const char* op) {
    nested_ = store_.batching_;
    if (!nested_) return active_ = store_.exec(begin_immediate, op);
    if (sqlite3_get_autocommit(store_.db_) && !store_.exec(begin_immediate, op)) return false;
    return active_ = store_.exec(savepoint, op);
  }
  bool commit(const char* op) {
    if (!store_.exec(nested_ ? release : SqliteChatStore::commit, op)) return false;
    active_ = false;
    return true;
  }

 private:
  SqliteChatStore& store_;
  bool active_ = false;
  bool nested_ = false;
};

std::unique_ptr<SqliteChatStore> SqliteChatStore::open(const std::string& path, std::string& error) {
  sqlite3* db = nullptr;
  // NOMUTEX: the connection belongs to one loop thread.
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    error = "sqlite: cannot open " + path + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    return nullptr;
  }
  std::unique_ptr<SqliteChatStore> store(new SqliteChatStore(db));
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, busy_timeout_ms);

  auto run = [&](const char* sql, const char* what) {
    char* message = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &message) == SQLITE_OK) return true;
    error = std::string("sqlite: ") + what + " on " + path + ": " + (message ? message : sqlite3_errmsg(db));
    sqlite3_free(message);
    return false;
  };

  // journal_mode answers with the mode in effect: "wal" on a file, "memory" for :memory:.
  std::string mode;
  auto on_row = [](void* out, int n, char** values, char**) {
    if (n > 0 && values[0]) *static_cast<std::string*>(out) = values[0];
    return 0;
  };
  char* message = nullptr;
  // Switching a new file to WAL needs an exclusive lock that busy_timeout does not wait for:
  // workers opening a fresh store together retry for as long as the busy timeout would.
  rc = SQLITE_BUSY;
  for (int attempt = 0; attempt < 500; ++attempt) {
    sqlite3_free(message);
    message = nullptr;
    rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", on_row, &mode, &message);
    if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) break;
    sqlite3_sleep(10);
  }
  if (rc != SQLITE_OK) {
    error = "sqlite: cannot enable WAL on " + path + ": " + (message ? message : sqlite3_errmsg(db));
    sqlite3_free(message);
    return nullptr;
  }
  if (mode != "wal" && mode != "memory") {
    error = "sqlite: " + path + " stays in journal mode '" + mode + "', WAL is required for shared use";
    return nullptr;
  }
  if (!run("PRAGMA synchronous=NORMAL", "cannot set synchronous")) return nullptr;
  // Schema and migration in one write transaction: workers starting together on an old file
  // must not both add the column.
  std::string has_seq;
  bool schema_ok = run("BEGIN IMMEDIATE", "cannot lock the schema") && run(schema_sql, "cannot create schema") &&
                   [&] {
                     char* why = nullptr;
                     if (sqlite3_exec(db, has_seq_sql, on_row, &has_seq, &why) == SQLITE_OK) return true;
                     error = "sqlite: cannot inspect the schema of " + path + ": " + (why ? why : sqlite3_errmsg(db));
                     sqlite3_free(why);
                     return false;
                   }() &&
                   (has_seq != "0" || run(add_seq_sql, "cannot add messages.seq")) &&
                   run(seq_index_sql, "cannot create the (wsid, seq) index") && run("COMMIT", "cannot commit the schema");
  if (!schema_ok) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return nullptr;
  }
  if (has_seq == "0") log::info("chat store: ", path, " upgraded (messages.seq added)");
  if (!store->prepare_all(error)) return nullptr;
  return store;
}

SqliteChatStore::~SqliteChatStore() {
  for (auto* st : stmts_) sqlite3_finalize(st);
  sqlite3_close_v2(db_);
}

bool SqliteChatStore::prepare_all(std::string& error) {
  static_assert(std::size(statement_sql) == stmt_count);
  for (int i = 0; i < stmt_count; ++i) {
    if (sqlite3_prepare_v3(db_, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &stmts_[i], nullptr) != SQLITE_OK) {
      error = std::string("sqlite: cannot prepare \"") + statement_sql[i] + "\": " + sqlite3_errmsg(db_);
      return false;
    }
  }
  return true;
}

void SqliteChatStore::fail(const char* op) {
  ++error_count_;
  log::error("sqlite ", op, ": ", sqlite3_errmsg(db_), " (code ", sqlite3_extended_errcode(db_), ")");
}

bool SqliteChatStore::exec(Stmt which, const char* op) {
  Use use(*this, which);
  int rc;
  while ((rc = sqlite3_step(use.get())) == SQLITE_ROW) {
  }
  if (rc == SQLITE_DONE) return true;
  fail(op);
  return false;
}

bool SqliteChatStore::end_batch() {
  batching_ = false;
  if (sqlite3_get_autocommit(db_)) return true;  // nothing written, or already rolled back
  if (exec(commit, "commit batch")) return true;
  if (!sqlite3_get_autocommit(db_)) exec(rollback, "roll back batch");
  return false;
}

void SqliteChatStore::add_member(const ChatMember& member) {
  Tx tx(*this);
  if (!tx.begin("add_member")) return;
  {
    Use use(*this, insert_member);
    bind(use.get(), 1, member.wsid);
    bind(use.get(), 2, member.room);
    bind(use.get(), 3, member.alias);
    if (sqlite3_step(use.get()) != SQLITE_DONE) return fail("add_member");
  }
  tx.commit("add_member");
}

std::optional<ChatMember> SqliteChatStore::set_alias(const std::string& wsid, const std::string& alias) {
  Tx tx(*this);
  if (!tx.begin("set_alias")) return std::nullopt;
  std::optional<ChatMember> changed;
  {
    Use use(*this, update_alias);
    bind(use.get(), 1, wsid);
    bind(use.get(), 2, alias);
    int rc = sqlite3_step(use.get());
    if (rc == SQLITE_ROW) {
      changed = member_row(use.get());
      rc = sqlite3_step(use.get());  // RETURNING: the statement finishes on the next step
    }
    if (rc != SQLITE_DONE) {
      fail("set_alias");
      return std::nullopt;
    }
  }
  if (!tx.commit("set_alias")) return std::nullopt;
  return changed;
}

std::optional<ChatMember> SqliteChatStore::remove_member(const std::string& wsid) {
  Tx tx(*this);
  if (!tx.begin("remove_member")) return std::nullopt;
  std::optional<ChatMember> removed;
  {
    Use use(*this, delete_member);
    bind(use.get(), 1, wsid);
    int rc = sqlite3_step(use.get());
    if (rc == SQLITE_ROW) {
      removed = member_row(use.get());
      rc = sqlite3_step(use.get());
    }
    if (rc != SQLITE_DONE) {
      fail("remove_member");
      return std::nullopt;
    }
  }
  if (!tx.commit("remove_member")) return std::nullopt;
  return removed;
}

std::optional<ChatMember> SqliteChatStore::member(const std::string& wsid) {
  Use use(*this, select_member);
  bind(use.get(), 1, wsid);
  int rc = sqlite3_step(use.get());
  if (rc == SQLITE_ROW) return member_row(use.get());
  if (rc != SQLITE_DONE) fail("member");
  return std::nullopt;
}

std::vector<ChatMember> SqliteChatStore::members(const std::string& room) {
  std::vector<ChatMember> out;
  Use use(*this, select_members);
  bind(use.get(), 1, room);
  int rc;
  while ((rc = sqlite3_step(use.get())) == SQLITE_ROW) out.push_back(member_row(use.get()));
  if (rc != SQLITE_DONE) {
    fail("members");
    out.clear();
  }
  return out;
}

ChatStore::RoomSnapshot SqliteChatStore::room_snapshot(const std::string& room) {
  RoomSnapshot out;
  Use use(*this, select_room_snapshot);
  bind(use.get(), 1, room);
  int rc;
  while ((rc = sqlite3_step(use.get())) == SQLITE_ROW) {
    if (sqlite3_column_int(use.get(), 0) == 0) {
      out.version = static_cast<std::uint64_t>(sqlite3_column_int64(use.get(), 4));
      continue;
    }
    ChatMember member;
    member.wsid = reinterpret_cast<const char*>(sqlite3_column_text(use.get(), 1));
    member.room = reinterpret_cast<const char*>(sqlite3_column_text(use.get(), 2));
    member.alias = reinterpret_cast<const char*>(sqlite3_column_text(use.get(), 3));
    out.members.push_back(std::move(member));
  }
  if (rc != SQLITE_DONE) {
    fail("room_snapshot");
    return {};
  }
  return out;
}

AppendResult SqliteChatStore::append_message(ChatMessage& message) {
  Tx tx(*this);
  if (!tx.begin("append_message")) return {};
  auto bind_seq = [&](sqlite3_stmt* st, int index) {
    if (message.seq == 0) sqlite3_bind_null(st, index);
    else sqlite3_bind_int64(st, index, static_cast<sqlite3_int64>(message.seq));
  };
  std::int64_t id = 0;
  {
    Use use(*this, insert_message);
    bind(use.get(), 1, message.room);
    bind(use.get(), 2, message.author);
    bind(use.get(), 3, message.message);
    bind(use.get(), 4, message.sent);
    bind(use.get(), 5, message.wsid);
    bind_seq(use.get(), 6);
    int rc = sqlite3_step(use.get());
    if (rc == SQLITE_ROW) {
      id = sqlite3_column_int64(use.get(), 0);
      rc = sqlite3_step(use.get());  // RETURNING: the statement finishes on the next step
    }
    if (rc != SQLITE_DONE) {
      fail("append_message");
      return {};
    }
  }
  ChatMessage stored;
  if (id == 0) {
    // A repeat: hand back the row as first stored.
    Use use(*this, select_message_by_key);
    bind(use.get(), 1, message.wsid);
    bind_seq(use.get(), 2);
    int rc = sqlite3_step(use.get());
    if (rc != SQLITE_ROW) {
      if (rc == SQLITE_DONE) {
        ++error_count_;
        log::error("sqlite append_message: (", message.wsid, ", ", message.seq, ") conflicts but cannot be read");
      } else {
        fail("append_message");
      }
      return {};
    }
    stored = message_row(use.get());
    stored.seq = message.seq;
  }
  if (!tx.commit("append_message")) return {};
  if (id != 0) {
    message.id = id;
    return {true, true};
  }
  message = std::move(stored);
  return {true, false};
}

std::vector<ChatMessage> SqliteChatStore::recent_messages(const std::string& room, int limit) {
  std::vector<ChatMessage> out;
  if (limit <= 0) return out;
  Use use(*this, select_recent);
  bind(use.get(), 1, room);
  sqlite3_bind_int(use.get(), 2, limit);
  int rc;
  while ((rc = sqlite3_step(use.get())) == SQLITE_ROW) out.push_back(message_row(use.get()));
  if (rc != SQLITE_DONE) {
    fail("recent_messages");
    out.clear();
  }
  return out;
}

std::vector<std::string> SqliteChatStore::remove_stale_epochs(const std::string& gateway_id, std::uint64_t live_epoch) {
  return remove_gateway(gateway_id, live_epoch, "remove_stale_epochs");
}

std::vector<std::string> SqliteChatStore::remove_gateway_members(const std::string& gateway_id) {
  return remove_gateway(gateway_id, std::nullopt, "remove_gateway_members");
}

std::vector<std::string> SqliteChatStore::remove_gateway(const std::string& gateway_id,
                                                         std::optional<std::uint64_t> keep_epoch, const char* op) {
  std::vector<std::string> rooms;
  Tx tx(*this);
  if (!tx.begin(op)) return rooms;

  // Every WSID "<gateway_id>.<...>" sorts in ["<gateway_id>.", "<gateway_id>/") ('/' follows '.').
  std::vector<std::pair<std::string, std::string>> doomed;  // wsid, room
  {
    std::string low = gateway_id + ".";
    std::string high = gateway_id + "/";
    Use use(*this, select_gateway_members);
    bind(use.get(), 1, low);
    bind(use.get(), 2, high);
    int rc;
    while ((rc = sqlite3_step(use.get())) == SQLITE_ROW) {
      std::string wsid = column(use.get(), 0);
      auto parts = parse_wsid(wsid);
      // Unparseable ids under this prefix cannot belong to a live socket either.
      if (keep_epoch && parts && parts->gateway_id == gateway_id && parts->epoch == *keep_epoch) continue;
      doomed.emplace_back(std::move(wsid), column(use.get(), 1));
    }
    if (rc != SQLITE_DONE) {
      fail(op);
      return {};
    }
  }
  for (const auto& [wsid, room] : doomed) {
    Use use(*this, delete_member);
    bind(use.get(), 1, wsid);
    int rc;
    while ((rc = sqlite3_step(use.get())) == SQLITE_ROW) {
    }
    if (rc != SQLITE_DONE) {
      fail(op);
      return {};
    }
    rooms.push_back(room);
  }
  if (!tx.commit(op)) return {};
  std::sort(rooms.begin(), rooms.end());
  rooms.erase(std::unique(rooms.begin(), rooms.end()), rooms.end());
  if (!doomed.empty())
    log::info("chat store: removed ", doomed.size(), " members of gateway ", gateway_id,
              keep_epoch ? " (stale epochs)" : " (gateway lost)");
  return rooms;
}

}  // namespace sb::backend
