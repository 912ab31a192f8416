#include "gateway/core/gateway_core.hpp"

#include <algorithm>

#include "common/close_codes.hpp"
#include "common/log.hpp"
#include "common/wsid.hpp"
#include "gateway/core/ws_frame.hpp"

namespace sb::gateway {

GatewayCore::GatewayCore(GatewayConfig config, std::uint64_t epoch, SocketDriver& driver)
    : config_(std::move(config)), epoch_(epoch), driver_(driver) {
  wsid_prefix_ = make_wsid(config_.gateway_id, epoch_, 0);
  wsid_prefix_.pop_back();  // the counter's "0": a WSID is this prefix plus its counter in base 36
  limits_.max_bytes = config_.max_pool_message_bytes;
  limits_.max_string = config_.max_pool_message_bytes;
  // FIN + opcode 9 (ping) with a 1-byte payload, unmasked as server frames are. Not empty: lws
  // 4.1 reports a pong to us (LWS_CALLBACK_RECEIVE_PONG) only when it carries a payload.
  ping_frame_ = std::make_shared<const std::string>(std::string("\x89\x01k", 3));
}

GatewayCore::AppState GatewayCore::app_state(const std::string& app) {
  if (workers_.pick(app)) return AppState::available;
  return known_apps_.count(app) ? AppState::unavailable : AppState::unknown;
}

std::optional<std::uint64_t> GatewayCore::counter_of(std::string_view wsid) const {
  if (wsid.size() <= wsid_prefix_.size() || wsid.substr(0, wsid_prefix_.size()) != wsid_prefix_) return std::nullopt;
  auto digits = wsid.substr(wsid_prefix_.size());
  auto counter = from_base36(digits);
  // One spelling per WSID: "x.y.0a" is not "x.y.a".
  if (!counter || to_base36(*counter) != digits) return std::nullopt;
  return counter;
}

Session* GatewayCore::find(std::string_view wsid) {
  Session* s = find_any(wsid);
  return s && !s->closed ? s : nullptr;
}

std::vector<Session*> GatewayCore::open_sessions() {
  std::vector<Session*> out;
  out.reserve(open_count_);
  table_.for_each([&](Session& s) {
    if (!s.closed) out.push_back(&s);
  });
  return out;
}

Session* GatewayCore::find_any(std::string_view wsid) {
  auto counter = counter_of(wsid);
  return counter ? table_.find(*counter) : nullptr;
}

Interned GatewayCore::intern_worker(const std::string& routing_id) {
  return Interned(*worker_ids_.insert(routing_id).first);
}

void GatewayCore::send(const std::string& routing_id, const proto::Envelope& envelope) {
  proto::encode_into(envelope, outbox_[routing_id].emplace_back());
  ++outbox_pending_;
}

// Keeps the event until it is acknowledged, and sends it if the session has a worker.
void GatewayCore::send_event(Session& session, proto::Envelope&& event, std::uint64_t seq) {
  PendingEvent pending{seq, proto::encode(event)};
  if (!session.worker.empty()) {
    outbox_[session.worker.str()].push_back(pending.body);
    ++outbox_pending_;
  }
  session.unacked.push(std::move(pending));
}

Session* GatewayCore::open_session(OpenParams params, std::int64_t now_ms) {
  WorkerEntry* worker = workers_.pick(params.app);
  if (!worker) {
    ++counters_.refused_no_worker;
    log::warn("no live worker serves app '", params.app, "': refusing socket from ", params.remote_address);
    return nullptr;
  }
  Session* session = table_.add();
  if (!session) {
    ++counters_.refused_no_worker;
    log::error("session table full (", table_.size(), " sessions): refusing socket from ", params.remote_address);
    return nullptr;
  }
  ++open_count_;
  session->wsid_prefix = &wsid_prefix_;
  session->app = Interned(*known_apps_.insert(params.app).first);
  if (!params.query.empty()) session->query = std::make_unique<std::string>(params.query);
  const proto::AppInfo* info = workers_.app_info(params.app);
  session->dedicated = info && info->mode == proto::AppMode::dedicated;
  session->worker = intern_worker(worker->routing_id);
  session->transport = params.transport;
  session->last_activity_ms = now_ms;
  session->last_heard_ms = now_ms;
  ++worker->sockets;

  proto::Open open;
  open.wsid = session->wsid();
  open.app = std::move(params.app);
  open.path = std::move(params.path);
  open.query = std::move(params.query);
  open.headers = std::move(params.headers);
  open.session_id = std::move(params.session_id);
  open.remote_address = std::move(params.remote_address);
  // OPEN is event 0: kept until ACKed, so a worker that dies before on_open ran is replaced by
  // one that gets the full OPEN (not a take-over) and runs it.
  send_event(*session, std::move(open), 0);

  ++counters_.sockets_opened;
  log::debug("open ", open.wsid, " app=", session->app.str(), " worker=", session->worker.str());
  return session;
}

void GatewayCore::client_message(Session& session, bool binary, std::string payload, std::int64_t now_ms) {
  session.last_activity_ms = now_ms;
  heard(session, now_ms);
  std::uint64_t seq = session.next_seq++;
  send_event(session, proto::Message{session.wsid(), seq, binary, std::move(payload)}, seq);
  ++counters_.messages_in;
  // Backpressure instead of loss: stop reading this client until the workers catch up.
  if (!session.reading_paused && (session.unacked.bytes() > config_.max_unacked_bytes ||
                                  session.unacked.size() > config_.max_unacked_events)) {
    session.reading_paused = true;
    ++counters_.reads_paused;
    driver_.set_reading(session, false);
  }
}

void GatewayCore::session_closed(Session& session, std::uint16_t code, std::string_view reason) {
  for (const auto& topic : session.topics) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) continue;
    auto& members = it->second;
    members.erase(std::remove(members.begin(), members.end(), &session), members.end());
    if (members.empty()) topics_.erase(it);
  }
  std::vector<std::string>().swap(session.topics);
  session.queue.clear();
  session.transport = nullptr;
  if (!session.worker.empty())
    if (auto* w = workers_.find(session.worker); w && w->sockets > 0) --w->sockets;
  std::uint64_t seq = session.next_seq++;
  send_event(session, proto::Close{session.wsid(), code, std::string(reason)}, seq);
  if (session.worker.empty()) take_over(session);
  ++counters_.sockets_closed;
  log::debug("closed ", session.wsid(), " code=", code);

  session.closed = true;
  --open_count_;
  closed_order_.push_back(session.counter);
  // Bounded: with no worker for a long time the oldest closes are given up, and counted.
  while (closed_pending() > config_.max_closed_pending && !closed_order_.empty()) {
    Session* oldest = table_.find(closed_order_.front());
    if (oldest && oldest->closed) {
      ++counters_.orphan_closes_dropped;
      log::warn("dropping the close of ", oldest->wsid(), ": no worker acknowledged it in time");
      table_.remove(*oldest);
    }
    closed_order_.pop_front();
  }
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
  if (session.closing || session.close_now || !session.transport) return;
  session.closing = true;
  session.close_code = code;
  session.close_reason_text = std::make_unique<std::string>(std::move(reason));
  driver_.wake_writer(session);
}

void GatewayCore::close_unflushed(Session& session, std::uint16_t code, std::string reason) {
  session.close_now = true;
  session.close_code = code;
  session.close_reason_text = std::make_unique<std::string>(std::move(reason));
  session.queue.clear();  // not flushed: the peer is not reading
  driver_.wake_writer(session);
}

void GatewayCore::close_all(std::uint16_t code, const std::string& reason) {
  table_.for_each([&](Session& s) {
    if (!s.closed) close_soon(s, code, reason);
  });
}

void GatewayCore::enqueue(Session& session, const Frame& frame) {
  if (session.close_now || session.closing) return;
  if (!session.queue.push(frame, config_.max_queue_bytes)) {
    ++counters_.slow_consumer_closes;
    log::warn("slow consumer ", session.wsid(), ": ", session.queue.bytes(), " bytes queued, closing with 4008");
    close_unflushed(session, close_code::slow_consumer, "slow consumer");
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

bool GatewayCore::first_delivery(const std::string& dedupe_key) {
  if (dedupe_key.empty()) return true;
  if (!recent_keys_.insert(dedupe_key).second) {
    ++counters_.duplicates_suppressed;
    log::debug("suppressed repeated delivery ", dedupe_key);
    return false;
  }
  recent_key_order_.push_back(dedupe_key);
  if (recent_key_order_.size() > config_.dedupe_window) {
    recent_keys_.erase(recent_key_order_.front());
    recent_key_order_.pop_front();
  }
  return true;
}

void GatewayCore::on_write(const std::string& from, proto::Write& write) {
  if (!first_delivery(write.dedupe_key)) return;
  auto frame = std::make_shared<const std::string>(make_frame(write.payload, write.binary));
  for (const auto& wsid : write.targets) {
    if (Session* s = find(wsid)) enqueue(*s, frame);
    else gone(from, wsid);
  }
}

void GatewayCore::on_publish(proto::Publish& publish) {
  if (!first_delivery(publish.dedupe_key)) return;
  if (!publish.order_key.empty()) {
    auto [it, fresh] = latest_versions_.try_emplace(publish.order_key, publish.order_version);
    if (!fresh) {
      if (publish.order_version < it->second) {
        ++counters_.stale_suppressed;  // an older snapshot overtaken by a newer one
        return;
      }
      it->second = publish.order_version;
    } else {
      latest_order_.push_back(publish.order_key);
      if (latest_order_.size() > config_.dedupe_window) {
        latest_versions_.erase(latest_order_.front());
        latest_order_.pop_front();
      }
    }
  }
  auto it = topics_.find(publish.topic);
  if (it == topics_.end()) return;
  auto frame = std::make_shared<const std::string>(make_frame(publish.payload, publish.binary));
  // A WSID of another gateway (or epoch) excludes nobody here.
  auto except = publish.except_wsid.empty() ? std::nullopt : counter_of(publish.except_wsid);
  // enqueue never changes topic membership (a full queue closes the socket later), so the
  // subscriber list stays valid while we walk it.
  for (Session* s : it->second)
    if (!except || s->counter != *except) enqueue(*s, frame);
}

void GatewayCore::on_ack(const std::string& from, const proto::Ack& ack) {
  Session* s = find_any(ack.wsid);
  if (!s) return;  // acknowledged already and forgotten
  if (s->worker != from) {
    ++counters_.acks_ignored;  // a worker that lost the socket (moved while it was stopped)
    return;
  }
  ++counters_.acks;
  if (ack.seq > s->acked_seq) s->acked_seq = ack.seq;
  s->unacked.acknowledge_through(ack.seq);
  if (s->reading_paused && s->unacked.bytes() <= config_.max_unacked_bytes / 2 &&
      s->unacked.size() <= config_.max_unacked_events / 2) {
    s->reading_paused = false;
    if (s->transport) driver_.set_reading(*s, true);
  }
  if (s->closed && s->unacked.empty()) {
    table_.remove(*s);  // its CLOSE is acknowledged: on_close ran
    if (closed_order_.size() > 2 * closed_pending() + 1024) {
      std::deque<std::uint64_t> live;
      for (auto counter : closed_order_)
        if (Session* c = table_.find(counter); c && c->closed) live.push_back(counter);
      closed_order_.swap(live);
    }
  }
}

bool GatewayCore::take_over(Session& session) {
  WorkerEntry* worker = workers_.pick(session.app.str());
  if (!worker) return false;
  session.worker = intern_worker(worker->routing_id);
  if (session.transport) ++worker->sockets;
  // If the original OPEN (event 0) is still unacknowledged it goes out again as it was;
  // otherwise the new worker gets a take-over OPEN.
  bool open_pending = !session.unacked.empty() && session.unacked.front().seq == 0;
  if (!open_pending) {
    proto::Open open;
    open.wsid = session.wsid();
    open.app = session.app.str();
    if (session.query) open.query = *session.query;
    open.resume = true;
    open.acked_seq = session.acked_seq;
    send(session.worker.str(), open);
  }
  for (const auto& event : session.unacked) {
    outbox_[session.worker.str()].push_back(event.body);
    ++outbox_pending_;
  }
  ++counters_.sessions_moved;
  counters_.events_resent += session.unacked.size();
  return true;
}

void GatewayCore::take_over_waiting() {
  std::size_t moved = 0;
  table_.for_each([&](Session& s) {
    if (s.worker.empty() && take_over(s)) ++moved;
  });
  if (moved) log::info(moved, " sockets waiting for a worker were taken over");
}

void GatewayCore::release_worker(const std::string& routing_id, bool dead) {
  if (dead) outbox_.erase(routing_id);  // nothing more can reach it
  std::size_t moved = 0, waiting = 0, closed = 0;
  table_.for_each([&](Session& session) {
    if (session.worker != routing_id) return;
    session.worker.clear();
    if (session.dedicated && session.transport) {
      // Pinned to that worker: the browser must reconnect. Its CLOSE still reaches a worker.
      ++counters_.dedicated_closed;
      ++closed;
      close_soon(session, close_code::service_restart, "worker lost");
    }
    if (take_over(session)) ++moved;
    else ++waiting;
  });
  // No session names a dead worker any more. (A drained one stays registered until it goes.)
  if (dead && !workers_.find(routing_id)) worker_ids_.erase(routing_id);
  log::warn("worker '", routing_id, "' ", dead ? "lost" : "drained", ": ", moved, " sockets moved, ", waiting,
            " waiting for a worker, ", closed, " dedicated sockets closed with 1012");
}

void GatewayCore::on_bye(const std::string& from) {
  WorkerEntry* w = workers_.find(from);
  if (!w) return;
  w->draining = true;
  ++counters_.workers_drained;
  release_worker(from, false);
  send(from, proto::Bye{});  // released: it may exit
}

void GatewayCore::worker_unreachable(const std::string& routing_id, std::int64_t now_ms) {
  WorkerEntry* worker = workers_.find(routing_id);
  if (!worker) return;
  // ZeroMQ saw its connection close (a crash, kill -9): detected at the next send to it.
  counters_.failover_detect_ms_last = static_cast<std::uint64_t>(std::max<std::int64_t>(0, now_ms - worker->last_heard_ms));
  log::warn("worker '", routing_id, "' unreachable ", now_ms - worker->last_heard_ms, " ms after it was last heard");
  workers_.remove(routing_id);
  ++counters_.workers_lost;
  release_worker(routing_id, true);
}

void GatewayCore::welcome_stranger(const std::string& routing_id, std::int64_t now_ms) {
  if (strangers_welcomed_.size() > 10000) strangers_welcomed_.clear();
  auto [it, fresh] = strangers_welcomed_.try_emplace(routing_id, now_ms);
  if (!fresh) {
    if (now_ms - it->second < static_cast<std::int64_t>(config_.heartbeat_ms)) return;
    it->second = now_ms;
  }
  ++counters_.welcomes_unsolicited;
  log::info("traffic from unknown worker '", routing_id, "': asking it to register again");
  send(routing_id, proto::Welcome{proto::protocol_version, config_.gateway_id, epoch_, config_.heartbeat_ms, false});
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

void GatewayCore::on_hello(const std::string& routing_id, proto::Hello& hello, std::int64_t now_ms) {
  if (hello.version != proto::protocol_version) {
    ++counters_.pool_unexpected;
    log::error("worker '", routing_id, "' speaks protocol ", hello.version, ", we speak ", proto::protocol_version,
               ": ignored");
    return;
  }
  bool known = workers_.find(routing_id) != nullptr;
  auto& entry = workers_.register_worker(routing_id, std::move(hello.apps), now_ms);
  strangers_welcomed_.erase(routing_id);
  for (const auto& a : entry.apps) known_apps_.insert(a.name);
  send(routing_id, proto::Welcome{proto::protocol_version, config_.gateway_id, epoch_, config_.heartbeat_ms, known});
  if (!known) {
    ++counters_.workers_registered;
    std::string names;
    for (const auto& a : entry.apps) names += (names.empty() ? "" : ",") + a.name;
    log::info("worker '", routing_id, "' joined, apps: ", names);
    take_over_waiting();
  }
}

void GatewayCore::handle(const std::string& routing_id, proto::Envelope&& envelope, std::int64_t now_ms) {
  if (auto* hello = std::get_if<proto::Hello>(&envelope)) return on_hello(routing_id, *hello, now_ms);
  // A worker we declared dead (or that knew this gateway before a restart) must register again.
  if (!workers_.find(routing_id)) welcome_stranger(routing_id, now_ms);
  if (std::holds_alternative<proto::Heartbeat>(envelope)) return;  // liveness already noted
  if (std::holds_alternative<proto::Bye>(envelope)) return on_bye(routing_id);
  if (auto* ack = std::get_if<proto::Ack>(&envelope)) return on_ack(routing_id, *ack);
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
  ++counters_.pool_unexpected;
  log::warn("worker '", routing_id, "' sent ", proto::kind_name(proto::kind_of(envelope)),
            ", which only a gateway sends: ignored");
}

void GatewayCore::ping_some(std::int64_t now_ms) {
  if (config_.ping_interval_ms == 0) return;
  const auto interval = static_cast<std::int64_t>(config_.ping_interval_ms);
  std::int64_t elapsed = last_ping_tick_ms_ == 0 ? 0 : now_ms - last_ping_tick_ms_;
  last_ping_tick_ms_ = now_ms;
  const std::size_t slots = table_.capacity();
  if (open_count_ == 0) return;
  // One pass over the slots per interval: this tick's share, carried over when fractional.
  ping_credit_ += static_cast<double>(slots) * static_cast<double>(std::max<std::int64_t>(elapsed, 0)) /
                  static_cast<double>(interval);
  auto visits = std::min(slots, static_cast<std::size_t>(ping_credit_));
  ping_credit_ -= static_cast<double>(visits);
  if (ping_credit_ > static_cast<double>(slots)) ping_credit_ = 0;  // after a long stall
  for (std::size_t i = 0; i < visits; ++i) {
    if (ping_cursor_ >= slots) ping_cursor_ = 0;
    Session* visited = table_.at(ping_cursor_++);
    if (!visited) continue;
    Session& session = *visited;
    if (session.closed || session.closing || session.close_now || !session.transport) continue;
    if (session.reading_paused) {
      // We are not reading it (workers behind): its pongs wait in the kernel. Not its silence.
      heard(session, now_ms);
      continue;
    }
    std::int64_t silent = now_ms - session.last_heard_ms;
    if (session.ping_sent_after_ms != 0 && silent - session.ping_sent_after_ms >= interval) {
      // A ping at least one interval old got no answer (nor anything else): a half-open
      // connection or a frozen client.
      ++counters_.ping_timeouts;
      log::info("ping timeout ", session.wsid(), ": silent for ", silent, " ms, closing with 4009");
      close_unflushed(session, close_code::ping_timeout, "ping timeout");
    } else if (session.ping_sent_after_ms == 0 && silent >= interval) {
      ++counters_.pings_sent;
      session.ping_sent_after_ms = static_cast<std::uint32_t>(std::min<std::int64_t>(silent, UINT32_MAX));
      enqueue(session, ping_frame_);
    }
  }
}

void GatewayCore::tick(std::int64_t now_ms) {
  ping_some(now_ms);
  for (const auto& dead : workers_.expire(now_ms, config_.worker_dead_ms)) {
    ++counters_.workers_lost;
    counters_.failover_detect_ms_last = static_cast<std::uint64_t>(now_ms - dead.last_heard_ms);
    log::warn("worker '", dead.routing_id, "' silent for ", now_ms - dead.last_heard_ms, " ms: declared dead");
    release_worker(dead.routing_id, true);
  }
  if (now_ms - last_heartbeat_ms_ >= config_.heartbeat_ms) {
    last_heartbeat_ms_ = now_ms;
    for (const auto& [id, w] : workers_.all()) send(id, proto::Heartbeat{});
  }
  // Idle events: IRIS Read() timeouts, repeated every idle period while the client is silent.
  // Most apps declare none: then there is no reason to walk every socket each tick.
  bool any_idle_timeout = false;
  for (const auto& [id, w] : workers_.all())
    for (const auto& app : w.apps) any_idle_timeout |= app.idle_timeout_ms != 0;
  if (!any_idle_timeout) return;
  table_.for_each([&](Session& session) {
    if (session.closed || session.worker.empty()) return;
    const proto::AppInfo* info = workers_.app_info(session.app.str());
    if (!info || info->idle_timeout_ms == 0) return;
    if (now_ms - session.last_activity_ms < static_cast<std::int64_t>(info->idle_timeout_ms)) return;
    session.last_activity_ms = now_ms;
    ++counters_.idle_events;
    send(session.worker.str(), proto::Idle{session.wsid()});
  });
}

}  // namespace sb::gateway
