// "broadcast": each message goes, byte for byte and with its binary flag, to every socket in
// the sender's room (sender included), using gateway topics "broadcast:<room>": one PUBLISH
// per gateway, framed once there. Rooms come from ?room= (default "default").
#pragma once
#include <string>
#include <unordered_map>

#include "backend/app.hpp"

namespace sb::backend {

class BroadcastApp final : public App {
 public:
  using App::on_message;
  static constexpr const char* name = "broadcast";
  static constexpr std::size_t max_room_bytes = 128;  // topics are keys at every gateway

  static std::string topic_for(std::string_view room) { return "broadcast:" + std::string(room); }

  proto::AppInfo info() const override;
  OpenDecision on_open(Pool& pool, const OpenRequest& request) override;
  void on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary) override;
  // Taken over from another worker: the room comes from the query again (the gateway kept the
  // topic membership, so there is nothing to subscribe).
  void on_resume(Pool& pool, const OpenRequest& request, std::uint64_t acked_seq) override;
  void on_close(Pool& pool, const Wsid& wsid, std::uint16_t code, std::string_view reason) override;
  void on_gone(Pool& pool, const Wsid& wsid) override;

  std::size_t sockets() const { return topics_.size(); }
  std::uint64_t unknown_senders() const { return unknown_senders_; }

 private:
  // WSID -> topic, for the sockets this worker opened or took over (the gateway keeps the members).
  std::unordered_map<Wsid, std::string> topics_;
  std::uint64_t unknown_senders_ = 0;
};

}  // namespace sb::backend
