#include "backend/apps/broadcast.hpp"

#include "common/close_codes.hpp"
#include "common/log.hpp"

namespace sb::backend {

proto::AppInfo BroadcastApp::info() const { return {name, proto::AppMode::shared, 0}; }

namespace {

std::string room_of(const OpenRequest& request) {
  auto room = request.param("room", "default");
  return room.empty() ? std::string("default") : room;
}

}  // namespace

OpenDecision BroadcastApp::on_open(Pool& pool, const OpenRequest& request) {
  auto room = room_of(request);
  if (room.size() > max_room_bytes) return OpenDecision::refused(close_code::policy_violation, "room name too long");
  auto topic = topic_for(room);
  pool.subscribe(request.wsid, topic);
  topics_[request.wsid] = std::move(topic);
  return OpenDecision::accepted();
}

void BroadcastApp::on_resume(Pool&, const OpenRequest& request, std::uint64_t) {
  auto room = room_of(request);
  if (room.size() > max_room_bytes) return;  // refused when it opened: cannot be resumed
  topics_[request.wsid] = topic_for(room);
}

void BroadcastApp::on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary) {
  auto it = topics_.find(wsid);
  if (it == topics_.end()) {
    // The dispatcher only delivers messages of sockets opened here, so this is a bug upstream.
    ++unknown_senders_;
    sb::log::warn("broadcast: message from ", wsid, " with no room; dropped");
    return;
  }
  pool.publish(it->second, data, binary);
}

void BroadcastApp::on_close(Pool&, const Wsid& wsid, std::uint16_t, std::string_view) { topics_.erase(wsid); }

void BroadcastApp::on_gone(Pool&, const Wsid& wsid) { topics_.erase(wsid); }

}  // namespace sb::backend
