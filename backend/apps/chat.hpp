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
// - Exceptions (only bad_alloc is realistic) are caught at each callback and logged.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "backend/app.hpp"
#include "backend/store/chat_store.hpp"

namespace sb::backend {

class ChatApp : public App {
 public:
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  ChatApp(ChatStore& store, std::string worker_id, Clock now = std::chrono::system_clock::now);

  proto::AppInfo info() const override;
  OpenDecision on_open(Pool& pool, const OpenRequest& request) override;
  void on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary) override;
  void on_close(Pool& pool, const Wsid& wsid, std::uint16_t code, std::string_view reason) override;
  void on_gone(Pool& pool, const Wsid& wsid) override;

  // A gateway announced (WELCOME) a new epoch: members it held under older epochs are gone
  // for good. Removes them and publishes fresh userlists to the rooms they left. The worker
  // runtime should call this on every WELCOME (idempotent; cheap when nothing is stale).
  void purge_stale_epochs(Pool& pool, const std::string& gateway_id, std::uint64_t live_epoch);

 private:
  OpenDecision open(Pool& pool, const OpenRequest& request);
  void message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary);
  void leave(Pool& pool, const Wsid& wsid, const char* why);
  void set_alias(Pool& pool, const Wsid& wsid, const std::string& alias);
  void send_message(Pool& pool, const Wsid& wsid, const std::string& base64);
  void reject(Pool& pool, const Wsid& wsid, std::string_view reason);
  void publish_userlist(Pool& pool, const std::string& room);

  ChatStore& store_;
  std::string worker_id_;
  Clock now_;
};

}  // namespace sb::backend
