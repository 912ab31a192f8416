#include "backend/runtime/dispatcher.hpp"

#include <algorithm>
#include <exception>
#include <type_traits>
#include <utility>

#include "common/close_codes.hpp"
#include "common/log.hpp"
#include "common/wsid.hpp"

namespace sb::backend {
namespace {

std::string query_key(std::size_t gateway, const Wsid& wsid) { return std::to_string(gateway) + '\n' + wsid; }

long long millis(std::chrono::steady_clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

Dispatcher::Dispatcher(DispatcherSettings settings, std::vector<App*> apps, std::vector<std::string> gateway_names)
    : settings_(std::move(settings)), apps_(std::move(apps)) {
  for (App* app : apps_) {
    auto info = app->info();
    apps_by_name_[info.name] = app;
    app_infos_.push_back(std::move(info));
  }
  gateways_.resize(gateway_names.size());
  for (std::size_t i = 0; i < gateway_names.size(); ++i) gateways_[i].name = std::move(gateway_names[i]);
}

// ---------------------------------------------------------------- shell side

void Dispatcher::start(SteadyTime now) {
  now_ = now;
  for (auto& gateway : gateways_) {
    gateway.welcomed = false;
    gateway.registering = true;
    gateway.next_hello = now;
    gateway.last_heard = now;
    gateway.last_sent = now;
  }
  tick(now);
}

void Dispatcher::receive(std::size_t index, std::string_view body, SteadyTime now) {
  check_stall(now);
  now_ = now;
  auto& gateway = gateways_.at(index);
  gateway.last_heard = now;  // any traffic counts, even a body we cannot read
  ++counters_.bodies_received;
  auto decoded = proto::decode(body, settings_.decode_limits);
  if (!decoded.ok()) {
    ++counters_.decode_errors;
    log::warn("undecodable body from ", gateway.name, " (", body.size(), " bytes): ", decoded.error());
    return;
  }
  if (gateway.fenced) {
    auto* welcome = std::get_if<proto::Welcome>(&decoded.envelope());
    if (!welcome) {
      if (gateway.fenced_bodies.size() >= settings_.max_fenced_bodies) {
        if ((counters_.fenced_overflow++ & 1023) == 0)
          log::error("holding too many events from ", gateway.name, " after a stall: dropping some");
        return;
      }
      gateway.fenced_bodies.emplace_back(body);
      return;
    }
    end_fence(index, *welcome);
  }
  handle(index, decoded.envelope());
  run_deferred();
}

void Dispatcher::check_stall(SteadyTime now) {
  bool stalled = last_turn_ != SteadyTime{} && now - last_turn_ >= settings_.gateway_dead;
  if (stalled) {
    ++counters_.stalls;
    now_ = now;
    log::warn("this worker was stopped for ", millis(now - last_turn_),
              " ms: holding each gateway's events until it says whether it still knows us");
    for (std::size_t i = 0; i < gateways_.size(); ++i) {
      auto& gateway = gateways_[i];
      if (!gateway.welcomed || gateway.lost || gateway.fenced) continue;
      gateway.fenced = true;
      send_hello(i);  // its WELCOME answers "do you still know me?"
    }
  }
  last_turn_ = now;
}

void Dispatcher::end_fence(std::size_t index, const proto::Welcome& welcome) {
  auto& gateway = gateways_[index];
  gateway.fenced = false;
  std::deque<std::string> held;
  held.swap(gateway.fenced_bodies);
  bool same_instance = welcome.gateway_id == gateway.id && welcome.epoch == gateway.epoch;
  if (same_instance && !welcome.registered) {
    // It declared us dead while we were stopped and re-sent all of that to other workers.
    counters_.fenced_discarded += held.size();
    ++counters_.forgotten;
    log::warn("gateway ", gateway.id, " had declared this worker dead: ", held.size(),
              " held events were handled elsewhere");
    hand_off(gateway.id);
    return;
  }
  // It still knows us (or restarted, and its WELCOME purges the old epoch): the held events
  // are ours, and they came before this WELCOME.
  counters_.fenced_replayed += held.size();
  for (const auto& body : held) {
    auto decoded = proto::decode(body, settings_.decode_limits);
    if (!decoded.ok()) continue;  // decoded fine when it was held
    handle(index, decoded.envelope());
    run_deferred();
  }
}

void Dispatcher::tick(SteadyTime now) {
  check_stall(now);
  now_ = now;
  for (std::size_t i = 0; i < gateways_.size(); ++i) {
    auto& gateway = gateways_[i];
    if (gateway.welcomed && now - gateway.last_heard >= settings_.gateway_dead) {
      gateway.welcomed = false;
      gateway.registering = true;
      gateway.next_hello = now;
      ++counters_.gateways_lost;
      log::warn("gateway ", gateway.id, " epoch ", to_base36(gateway.epoch), " at ", gateway.name, " silent for ",
                millis(now - gateway.last_heard), " ms: marked dead, saying HELLO again");
      if (gateway.bye_sent && !gateway.released) {
        gateway.released = true;  // no BYE will come from a dead gateway
        log::warn("draining: gateway ", gateway.id, " died before answering our BYE");
      }
    }
    if (!gateway.lost && !gateway.id.empty() && now - gateway.last_heard >= settings_.gateway_lease) {
      auto id = gateway.id;
      lose_gateway(id, "silent past the gateway lease");
    }
    if (gateway.registering && !draining_) {
      if (now >= gateway.next_hello) send_hello(i);
    } else if (gateway.welcomed && now - gateway.last_sent >= settings_.heartbeat && gateway.outbox.empty()) {
      enqueue(i, proto::Heartbeat{});
      ++counters_.heartbeats_sent;
    }
  }
  expire_queries(now);
  run_deferred();
}

SteadyTime Dispatcher::next_deadline() const {
  if (!deferred_.empty()) return now_;
  SteadyTime next = SteadyTime::max();
  for (const auto& gateway : gateways_) {
    if (!gateway.outbox.empty() || !gateway.acks.empty()) return now_;
    // Mirrors tick(): every deadline here is one tick() acts on, or the loop would spin.
    bool hello_due = gateway.registering && !draining_;
    if (hello_due) next = std::min(next, gateway.next_hello);
    if (gateway.welcomed) {
      if (!hello_due) next = std::min(next, gateway.last_sent + settings_.heartbeat);
      next = std::min(next, gateway.last_heard + settings_.gateway_dead);
    }
    if (!gateway.lost && !gateway.id.empty()) next = std::min(next, gateway.last_heard + settings_.gateway_lease);
  }
  if (!queries_.empty()) next = std::min(next, queries_.begin()->second.deadline);
  return next;
}

void Dispatcher::flush(SteadyTime now, const Sink& sink) {
  now_ = now;
  run_deferred();
  for (App* app : apps_) guarded("on_batch_end", {}, [&] { app->on_batch_end(*this); });
  for (std::size_t i = 0; i < gateways_.size(); ++i) {
    auto& gateway = gateways_[i];
    for (const auto& [wsid, seq] : gateway.acks) {
      proto::encode_into(proto::Ack{wsid, seq}, gateway.outbox.emplace_back());
      ++counters_.acks_sent;
    }
    gateway.acks.clear();
    gateway.ack_index.clear();
    gateway.drop_logged = false;
    if (gateway.outbox.empty()) continue;
    counters_.bodies_flushed += gateway.outbox.size();
    gateway.last_sent = now;
    std::vector<std::string> bodies;
    bodies.swap(gateway.outbox);
    gateway.hellos_in_flush = std::exchange(gateway.hellos_queued, 0);
    sink(i, bodies);
    gateways_[i].hellos_in_flush = 0;
  }
}

void Dispatcher::start_drain(SteadyTime now) {
  if (draining_) return;
  now_ = now;
  draining_ = true;
  std::size_t asked = 0;
  for (std::size_t i = 0; i < gateways_.size(); ++i) {
    auto& gateway = gateways_[i];
    if (gateway.welcomed && !gateway.registering) {
      enqueue(i, proto::Bye{});
      gateway.bye_sent = true;
      gateway.released = false;
      ++counters_.byes_sent;
      ++asked;
    }
  }
  log::info("draining: asked ", asked, " gateways to move our ", open_sockets(), " sockets to other workers");
}

bool Dispatcher::drained() const {
  if (!draining_) return false;
  return std::all_of(gateways_.begin(), gateways_.end(),
                     [](const Gateway& g) { return !g.bye_sent || g.released; });
}

void Dispatcher::batch_undelivered(std::size_t index, SteadyTime now) {
  auto& gateway = gateways_.at(index);
  if (gateway.hellos_in_flush == 0) return;
  // Those HELLOs never left: no WELCOME will answer them.
  gateway.answers_expected -= std::min(gateway.answers_expected, gateway.hellos_in_flush);
  gateway.hellos_in_flush = 0;
  if (!gateway.registering) return;
  gateway.hello_retry = std::min<std::chrono::milliseconds>(
      settings_.heartbeat, gateway.hello_retry.count() == 0 ? std::chrono::milliseconds(10) : gateway.hello_retry * 2);
  gateway.next_hello = std::min(gateway.next_hello, now + gateway.hello_retry);
}

std::size_t Dispatcher::open_sockets() const {
  return static_cast<std::size_t>(
      std::count_if(sockets_.begin(), sockets_.end(), [](const auto& entry) { return entry.second.app != nullptr; }));
}

std::optional<std::uint64_t> Dispatcher::last_seq(const Wsid& wsid) const {
  auto it = sockets_.find(wsid);
  if (it == sockets_.end()) return std::nullopt;
  return it->second.last_seq;
}

// ---------------------------------------------------------------- incoming

void Dispatcher::handle(std::size_t gateway, proto::Envelope& envelope) {
  std::visit(
      [&](auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, proto::Welcome>) on_welcome(gateway, m);
        else if constexpr (std::is_same_v<T, proto::Heartbeat>) {
          // liveness only; last_heard is already updated
        } else if constexpr (std::is_same_v<T, proto::Bye>) on_bye(gateway);
        else if constexpr (std::is_same_v<T, proto::Open>) {
          // OPEN is event 0 of its WSID: ACK it (after on_open's commands, which flush first) so
          // the gateway stops keeping it for a replacement worker.
          Wsid wsid = m.wsid;
          bool resume = m.resume;
          on_open(gateway, m);
          if (!resume) queue_ack(gateway, wsid, 0);
        }
        else if constexpr (std::is_same_v<T, proto::Message>) on_message(gateway, m);
        else if constexpr (std::is_same_v<T, proto::Close>) on_close(gateway, m);
        else if constexpr (std::is_same_v<T, proto::Idle>) on_idle(gateway, m);
        else if constexpr (std::is_same_v<T, proto::Gone>) on_gone(m.wsid);
        else if constexpr (std::is_same_v<T, proto::Status>) on_status(gateway, m);
        else {
          ++counters_.unexpected_kinds;
          log::warn("unexpected ", proto::kind_name(proto::kind_of(envelope)), " from ", gateways_[gateway].name);
        }
      },
      envelope);
}

void Dispatcher::on_welcome(std::size_t index, const proto::Welcome& welcome) {
  auto& gateway = gateways_[index];
  if (welcome.version != proto::protocol_version) {
    ++counters_.version_mismatches;
    log::error("gateway at ", gateway.name, " speaks protocol ", welcome.version, ", we speak ",
               proto::protocol_version, ": ignoring its WELCOME");
    return;
  }
  if (!valid_gateway_id(welcome.gateway_id)) {
    ++counters_.unexpected_kinds;
    log::error("gateway at ", gateway.name, " sent an invalid gateway id: ignoring its WELCOME");
    return;
  }
  // An answer to one of our HELLOs, or the gateway asking who we are?
  bool answer = gateway.answers_expected > 0 && now_ <= gateway.answers_until;
  if (answer) --gateway.answers_expected;
  bool same_id = !gateway.id.empty() && gateway.id == welcome.gateway_id;
  bool same_epoch = same_id && gateway.epoch == welcome.epoch;

  if (!gateway.id.empty() && !same_id) {
    // Another gateway now runs at this endpoint: the old one and its sockets are gone for good.
    auto old_id = gateway.id;
    if (!gateway.lost) lose_gateway(old_id, "replaced by another gateway at its endpoint");
    auto route = routes_.find(old_id);
    if (route != routes_.end() && route->second == index) routes_.erase(route);
  }
  auto existing = routes_.find(welcome.gateway_id);
  if (existing != routes_.end() && existing->second != index)
    log::error("gateways at ", gateways_[existing->second].name, " and ", gateway.name, " both call themselves ",
               welcome.gateway_id, ": routing to ", gateway.name);
  bool restarted = same_id && !same_epoch;
  bool forgotten = same_epoch && !answer && !gateway.lost;
  bool was_welcomed = gateway.welcomed;
  bool was_lost = gateway.lost;
  gateway.id = welcome.gateway_id;
  gateway.epoch = welcome.epoch;
  gateway.welcomed = true;
  gateway.lost = false;
  gateway.hello_retry = std::chrono::milliseconds(0);
  routes_[gateway.id] = index;
  ++counters_.welcomes;
  if (!was_welcomed || restarted || was_lost)
    log::info("welcomed by gateway ", gateway.id, " epoch ", to_base36(gateway.epoch), " at ", gateway.name,
              restarted ? " (restarted: purging its previous epoch)" : "",
              was_lost ? " (back after its lease ran out)" : "");
  if (welcome.heartbeat_ms != 0 && welcome.heartbeat_ms != settings_.heartbeat.count())
    log::debug("gateway ", gateway.id, " heartbeats every ", welcome.heartbeat_ms, " ms, we every ",
               settings_.heartbeat.count(), " ms");
  // Sockets of any other epoch of this gateway are closed for good: their CLOSE never comes.
  purge_epoch(gateway.id, gateway.epoch);
  if (forgotten) {
    ++counters_.forgotten;
    hand_off(gateway.id);
  }
  if (answer) {
    gateway.registering = false;
    if (draining_ && !gateway.bye_sent) {
      // Registered just as we started draining: it may give us sockets, so ask it to move them.
      enqueue(index, proto::Bye{});
      gateway.bye_sent = true;
      gateway.released = false;
      ++counters_.byes_sent;
    }
  } else if (draining_) {
    // It does not know us, so it holds nothing of ours: nothing to wait for.
    gateway.registering = false;
    if (gateway.bye_sent) gateway.released = true;
  } else {
    log::info("gateway ", gateway.id, " at ", gateway.name, " does not know this worker: HELLO again");
    gateway.registering = true;
    send_hello(index);
  }
  auto id = gateway.id;  // listeners may not keep references into gateways_
  auto epoch = gateway.epoch;
  for (auto& listener : welcome_listeners_) guarded("welcome listener", id, [&] { listener(*this, id, epoch); });
}

void Dispatcher::on_bye(std::size_t index) {
  auto& gateway = gateways_[index];
  if (!gateway.bye_sent) {
    ++counters_.unexpected_byes;
    log::warn("BYE from gateway ", gateway.id, " at ", gateway.name, " although we are not draining: ignored");
    return;
  }
  if (gateway.released) return;
  gateway.released = true;
  ++counters_.byes_received;
  log::info("draining: gateway ", gateway.id, " released us");
}

void Dispatcher::send_hello(std::size_t index) {
  auto& gateway = gateways_[index];
  if (enqueue(index, proto::Hello{proto::protocol_version, settings_.worker_id, app_infos_})) {
    ++gateway.hellos_queued;
    ++gateway.answers_expected;
    // A live gateway answers in milliseconds; a stalled one answers late, and then in a burst.
    gateway.answers_until = now_ + settings_.gateway_dead;
  }
  ++counters_.hellos_sent;
  gateway.next_hello = now_ + settings_.heartbeat;
}

std::size_t Dispatcher::purge(const std::string& gateway_id, std::optional<std::uint64_t> keep_epoch,
                              const char* why) {
  auto doomed = [&](const std::string& id, std::uint64_t epoch) {
    return id == gateway_id && (!keep_epoch || epoch != *keep_epoch);
  };
  std::vector<std::pair<Wsid, App*>> stale;
  for (auto it = sockets_.begin(); it != sockets_.end();) {
    if (doomed(it->second.gateway_id, it->second.epoch)) {
      remember_closed(it->first, it->second.last_seq + 1);
      if (it->second.app) stale.emplace_back(it->first, it->second.app);
      it = sockets_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = handed_off_.begin(); it != handed_off_.end();) {
    if (doomed(it->second.gateway_id, it->second.epoch)) it = handed_off_.erase(it);
    else ++it;
  }
  for (auto it = queries_.begin(); it != queries_.end();) {
    auto parts = parse_wsid(it->second.wsid);
    if (parts && doomed(parts->gateway_id, parts->epoch)) {
      auto& ids = queries_by_key_[query_key(it->second.gateway, it->second.wsid)];
      ids.erase(std::remove(ids.begin(), ids.end(), it->first), ids.end());
      if (ids.empty()) queries_by_key_.erase(query_key(it->second.gateway, it->second.wsid));
      defer({it->second.wsid, std::move(it->second.done)});
      it = queries_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [wsid, app] : stale) {
    ++counters_.closes;
    guarded("on_close", wsid, [&] { app->on_close(*this, wsid, close_code::going_away, why); });
  }
  return stale.size();
}

void Dispatcher::purge_epoch(const std::string& gateway_id, std::uint64_t live_epoch) {
  auto count = purge(gateway_id, live_epoch, "gateway restarted");
  counters_.purged_stale += count;
  if (count) log::info("purged ", count, " sockets of an old epoch of gateway ", gateway_id);
}

void Dispatcher::lose_gateway(const std::string& gateway_id, const char* why) {
  for (auto& gateway : gateways_)
    if (gateway.id == gateway_id) gateway.lost = true;
  ++counters_.gateways_expired;
  auto count = purge(gateway_id, std::nullopt, "gateway lost");
  counters_.purged_lost += count;
  log::warn("gateway ", gateway_id, " given up (", why, "): ", count, " of its sockets closed here");
  for (auto& listener : lost_listeners_) guarded("gateway-lost listener", gateway_id, [&] { listener(*this, gateway_id); });
}

void Dispatcher::hand_off(const std::string& gateway_id) {
  std::size_t count = 0;
  for (auto it = sockets_.begin(); it != sockets_.end();) {
    if (it->second.gateway_id != gateway_id) {
      ++it;
      continue;
    }
    handed_off_.insert_or_assign(it->first, it->second);
    handed_off_order_.push_back(it->first);
    it = sockets_.erase(it);
    ++count;
  }
  counters_.handed_off += count;
  while (handed_off_.size() > settings_.remembered_handoffs && !handed_off_order_.empty()) {
    handed_off_.erase(handed_off_order_.front());
    handed_off_order_.pop_front();
  }
  // Entries revived or resumed since leave stale names behind: compact now and then.
  if (handed_off_order_.size() > 2 * handed_off_.size() + 1024) {
    std::deque<Wsid> live;
    for (auto& wsid : handed_off_order_)
      if (handed_off_.count(wsid)) live.push_back(std::move(wsid));
    handed_off_order_.swap(live);
  }
  log::warn("gateway ", gateway_id, " forgot this worker (declared it dead): ", count,
            " sockets were moved to other workers; dropped here without on_close");
}

Dispatcher::Socket* Dispatcher::revive(std::size_t gateway, const Wsid& wsid) {
  auto it = handed_off_.find(wsid);
  if (it == handed_off_.end()) return nullptr;
  // Its events still come here, so the gateway did not move it after all (a WELCOME we took
  // for "forgotten" answered an old HELLO): keep serving it.
  ++counters_.revived;
  log::warn("events of ", wsid, " still come here after it was handed off: keeping it");
  auto socket = std::move(it->second);
  handed_off_.erase(it);
  return &sockets_.insert_or_assign(wsid, std::move(socket)).first->second;
}

void Dispatcher::on_open(std::size_t gateway, proto::Open& open) {
  if (open.resume) return on_resume(gateway, open);
  if (sockets_.count(open.wsid) || closed_.count(open.wsid)) {
    ++counters_.duplicate_opens;
    return;
  }
  auto parts = parse_wsid(open.wsid);
  if (!parts) {
    ++counters_.bad_wsids;
    log::warn("OPEN with a malformed WSID from ", gateways_[gateway].name);
    return;
  }
  if (gateways_[gateway].welcomed && parts->gateway_id != gateways_[gateway].id)
    log::warn("OPEN of ", open.wsid, " arrived from gateway ", gateways_[gateway].id, ": routing by the WSID");
  ++counters_.opens;
  Socket socket;
  socket.gateway_id = parts->gateway_id;
  socket.epoch = parts->epoch;
  auto app = apps_by_name_.find(open.app);
  if (app == apps_by_name_.end()) {
    ++counters_.unknown_apps;
    ++counters_.refused;
    sockets_.emplace(open.wsid, socket);
    log::warn("OPEN of ", open.wsid, " for app '", open.app, "' which this worker does not serve");
    end(open.wsid, close_code::unknown_app, "unknown app");
    return;
  }
  // Recorded before on_open so commands it issues see the socket; app set only if accepted.
  sockets_.emplace(open.wsid, socket);
  OpenRequest request{open.wsid,  std::move(open.app),        std::move(open.path),
                      std::move(open.query), std::move(open.headers), std::move(open.session_id),
                      std::move(open.remote_address)};
  OpenDecision decision;
  bool ok = guarded("on_open", request.wsid, [&] { decision = app->second->on_open(*this, request); });
  auto it = sockets_.find(request.wsid);
  if (it == sockets_.end()) return;  // cannot happen: only CLOSE/epoch purge erase
  if (!ok) {
    // Counted as accepted so the app's on_close can undo whatever on_open did before throwing.
    it->second.app = app->second;
    fail_socket(request.wsid);
    return;
  }
  if (!decision.accept) {
    ++counters_.refused;
    auto code = close_code::sendable(decision.code) ? decision.code : close_code::policy_violation;
    log::debug("app ", request.app, " refused ", request.wsid, ": ", decision.code, " ", decision.reason);
    end(request.wsid, code, decision.reason);
    return;
  }
  it->second.app = app->second;
}

void Dispatcher::on_resume(std::size_t gateway, proto::Open& open) {
  auto parts = parse_wsid(open.wsid);
  if (!parts) {
    ++counters_.bad_wsids;
    log::warn("OPEN (resume) with a malformed WSID from ", gateways_[gateway].name);
    return;
  }
  if (closed_.count(open.wsid)) {
    // on_close already ran here; only our ACK of the CLOSE got lost. The CLOSE that follows is
    // a duplicate and is ACKed again.
    ++counters_.duplicate_opens;
    log::debug("OPEN (resume) of ", open.wsid, " which already closed here");
    return;
  }
  handed_off_.erase(open.wsid);
  ++counters_.resumes;
  auto found = apps_by_name_.find(open.app);
  App* app = found == apps_by_name_.end() ? nullptr : found->second;
  if (!app) {
    // The gateway only moves sockets to workers that declared the app, so this is a bug or a
    // misconfiguration. Leave the socket alone (no END): its events are ACKed and dropped.
    ++counters_.resume_unknown_apps;
    log::error("OPEN (resume) of ", open.wsid, " for app '", open.app, "' which this worker does not serve");
  }
  auto [it, fresh] = sockets_.try_emplace(open.wsid);
  if (!fresh) log::debug("OPEN (resume) of ", open.wsid, " which this worker already holds: continuing");
  it->second.app = app;
  it->second.gateway_id = parts->gateway_id;
  it->second.epoch = parts->epoch;
  it->second.last_seq = open.acked_seq;  // later events are the ones nobody acknowledged
  if (!app) return;
  OpenRequest request{open.wsid,  std::move(open.app),        std::move(open.path),
                      std::move(open.query), std::move(open.headers), std::move(open.session_id),
                      std::move(open.remote_address)};
  if (!guarded("on_resume", request.wsid, [&] { app->on_resume(*this, request, open.acked_seq); }))
    fail_socket(request.wsid);
}

void Dispatcher::on_message(std::size_t gateway, const proto::Message& message) {
  auto it = sockets_.find(message.wsid);
  Socket* socket = it != sockets_.end() ? &it->second : revive(gateway, message.wsid);
  if (!socket) {
    if (closed_.count(message.wsid)) {
      ++counters_.late_messages;
    } else {
      ++counters_.unknown_wsids;
      log::warn("MESSAGE for ", message.wsid, " which was never opened here (seq ", message.seq, ")");
    }
    queue_ack(gateway, message.wsid, message.seq);  // nothing will ever process it: let the gateway forget it
    return;
  }
  if (message.seq <= socket->last_seq) {
    ++counters_.duplicate_messages;
    queue_ack(gateway, message.wsid, socket->last_seq);  // the gateway missed our ACK: repeat it
    return;
  }
  socket->last_seq = message.seq;
  queue_ack(gateway, message.wsid, message.seq);
  if (!socket->app) {
    ++counters_.late_messages;
    return;
  }
  ++counters_.messages;
  App* app = socket->app;  // the call below may not keep `socket` valid
  if (!guarded("on_message", message.wsid,
               [&] { app->on_message(*this, message.wsid, message.payload, message.binary, message.seq); }))
    fail_socket(message.wsid);
}

void Dispatcher::on_close(std::size_t gateway, const proto::Close& close) {
  auto it = sockets_.find(close.wsid);
  Socket* socket = it != sockets_.end() ? &it->second : revive(gateway, close.wsid);
  if (!socket) {
    auto closed = closed_.find(close.wsid);
    if (closed != closed_.end()) {
      ++counters_.duplicate_closes;
      // Our ACK was lost or came too late: repeat it, or the gateway keeps re-sending.
      if (closed->second != 0) queue_ack(gateway, close.wsid, closed->second);
      return;
    }
    // Opened by a worker that is gone (or before we started): the apps may still hold state.
    // Not ACKed: we do not know its seq, and a wrong one would skip events after a take-over.
    ++counters_.unknown_closes;
    on_gone(close.wsid);
    remember_closed(close.wsid, 0);
    return;
  }
  App* app = socket->app;
  auto close_seq = socket->last_seq + 1;
  sockets_.erase(close.wsid);
  remember_closed(close.wsid, close_seq);
  if (app) {
    ++counters_.closes;
    guarded("on_close", close.wsid, [&] { app->on_close(*this, close.wsid, close.code, close.reason); });
  }
  // After on_close: a worker dying before this point leaves the CLOSE to its successor.
  queue_ack(gateway, close.wsid, close_seq);
  ++counters_.close_acks;
}

void Dispatcher::on_idle(std::size_t gateway, const proto::Idle& idle) {
  auto it = sockets_.find(idle.wsid);
  Socket* socket = it != sockets_.end() ? &it->second : revive(gateway, idle.wsid);
  if (!socket || !socket->app) {
    ++counters_.unknown_wsids;
    return;
  }
  ++counters_.idles;
  App* app = socket->app;
  if (!guarded("on_idle", idle.wsid, [&] { app->on_idle(*this, idle.wsid); })) fail_socket(idle.wsid);
}

void Dispatcher::on_gone(const Wsid& wsid) {
  ++counters_.gones_received;
  for (App* app : apps_) guarded("on_gone", wsid, [&] { app->on_gone(*this, wsid); });
}

void Dispatcher::on_status(std::size_t gateway, const proto::Status& status) {
  ++counters_.statuses;
  auto key = query_key(gateway, status.wsid);
  auto ids = queries_by_key_.find(key);
  if (ids == queries_by_key_.end()) {
    ++counters_.unmatched_statuses;
    return;
  }
  auto id = ids->second.front();
  ids->second.pop_front();
  if (ids->second.empty()) queries_by_key_.erase(ids);
  auto query = queries_.find(id);
  if (query == queries_.end()) return;
  auto done = std::move(query->second.done);
  queries_.erase(query);
  guarded("query callback", status.wsid, [&] { done(status.open); });
}

// ---------------------------------------------------------------- Pool

std::optional<std::size_t> Dispatcher::route(const Wsid& wsid) {
  auto parts = parse_wsid(wsid);
  if (!parts) {
    ++counters_.bad_wsids;
    defer({wsid, {}});
    return std::nullopt;
  }
  // A gateway that is silent but within its lease still gets commands: if it is only stalled,
  // ZeroMQ holds them (bounded by the high-water mark) until it reads again.
  auto route = routes_.find(parts->gateway_id);
  if (route == routes_.end() || gateways_[route->second].lost || gateways_[route->second].epoch != parts->epoch) {
    ++counters_.unroutable;
    defer({wsid, {}});
    return std::nullopt;
  }
  return route->second;
}

void Dispatcher::write(const Wsid& wsid, std::string_view data, bool binary, std::string_view dedupe_key) {
  if (auto gateway = route(wsid))
    enqueue(*gateway, proto::Write{{wsid}, binary, std::string(data), std::string(dedupe_key)});
}

void Dispatcher::write(const std::vector<Wsid>& wsids, std::string_view data, bool binary,
                       std::string_view dedupe_key) {
  // One WRITE per gateway, targets in the caller's order.
  std::vector<std::vector<std::string>> targets(gateways_.size());
  for (const auto& wsid : wsids)
    if (auto gateway = route(wsid)) targets[*gateway].push_back(wsid);
  for (std::size_t i = 0; i < targets.size(); ++i)
    if (!targets[i].empty())
      enqueue(i, proto::Write{std::move(targets[i]), binary, std::string(data), std::string(dedupe_key)});
}

void Dispatcher::end(const Wsid& wsid, std::uint16_t code, std::string_view reason) {
  if (auto gateway = route(wsid)) enqueue(*gateway, proto::End{wsid, code, std::string(reason)});
}

void Dispatcher::subscribe(const Wsid& wsid, std::string_view topic) {
  if (auto gateway = route(wsid)) enqueue(*gateway, proto::Subscribe{wsid, std::string(topic)});
}

void Dispatcher::unsubscribe(const Wsid& wsid, std::string_view topic) {
  if (auto gateway = route(wsid)) enqueue(*gateway, proto::Unsubscribe{wsid, std::string(topic)});
}

void Dispatcher::publish(std::string_view topic, std::string_view data, bool binary, const Wsid& except,
                         std::string_view dedupe_key, std::string_view order_key, std::uint64_t order_version) {
  proto::Publish message{std::string(topic), binary,          std::string(data),
                         except,             std::string(dedupe_key), std::string(order_key),
                         order_version};
  // Every gateway we know and have not given up, as route() does for single sockets.
  for (std::size_t i = 0; i < gateways_.size(); ++i)
    if (!gateways_[i].id.empty() && !gateways_[i].lost) enqueue(i, message);
}

void Dispatcher::query(const Wsid& wsid, std::function<void(bool open)> done) {
  if (!done) return;
  auto gateway = route(wsid);
  if (!gateway) {
    // route() deferred an on_gone; the caller also gets its answer, later.
    defer({wsid, std::move(done)});
    return;
  }
  if (queries_.size() >= settings_.max_pending_queries) {
    ++counters_.queries_refused;
    defer({wsid, std::move(done)});
    return;
  }
  auto id = next_query_++;
  queries_.emplace(id, PendingQuery{*gateway, wsid, now_ + settings_.query_timeout, std::move(done)});
  queries_by_key_[query_key(*gateway, wsid)].push_back(id);
  enqueue(*gateway, proto::Query{wsid});
}

// ---------------------------------------------------------------- helpers

bool Dispatcher::enqueue(std::size_t index, const proto::Envelope& envelope) {
  auto& gateway = gateways_[index];
  if (gateway.outbox.size() >= settings_.max_outbox_bodies) {
    ++counters_.outbox_drops;
    if (!gateway.drop_logged) {
      gateway.drop_logged = true;
      log::warn("outbox to ", gateway.name, " full (", gateway.outbox.size(), " bodies): dropping ",
                proto::kind_name(proto::kind_of(envelope)));
    }
    return false;
  }
  proto::encode_into(envelope, gateway.outbox.emplace_back());
  return true;
}

void Dispatcher::queue_ack(std::size_t index, const Wsid& wsid, std::uint64_t seq) {
  auto& gateway = gateways_[index];
  auto found = gateway.ack_index.find(wsid);
  if (found != gateway.ack_index.end()) {
    auto& entry = gateway.acks[found->second].second;
    entry = std::max(entry, seq);
    return;
  }
  gateway.ack_index.emplace(wsid, gateway.acks.size());
  gateway.acks.emplace_back(wsid, seq);
}

void Dispatcher::defer(Deferred item) {
  if (deferred_.size() >= settings_.max_deferred) {
    ++counters_.deferred_drops;
    return;
  }
  deferred_.push_back(std::move(item));
}

void Dispatcher::run_deferred() {
  // Only what is queued now: work queued by these calls waits for the next round, so an app
  // that keeps writing to a gone socket cannot trap the loop here.
  auto count = deferred_.size();
  for (std::size_t i = 0; i < count && !deferred_.empty(); ++i) {
    auto item = std::move(deferred_.front());
    deferred_.pop_front();
    if (item.answer) {
      guarded("query callback", item.wsid, [&] { item.answer(false); });
    } else {
      for (App* app : apps_) guarded("on_gone", item.wsid, [&] { app->on_gone(*this, item.wsid); });
    }
  }
}

void Dispatcher::expire_queries(SteadyTime now) {
  while (!queries_.empty() && queries_.begin()->second.deadline <= now) {
    auto node = queries_.extract(queries_.begin());
    auto& query = node.mapped();
    auto key = query_key(query.gateway, query.wsid);
    auto ids = queries_by_key_.find(key);
    if (ids != queries_by_key_.end()) {
      auto& list = ids->second;
      list.erase(std::remove(list.begin(), list.end(), node.key()), list.end());
      if (list.empty()) queries_by_key_.erase(ids);
    }
    ++counters_.query_timeouts;
    log::warn("QUERY for ", query.wsid, " unanswered after ", settings_.query_timeout.count(),
              " ms: answering 'not open'");
    guarded("query callback", query.wsid, [&] { query.done(false); });
  }
}

void Dispatcher::remember_closed(const Wsid& wsid, std::uint64_t close_seq) {
  if (settings_.remembered_closes == 0) return;
  if (!closed_.insert_or_assign(wsid, close_seq).second) return;
  closed_order_.push_back(wsid);
  while (closed_order_.size() > settings_.remembered_closes) {
    closed_.erase(closed_order_.front());
    closed_order_.pop_front();
  }
}

template <typename Call>
bool Dispatcher::guarded(const char* what, const Wsid& wsid, Call&& call) {
  try {
    call();
    return true;
  } catch (const std::exception& e) {
    ++counters_.app_errors;
    log::error("app ", what, " failed for ", wsid, ": ", e.what());
  } catch (...) {
    ++counters_.app_errors;
    log::error("app ", what, " failed for ", wsid, ": unknown exception");
  }
  return false;
}

void Dispatcher::fail_socket(const Wsid& wsid) { end(wsid, close_code::internal_error, "internal error"); }

}  // namespace sb::backend
