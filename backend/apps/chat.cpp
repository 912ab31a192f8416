#include "backend/apps/chat.hpp"

#include <exception>
#include <utility>
#include <variant>

#include "backend/apps/chat_protocol.hpp"
#include "common/close_codes.hpp"
#include "common/log.hpp"

namespace sb::backend {
namespace {

// Runs one callback body; nothing may escape into the worker loop.
template <typename Body>
bool guarded(const char* what, const Wsid& wsid, Body&& body) {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    log::error("chat ", what, " ", wsid, ": ", e.what());
  } catch (...) {
    log::error("chat ", what, " ", wsid, ": unknown exception");
  }
  return false;
}

}  // namespace

ChatApp::ChatApp(ChatStore& store, std::string worker_id, Clock now)
    : store_(store), worker_id_(std::move(worker_id)), now_(std::move(now)) {}

proto::AppInfo ChatApp::info() const {
  // Shared: state is in the store, so any worker may take a socket over. No idle timeout:
  // a quiet chat tab is normal.
  return {"chat", proto::AppMode::shared, 0};
}

OpenDecision ChatApp::on_open(Pool& pool, const OpenRequest& request) {
  begin_batch();
  OpenDecision decision = OpenDecision::refused(close_code::internal_error, "internal error");
  guarded("open", request.wsid, [&] { decision = open(pool, request); });
  return decision;
}

void ChatApp::on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary) {
  on_message(pool, wsid, data, binary, 0);
}

void ChatApp::on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary, std::uint64_t seq) {
  begin_batch();
  guarded("message", wsid, [&] { message(pool, wsid, data, binary, seq); });
}

void ChatApp::on_resume(Pool& pool, const OpenRequest& request, std::uint64_t acked_seq) {
  begin_batch();
  guarded("resume", request.wsid, [&] { resume(pool, request, acked_seq); });
}

void ChatApp::on_close(Pool& pool, const Wsid& wsid, std::uint16_t code, std::string_view reason) {
  begin_batch();
  guarded("close", wsid, [&] { leave(wsid, "closed"); });
}

void ChatApp::on_gone(Pool& pool, const Wsid& wsid) {
  begin_batch();
  guarded("gone", wsid, [&] { leave(wsid, "gone"); });
}

void ChatApp::purge_stale_epochs(Pool& pool, const std::string& gateway_id, std::uint64_t live_epoch) {
  begin_batch();
  guarded("purge", gateway_id, [&] {
    for (const auto& room : store_.remove_stale_epochs(gateway_id, live_epoch)) mark_room_changed(room);
  });
}

void ChatApp::purge_gateway(Pool& pool, const std::string& gateway_id) {
  begin_batch();
  guarded("purge", gateway_id, [&] {
    for (const auto& room : store_.remove_gateway_members(gateway_id)) mark_room_changed(room);
  });
}

std::string ChatApp::dedupe_key(const ChatMessage& message) {
  return "chat:" + message.room + ":" + std::to_string(message.id);
}

OpenDecision ChatApp::open(Pool& pool, const OpenRequest& request) { return join(pool, request, true); }

void ChatApp::resume(Pool& pool, const OpenRequest& request, std::uint64_t acked_seq) {
  if (store_.member(request.wsid)) return;  // the usual case: the first worker's join is stored
  bool greet = acked_seq == 0;
  log::info("chat ", request.wsid, ": taken over without a membership: joining again", greet ? " (in full)" : "");
  auto decision = join(pool, request, greet);
  // The socket was accepted once, so it cannot be refused any more: close it like a refusal.
  if (!decision.accept) pool.end(request.wsid, decision.code, decision.reason);
}

OpenDecision ChatApp::join(Pool& pool, const OpenRequest& request, bool greet) {
  const Wsid& wsid = request.wsid;
  auto room = chat::check_room(request.param("room"));
  if (!room.error.empty()) {
    log::warn("chat ", wsid, ": refused: ", room.error);
    return OpenDecision::refused(close_code::policy_violation, room.error);
  }

  // Order matters: Status first (the page shows the WSID), subscribe before anything is
  // published to the room so this socket sees its own join, history before live traffic.
  if (greet) pool.write(wsid, chat::status_json(wsid, worker_id_));
  const auto topic = chat::room_topic(room.room);
  pool.subscribe(wsid, topic);
  store_.add_member({wsid, room.room, chat::default_alias(wsid)});

  if (greet)
    for (const auto& past : store_.recent_messages(room.room, chat::history_limit))
      pool.write(wsid, chat::chat_json(past));

  if (!store_.member(wsid)) {
    // The store already logged why; without a membership row the socket would be invisible.
    log::error("chat ", wsid, ": could not join room '", room.room, "' (store failure)");
    return OpenDecision::refused(close_code::internal_error, "chat store unavailable");
  }
  mark_room_changed(room.room);
  log::debug("chat ", wsid, ": joined room '", room.room, "'");
  return OpenDecision::accepted();
}

void ChatApp::message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary, std::uint64_t seq) {
  auto request = chat::parse_client(data, binary);
  if (auto* alias = std::get_if<chat::SetAlias>(&request)) {
    set_alias(pool, wsid, alias->alias);
  } else if (auto* text = std::get_if<chat::SendMessage>(&request)) {
    send_message(pool, wsid, text->base64, seq);
  } else {
    reject(pool, wsid, std::get<chat::Invalid>(request).reason);
  }
}

void ChatApp::set_alias(Pool& pool, const Wsid& wsid, const std::string& alias) {
  auto changed = store_.set_alias(wsid, alias);
  // nullopt: not a member (never joined, or purged), or the store failed and logged it.
  if (!changed) return reject(pool, wsid, "unknown member: alias not changed");
  mark_room_changed(changed->room);
}

void ChatApp::send_message(Pool& pool, const Wsid& wsid, const std::string& base64, std::uint64_t seq) {
  auto sender = store_.member(wsid);
  if (!sender) return reject(pool, wsid, "unknown member: message not sent");

  ChatMessage message;
  message.room = sender->room;
  // The client's "Author" field is ignored on purpose: the shown author is the alias the
  // server holds for this WSID, so nobody can post under another name.
  message.author = sender->alias;
  message.message = base64;
  message.sent = chat::format_sent(now_());
  message.wsid = wsid;
  message.seq = seq;
  auto stored = store_.append_message(message);
  if (!stored.ok) return reject(pool, wsid, "message could not be stored, try again");
  if (!stored.inserted) {
    // Processed before (failover): `message` is now the stored row. Publish it again under the
    // same key: the first worker may have died before publishing; if not, the gateway drops this.
    ++republished_;
    log::info("chat ", wsid, ": message seq ", seq, " was stored before as id ", message.id, ": publishing it again");
  }

  // Every member on every gateway gets it, the sender included (that is its echo).
  pool.publish(chat::room_topic(message.room), chat::chat_json(message), false, {}, dedupe_key(message));
}

void ChatApp::leave(const Wsid& wsid, const char* why) {
  // The gateway already dropped the socket from its topics; only the store needs cleaning.
  auto removed = store_.remove_member(wsid);
  if (!removed) return;  // never joined, or already removed (e.g. close after gone)
  log::debug("chat ", wsid, ": left room '", removed->room, "' (", why, ")");
  mark_room_changed(removed->room);
}

void ChatApp::reject(Pool& pool, const Wsid& wsid, std::string_view reason) {
  log::warn("chat ", wsid, ": ", reason);
  pool.write(wsid, chat::error_json(reason));
}

void ChatApp::mark_room_changed(const std::string& room) {
  // Once per room per batch, at its end: a storm of joins to one room sends one list, not one
  // per join (each list goes to every member).
  if (changed_rooms_set_.insert(room).second) changed_rooms_.push_back(room);
}

void ChatApp::begin_batch() {
  if (in_batch_) return;
  in_batch_ = true;
  store_.begin_batch();
}

void ChatApp::on_batch_end(Pool& pool) {
  if (!in_batch_) return;
  in_batch_ = false;
  if (!store_.end_batch()) {
    ++failed_batches_;
    log::error("chat: the store lost a batch of changes (commit failed); userlists are re-read from the store");
  }
  // Read after the commit: the lists show what is stored, also when the commit failed.
  auto rooms = std::exchange(changed_rooms_, {});
  changed_rooms_set_.clear();
  for (const auto& room : rooms) {
    guarded("userlist", room, [&] {
      auto snapshot = store_.room_snapshot(room);
      // Two workers changing one room publish concurrently and their lists can cross on the
      // way; the room's version lets each gateway drop the older list, so the newest is the
      // last seen.
      pool.publish(chat::room_topic(room), chat::userlist_json(snapshot.members), false, {}, {}, "userlist:" + room,
                   snapshot.version);
    });
  }
}

}  // namespace sb::backend
