#include "gateway/core/gateway_core.hpp"

#include <algorithm>

#include "common/close_codes.hpp"
#include "common/log.hpp"
#include "common/wsid.hpp"
#include "gateway/core/ws_frame.hpp"

namespace sb::gateway {

GatewayCore::GatewayCore(GatewayConfig config, std::uint64_t epoch, SocketDriver& driver)
    : config_(std::move(config)), epoch_(epoch), driver_(driver) {
  limits_.max_bytes = config_.max_pool_message_bytes;
  limits_.max_string = config_.max_pool_message_bytes;
}

GatewayCore::AppState GatewayCore::app_state(const std::string& app) {
  if (workers_.pick(app)) return AppState::available;
  return known_apps_.count(app) ? AppState::unavailable : AppState::unknown;
}

Session* GatewayCore::find(std::string_view wsid) {
  auto it = sessions_.find(std::string(wsid));
  return it == sessions_.end() ? nullptr : it->second.get();
}

void GatewayCore::send(const std::string& routing_id, const proto::Envelope& envelope) {
  proto::encode_into(envelope, outbox_[routing_id].emplace_back());
  ++outbox_pending_;
}

Session* GatewayCore::open_session(OpenParams params, std::int64_t now_ms) {
  WorkerEntry* worker = workers_.pick(params.app);
  if (!worker) {
    ++counters_.refused_no_worker;
    log::warn("no live worker serves app '", params.app, "': refusing socket from ", params.remote_address);
    return nullptr;
  }
  auto session = std::make_unique<Session>();
  session->wsid = make_wsid(config_.gateway_id, epoch_, next_counter_++);
  session->app = params.app;
  session->worker = worker->routing_id;
  session->transport = params.transport;
  session->last_activity_ms = now_ms;
  ++worker->sockets;

  proto::Open open;
  open.wsid = session->wsid;
  open.app = std::move(params.app);
  open.path = std::move(params.path);
  open.query = std::move(params.query);
  open.headers = std::move(params.headers);
  open.session_id = std::move(params.session_id);
  open.remote_address = std::move(params.remote_address);
  send(session->worker, open);

  ++counters_.sockets_opened;
  log::debug("open ", session->wsid, " app=", session->app, " worker=", session->worker);
  Session* raw = session.get();
  sessions_.emplace(raw->wsid, std::move(session));
  return raw;
}

void GatewayCore::client_message(Session& session, bool binary, std::string payload, std::int64_t now_ms) {
  session.last_activity_ms = now_ms;
  if (session.worker.empty()) {
    // Its worker died; issue 3 re-homes the socket, until then the message cannot be served.
    ++counters_.messages_no_worker;
    log::warn("dropping message on ", session.wsid, ": its worker is gone");
    return;
  }
  proto::Message message;
  message.wsid = session.wsid;
  message.seq = session.next_seq++;
  message.binary = binary;
  message.payload = std::move(payload);
  send(session.worker, message);
  ++counters_.messages_in;
}

void GatewayCore::session_closed(Session& session, std::uint16_t code, std::string_view reason) {
  for (const auto& topic : session.topics) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) continue;
    auto& members = it->second;
    members.erase(std::remove(members.begin(), members.end(), &session), members.end());
    if (members.empty()) topics_.erase(it);
  }
  if (!session.worker.empty()) {
    if (auto* w = workers_.find(session.worker); w && w->sockets > 0) --w->sockets;
    send(session.worker, proto::Close{session.wsid, code, std::string(reason)});
  } else if (WorkerEntry* other = workers_.pick(session.app)) {
    // Its worker died: another one still learns of the close so the store forgets the socket.
    send(other->routing_id, proto::Close{session.wsid, code, std::string(reason)});
  }
  ++counters_.sockets_closed;
  log::debug("closed ", session.wsid, " code=", code);
  sessions_.erase(session.wsid);  // destroys `session`
}

GatewayCore::Output GatewayCore::next_output(Session& session, std::string& buffer) {
  if (session.close_now) return Output::close;
  if (!session.queue.empty()) {
    session.queue.take(buffer, config_.max_write_batch_bytes);
    return Output::data;
  }
  return session.closing ? Output::close : Output::none;
}

void GatewayCore::close_soon(Session& session, std::uint16_t code, std::string reason) {
  if (session.closing || session.close_now) return;
  session.closing = true;
  session.close_code = code;
  session.close_reason = std::move(reason);
  driver_.wake_writer(session);
}

void GatewayCore::enqueue(Session& session, const Frame& frame) {
  if (session.close_now || session.closing) return;
  if (!session.queue.push(frame, config_.max_queue_bytes)) {
    ++counters_.slow_consumer_closes;
    log::warn("slow consumer ", session.wsid, ": ", session.queue.bytes(), " bytes queued, closing with 4008");
    session.close_now = true;
    session.close_code = close_code::slow_consumer;
    session.close_reason = "slow consumer";
    session.queue.clear();
    driver_.wake_writer(session);
    return;
  }
  ++counters_.frames_queued;
  counters_.bytes_queued += frame->size();
  driver_.wake_writer(session);
}

void GatewayCore::gone(const std::string& routing_id, const std::string& wsid) {
  ++counters_.gone_sent;
  send(routing_id, proto::Gone{wsid});
}

void GatewayCore::subscribe(Session& session, const std::string& topic) {
  if (std::find(session.topics.begin(), session.topics.end(), topic) != session.topics.end()) return;
  session.topics.push_back(topic);
  topics_[topic].push_back(&session);
}

void GatewayCore::unsubscribe(Session& session, const std::string& topic) {
  auto own = std::find(session.topics.begin(), session.topics.end(), topic);
  if (own == session.topics.end()) return;
  session.topics.erase(own);
  auto it = topics_.find(topic);
  if (it == topics_.end()) return;
  auto& members = it->second;
  members.erase(std::remove(members.begin(), members.end(), &session), members.end());
  if (members.empty()) topics_.erase(it);
}

void GatewayCore::on_write(const std::string& from, proto::Write& write) {
  auto frame = std::make_shared<const std::string>(make_frame(write.payload, write.binary));
  for (const auto& wsid : write.targets) {
    if (Session* s = find(wsid)) enqueue(*s, frame);
    else gone(from, wsid);
  }
}

void GatewayCore::on_publish(proto::Publish& publish) {
  auto it = topics_.find(publish.topic);
  if (it == topics_.end()) return;
  auto frame = std::make_shared<const std::string>(make_frame(publish.payload, publish.binary));
  // Copy: a full queue closes a socket, but closing happens later, so the list stays valid.
  for (Session* s : it->second)
    if (publish.except_wsid.empty() || s->wsid != publish.except_wsid) enqueue(*s, frame);
}

void GatewayCore::pool_message(const std::string& routing_id, std::string_view body, std::int64_t now_ms) {
  ++counters_.pool_messages_in;
  workers_.heard(routing_id, now_ms);
  auto decoded = proto::decode(body, limits_);
  if (!decoded.ok()) {
    ++counters_.pool_decode_errors;
    log::warn("bad pool message from worker '", routing_id, "': ", decoded.error());
    return;
  }
  handle(routing_id, std::move(decoded.envelope()), now_ms);
}

void GatewayCore::handle(const std::string& routing_id, proto::Envelope&& envelope, std::int64_t now_ms) {
  if (auto* hello = std::get_if<proto::Hello>(&envelope)) {
    if (hello->version != proto::protocol_version) {
      ++counters_.pool_unexpected;
      log::error("worker '", routing_id, "' speaks protocol ", hello->version, ", we speak ",
                 proto::protocol_version, ": ignored");
      return;
    }
    bool known = workers_.find(routing_id) != nullptr;
    auto& entry = workers_.register_worker(routing_id, std::move(hello->apps), now_ms);
    for (const auto& a : entry.apps) known_apps_.insert(a.name);
    if (!known) {
      ++counters_.workers_registered;
      std::string names;
      for (const auto& a : entry.apps) names += (names.empty() ? "" : ",") + a.name;
      log::info("worker '", routing_id, "' joined, apps: ", names);
    }
    send(routing_id, proto::Welcome{proto::protocol_version, config_.gateway_id, epoch_, config_.heartbeat_ms});
    return;
  }
  if (std::holds_alternative<proto::Heartbeat>(envelope)) return;  // liveness already noted
  if (std::holds_alternative<proto::Bye>(envelope)) {
    if (auto* w = workers_.find(routing_id)) {
      w->draining = true;
      log::info("worker '", routing_id, "' is draining");
    }
    return;
  }
  // Commands: accepted from any connected worker, for any WSID this gateway holds.
  if (auto* write = std::get_if<proto::Write>(&envelope)) return on_write(routing_id, *write);
  if (auto* publish = std::get_if<proto::Publish>(&envelope)) return on_publish(*publish);
  if (auto* end = std::get_if<proto::End>(&envelope)) {
    Session* s = find(end->wsid);
    if (!s) return gone(routing_id, end->wsid);
    std::uint16_t code = close_code::sendable(end->code) ? end->code : close_code::normal;
    return close_soon(*s, code, std::move(end->reason));
  }
  if (auto* sub = std::get_if<proto::Subscribe>(&envelope)) {
    Session* s = find(sub->wsid);
    if (!s) return gone(routing_id, sub->wsid);
    return subscribe(*s, sub->topic);
  }
  if (auto* unsub = std::get_if<proto::Unsubscribe>(&envelope)) {
    if (Session* s = find(unsub->wsid)) unsubscribe(*s, unsub->topic);
    return;
  }
  if (auto* query = std::get_if<proto::Query>(&envelope)) {
    send(routing_id, proto::Status{query->wsid, find(query->wsid) != nullptr});
    return;
  }
  if (std::holds_alternative<proto::Ack>(envelope)) return;  // issue 3: re-send window
  ++counters_.pool_unexpected;
  log::warn("worker '", routing_id, "' sent ", proto::kind_name(proto::kind_of(envelope)),
            ", which only a gateway sends: ignored");
}

void GatewayCore::lose_worker(const std::string& routing_id) {
  ++counters_.workers_lost;
  std::size_t lost = 0;
  for (auto& [wsid, session] : sessions_) {
    if (session->worker != routing_id) continue;
    session->worker.clear();
    ++lost;
    // Without failover (issue 3) the socket cannot be served any more: tell the browser.
    close_soon(*session, close_code::service_restart, "worker lost");
  }
  counters_.sockets_lost_with_worker += lost;
  outbox_.erase(routing_id);
  log::warn("worker '", routing_id, "' lost; ", lost, " sockets closed with 1012");
}

void GatewayCore::worker_unreachable(const std::string& routing_id) {
  if (!workers_.find(routing_id)) return;
  workers_.remove(routing_id);
  lose_worker(routing_id);
}

void GatewayCore::close_all(std::uint16_t code, const std::string& reason) {
  for (auto& [wsid, session] : sessions_) close_soon(*session, code, reason);
}

void GatewayCore::tick(std::int64_t now_ms) {
  for (const auto& dead : workers_.expire(now_ms, config_.worker_dead_ms)) lose_worker(dead);
  if (now_ms - last_heartbeat_ms_ >= config_.heartbeat_ms) {
    last_heartbeat_ms_ = now_ms;
    for (const auto& [id, w] : workers_.all()) send(id, proto::Heartbeat{});
  }
  // Idle events: IRIS Read() timeouts, repeated every idle period while the client is silent.
  for (auto& [wsid, session] : sessions_) {
    if (session->worker.empty()) continue;
    const proto::AppInfo* info = workers_.app_info(session->app);
    if (!info || info->idle_timeout_ms == 0) continue;
    if (now_ms - session->last_activity_ms < static_cast<std::int64_t>(info->idle_timeout_ms)) continue;
    session->last_activity_ms = now_ms;
    ++counters_.idle_events;
    send(session->worker, proto::Idle{wsid});
  }
}

}  // namespace sb::gateway
