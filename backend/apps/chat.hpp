// The chat app (design.md §4, issue 2): rooms from ?room=, aliases, a stored message log,
// room fan-out through gateway topics "chat:<room>". Shared mode: the app keeps no state of
// its own between events; everything lives in the ChatStore, so any worker can serve any
// WSID and a Chat from one worker reaches sockets whose events go to another.
//
// How failures surface:
// - Bad client input: {"Type":"Error","Reason":...} to the sender only, a warn log line with
//   the WSID; the socket stays open and nothing is published.
// - Store failures (the store logs the SQLite error itself): a failed join (the member is
//   missing from the room afterwards) refuses the socket with 1011; a message that could not
//   be stored or an alias that could not be set answers the sender with an Error.
// - Batches: the store changes of one worker loop turn share one transaction, committed in
//   on_batch_end before anything of the turn is sent. If that commit fails (I/O error), the
//   turn's changes are lost: logged, counted in failed_batches(), and the userlists sent then
//   are read after the failure, so they show what is really stored.
// - Exceptions (only bad_alloc is realistic) are caught at each callback and logged.
//
// Failover (issue 3): a MESSAGE may be processed twice (the worker died after storing it but
// before the gateway got the ACK). The store keeps (wsid, seq) unique; a repeat is not stored
// again but its stored row is published again, and every Chat is published with the dedupe
// key "chat:<room>:<id>", so the gateway delivers it once whether or not the first worker got
// to publish it. Alias changes and userlists are idempotent and carry no key.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "backend/app.hpp"
#include "backend/store/chat_store.hpp"

namespace sb::backend {

class ChatApp : public App {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  ChatApp(ChatStore& store, std::string worker_id, Clock now = std::chrono::system_clock::now);

  proto::AppInfo info() const override;
  OpenDecision on_open(Pool& pool, const OpenRequest& request) override;
  // Without a seq (no dedupe in the store); the runtime calls the 5-argument form.
  void on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary) override;
  void on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary, std::uint64_t seq) override;
  // Taken over from another worker: normally its join is in the store and nothing is done. If
  // the member is missing, the join is repaired: in full (Status, history, userlist) when no
  // message was ever acknowledged (the first worker likely died inside on_open), else quietly
  // (membership and userlist only; the member was purged while the socket lived on).
  void on_resume(Pool& pool, const OpenRequest& request, std::uint64_t acked_seq) override;
  void on_close(Pool& pool, const Wsid& wsid, std::uint16_t code, std::string_view reason) override;
  void on_gone(Pool& pool, const Wsid& wsid) override;
  // Commits the batch's store transaction, then publishes one userlist per changed room.
  void on_batch_end(Pool& pool) override;

  // A gateway announced (WELCOME) a new epoch: members it held under older epochs are gone
  // for good. Removes them and publishes fresh userlists to the rooms they left. The worker
  // runtime should call this on every WELCOME (idempotent; cheap when nothing is stale).
  void purge_stale_epochs(Pool& pool, const std::string& gateway_id, std::uint64_t live_epoch);
  // A gateway is gone for good (dead past the lease): removes all its members, any epoch, and
  // publishes fresh userlists. The runtime's gateway-lost listener calls this.
  void purge_gateway(Pool& pool, const std::string& gateway_id);

  // The dedupe key a Chat is published with.
  static std::string dedupe_key(const ChatMessage& message);
  // Messages seen again after a failover and published again instead of stored again.
  std::uint64_t republished() const { return republished_; }
  // Batches whose store commit failed (their changes are lost; logged).
  std::uint64_t failed_batches() const { return failed_batches_; }

 private:
  OpenDecision open(Pool& pool, const OpenRequest& request);
  // open() without the greeting (Status, history) when `greet` is false.
  OpenDecision join(Pool& pool, const OpenRequest& request, bool greet);
  void resume(Pool& pool, const OpenRequest& request, std::uint64_t acked_seq);
  void message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary, std::uint64_t seq);
  void leave(const Wsid& wsid, const char* why);
  void set_alias(Pool& pool, const Wsid& wsid, const std::string& alias);
  void send_message(Pool& pool, const Wsid& wsid, const std::string& base64, std::uint64_t seq);
  void reject(Pool& pool, const Wsid& wsid, std::string_view reason);
  // The room's userlist is published once at the end of the batch (on_batch_end).
  void mark_room_changed(const std::string& room);
  void begin_batch();

  ChatStore& store_;
  std::string worker_id_;
  Clock now_;
  std::uint64_t republished_ = 0;
  std::uint64_t failed_batches_ = 0;
  // The current batch (loop thread only): open store transaction, rooms whose membership or
  // aliases changed, in order of first change.
  bool in_batch_ = false;
  std::vector<std::string> changed_rooms_;
  std::unordered_set<std::string> changed_rooms_set_;
};

}  // namespace sb::backend
