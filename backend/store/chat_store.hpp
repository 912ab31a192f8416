// The chat app's view of the store (the IRIS "globals"): who is in which room under which
// alias, and the message log. Shared by every worker on the host (SQLite, WAL) or across
// hosts (a future Redis implementation). Calls are synchronous and short.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sb::backend {

struct ChatMember {
  std::string wsid;
  std::string room;
  std::string alias;
};

struct ChatMessage {
  std::int64_t id = 0;       // increasing across all workers sharing the store
  std::string room;
  std::string author;
  std::string message;       // base64, as the client sent it
  std::string sent;          // "YYYY-MM-DD HH:MM:SS" UTC
  std::string wsid;          // sender
  // The sender's MESSAGE seq: (wsid, seq) is stored once, so a message processed twice after a
  // worker failover is not stored twice. 0 = no such key (every append stores a new row).
  std::uint64_t seq = 0;
};

struct AppendResult {
  bool ok = false;        // false: the store failed (and logged why); `message` is unchanged
  bool inserted = false;  // with ok: true = a new row; false = (wsid, seq) was stored before
};

class ChatStore {
 public:
  virtual ~ChatStore() = default;
  // Batches: the calls between begin_batch() and end_batch() share one transaction (one
  // commit, one WAL append for many changes); each call stays atomic on its own. The worker
  // ends a batch before it sends anything the batch produced. end_batch() returns false if the
  // commit failed (logged): every change of the batch is then lost. Stores without
  // transactions ignore both.
  virtual void begin_batch() {}
  virtual bool end_batch() { return true; }
  virtual void add_member(const ChatMember& member) = 0;
  // Returns the member after the change, or nullopt if the WSID is not a member.
  virtual std::optional<ChatMember> set_alias(const std::string& wsid, const std::string& alias) = 0;
  // Returns the removed member, or nullopt if it was not there (already removed elsewhere).
  virtual std::optional<ChatMember> remove_member(const std::string& wsid) = 0;
  virtual std::optional<ChatMember> member(const std::string& wsid) = 0;
  virtual std::vector<ChatMember> members(const std::string& room) = 0;  // in join order
  // The members and the room's version, read together: the version grows with every change
  // of the room's membership or aliases, so of two snapshots the higher version is newer.
  struct RoomSnapshot {
    std::vector<ChatMember> members;
    std::uint64_t version = 0;  // 0: this store keeps no versions
  };
  virtual RoomSnapshot room_snapshot(const std::string& room) { return {members(room), 0}; }
  // Stores the message unless its (wsid, seq) is already stored (seq != 0). Either way, on
  // success `message` ends up as the stored row: its id is set and, for a repeat, every field
  // is the first one's (its author, its time), so a re-publication is byte-identical.
  virtual AppendResult append_message(ChatMessage& message) = 0;
  // The last `limit` messages of the room, oldest first.
  virtual std::vector<ChatMessage> recent_messages(const std::string& room, int limit) = 0;
  // Removes every member whose WSID belongs to gateway_id with an epoch other than
  // `live_epoch`; returns the rooms that lost members (for fresh userlists).
  virtual std::vector<std::string> remove_stale_epochs(const std::string& gateway_id, std::uint64_t live_epoch) = 0;
  // Removes every member whose WSID belongs to gateway_id, any epoch (the gateway is gone for
  // good); returns the rooms that lost members.
  virtual std::vector<std::string> remove_gateway_members(const std::string& gateway_id) = 0;
};

}  // namespace sb::backend
