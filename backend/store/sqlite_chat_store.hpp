// ChatStore on one SQLite file shared by every worker process of a host.
//
// One connection per worker (the worker's loop thread is its only user). WAL so readers
// never block the writer; busy_timeout 5 s so workers queue for the write lock instead of
// failing; synchronous=NORMAL (durable across process crashes, may lose the last commits on
// power loss: fine for chat). Every write runs in BEGIN IMMEDIATE so it takes the write lock
// up front and cannot hit a read->write upgrade deadlock. In a batch (begin_batch/end_batch)
// the writes of one worker loop turn share that transaction, each in a savepoint: one commit
// per turn instead of one per event (a connect storm's joins cost one WAL append per turn).
// The schema is created with IF NOT EXISTS, so workers starting together on a fresh file are
// safe.
//
// Errors: methods never throw. A failed SQLite call is logged (level error, with the
// operation and SQLite's message), counted in error_count(), and the method returns its
// "nothing" value: add_member does nothing, set_alias/remove_member/member return nullopt,
// members/recent_messages/remove_stale_epochs/remove_gateway_members return empty lists,
// append_message returns ok = false. ChatApp turns those into an Error reply to the client,
// or a refusal (1011) on join; see chat.hpp.
//
// Schema changes are applied in place at open (issue 3 added messages.seq and a UNIQUE
// (wsid, seq) index), so a file written by an older version keeps working.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/store/chat_store.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace sb::backend {

class SqliteChatStore : public ChatStore {
 public:
  // Opens (creating if needed) the database at `path` (":memory:" for a private one).
  // On failure returns nullptr and sets `error`.
  static std::unique_ptr<SqliteChatStore> open(const std::string& path, std::string& error);
  ~SqliteChatStore() override;
  SqliteChatStore(const SqliteChatStore&) = delete;
  SqliteChatStore& operator=(const SqliteChatStore&) = delete;

  void begin_batch() override { batching_ = true; }
  bool end_batch() override;

  void add_member(const ChatMember& member) override;
  std::optional<ChatMember> set_alias(const std::string& wsid, const std::string& alias) override;
  std::optional<ChatMember> remove_member(const std::string& wsid) override;
  std::optional<ChatMember> member(const std::string& wsid) override;
  std::vector<ChatMember> members(const std::string& room) override;
  RoomSnapshot room_snapshot(const std::string& room) override;
  AppendResult append_message(ChatMessage& message) override;
  std::vector<ChatMessage> recent_messages(const std::string& room, int limit) override;
  std::vector<std::string> remove_stale_epochs(const std::string& gateway_id, std::uint64_t live_epoch) override;
  std::vector<std::string> remove_gateway_members(const std::string& gateway_id) override;

  // SQLite failures since open (each one also logged).
  std::uint64_t error_count() const { return error_count_; }

 private:
  enum Stmt : int {
    begin_immediate,
    commit,
    rollback,
    savepoint,
    release,
    rollback_to,
    insert_member,
    update_alias,
    delete_member,
    select_member,
    select_members,
    insert_message,
    select_message_by_key,
    select_recent,
    select_gateway_members,
    select_room_snapshot,
    stmt_count
  };
  class Tx;
  class Use;

  explicit SqliteChatStore(sqlite3* db) : db_(db) {}
  bool prepare_all(std::string& error);
  bool exec(Stmt which, const char* op);  // step a statement without rows to completion
  void fail(const char* op);              // log + count the connection's last error
  // Members of gateway_id with an epoch other than keep_epoch (any epoch if nullopt).
  std::vector<std::string> remove_gateway(const std::string& gateway_id, std::optional<std::uint64_t> keep_epoch,
                                          const char* op);

  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmts_[stmt_count] = {};
  std::uint64_t error_count_ = 0;
  // Between begin_batch and end_batch: writes join one BEGIN IMMEDIATE, opened by the first
  // write, each inside its own savepoint. Loop thread only, like the connection.
  bool batching_ = false;
};

}  // namespace sb::backend
