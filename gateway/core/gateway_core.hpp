// The gateway's state machine: sessions, their worker affinity, topics, the pool protocol and
// failover. Pure: no lws/zmq. The shell feeds it socket and pool events and carries out what
// it asks (wake a socket's writer, pause its reading, flush the per-worker outbox). Everything
// here is owned by the gateway's single loop thread.
//
// Delivery to workers is at-least-once: every event (MESSAGE, CLOSE) is kept until the
// session's worker ACKs it. When that worker dies, drains or becomes unreachable, the session
// moves to another worker: OPEN{resume, acked_seq}, then the unacknowledged events in order.
#pragma once
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/wsid.hpp"
#include "gateway/core/gateway_config.hpp"
#include "gateway/core/interned.hpp"
#include "gateway/core/session.hpp"
#include "gateway/core/session_table.hpp"
#include "gateway/core/worker_registry.hpp"
#include "proto/codec.hpp"

namespace sb::gateway {

// What the shell does for the core.
class SocketDriver {
 public:
  virtual ~SocketDriver() = default;
  virtual void wake_writer(Session& session) = 0;               // ask for a WRITEABLE callback
  virtual void set_reading(Session& session, bool enabled) = 0;  // rx flow control
};

struct OpenParams {
  std::string app;
  std::string path;
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string session_id;
  std::string remote_address;
  void* transport = nullptr;
};

// Monotonic counters; every drop and refusal lands in one of these.
struct Counters {
  std::uint64_t sockets_opened = 0;
  std::uint64_t sockets_closed = 0;
  std::uint64_t refused_no_worker = 0;
  std::uint64_t messages_in = 0;            // client messages accepted for the workers
  std::uint64_t reads_paused = 0;           // sockets paused: unacknowledged window full
  std::uint64_t frames_queued = 0;          // frames put on socket queues
  std::uint64_t bytes_queued = 0;
  std::uint64_t slow_consumer_closes = 0;   // frames refused because a queue was full
  std::uint64_t gone_sent = 0;
  std::uint64_t pool_messages_in = 0;
  std::uint64_t pool_decode_errors = 0;
  std::uint64_t pool_unexpected = 0;        // well-formed but wrong direction or version
  std::uint64_t welcomes_unsolicited = 0;   // traffic from a worker we do not know: told to re-HELLO
  std::uint64_t workers_registered = 0;
  std::uint64_t workers_lost = 0;
  std::uint64_t workers_drained = 0;
  std::uint64_t failover_detect_ms_last = 0;  // last heard -> declared dead
  std::uint64_t sessions_moved = 0;         // take-overs sent
  std::uint64_t events_resent = 0;          // unacknowledged events sent again on a take-over
  std::uint64_t dedicated_closed = 0;       // dedicated sockets closed with 1012
  std::uint64_t acks = 0;
  std::uint64_t acks_ignored = 0;           // from a worker that no longer serves the socket
  std::uint64_t duplicates_suppressed = 0;  // WRITE/PUBLISH with a dedupe key seen before
  std::uint64_t stale_suppressed = 0;       // PUBLISH older than one already delivered (order_key)
  std::uint64_t orphan_closes_dropped = 0;  // closed sockets dropped before any worker took them
  std::uint64_t idle_events = 0;
  std::uint64_t pings_sent = 0;             // keep-alive pings to silent sockets
  std::uint64_t ping_timeouts = 0;          // sockets closed 4009: silent through two pings
};

class GatewayCore {
 public:
  GatewayCore(GatewayConfig config, std::uint64_t epoch, SocketDriver& driver);

  const GatewayConfig& config() const { return config_; }
  std::uint64_t epoch() const { return epoch_; }
  const Counters& counters() const { return counters_; }
  std::size_t session_count() const { return open_count_; }
  // Closed sockets whose CLOSE no worker has acknowledged yet.
  std::size_t closed_pending() const { return table_.size() - open_count_; }
  std::size_t live_workers() const { return workers_.size(); }
  // known: some worker has declared the app since this gateway started (else 404);
  // available: a live, non-draining worker serves it now (else 503).
  enum class AppState { unknown, unavailable, available };
  AppState app_state(const std::string& app);

  // --- socket side ---
  // A new WebSocket for an app. nullptr when no live worker serves the app (counted).
  Session* open_session(OpenParams params, std::int64_t now_ms);
  void client_message(Session& session, bool binary, std::string payload, std::int64_t now_ms);
  // The client sent something (any frame, a pong too): it is alive.
  void heard(Session& session, std::int64_t now_ms) {
    session.last_heard_ms = now_ms;
    session.ping_sent_after_ms = 0;
  }
  // The socket is gone (either side closed it). The session leaves the open set at once; its
  // CLOSE stays until a worker acknowledges it.
  void session_closed(Session& session, std::uint16_t code, std::string_view reason);

  // What the shell should do on WRITEABLE.
  enum class Output { none, data, close };
  // Appends coalesced frames to `buffer` (data), or says to close with session.close_code.
  Output next_output(Session& session, std::string& buffer);

  // --- pool side ---
  void pool_message(const std::string& routing_id, std::string_view body, std::int64_t now_ms);
  // Heartbeats, worker expiry, idle events, keep-alive pings. Call every heartbeat interval or
  // more often (pings are spread over the ticks of one ping interval).
  void tick(std::int64_t now_ms);
  // Bodies to send per worker routing id, in order; the shell sends and clears it each loop turn.
  std::unordered_map<std::string, std::vector<std::string>>& outbox() { return outbox_; }
  bool outbox_empty() const { return outbox_pending_ == 0; }
  void outbox_flushed() { outbox_pending_ = 0; }
  // The shell could not deliver to this worker (unroutable): treat it as gone.
  void worker_unreachable(const std::string& routing_id, std::int64_t now_ms);
  // Gateway shutdown: every socket gets `code` after its queued frames.
  void close_all(std::uint16_t code, const std::string& reason);

  Session* find(std::string_view wsid);
  // The counter of a WSID of this gateway and epoch; nullopt for any other string.
  std::optional<std::uint64_t> counter_of(std::string_view wsid) const;
  std::vector<Session*> open_sessions();

 private:
  void send(const std::string& routing_id, const proto::Envelope& envelope);
  void send_event(Session& session, proto::Envelope&& event, std::uint64_t seq);
  void enqueue(Session& session, const Frame& frame);
  void handle(const std::string& routing_id, proto::Envelope&& envelope, std::int64_t now_ms);
  void on_hello(const std::string& routing_id, proto::Hello& hello, std::int64_t now_ms);
  void on_write(const std::string& from, proto::Write& write);
  void on_publish(proto::Publish& publish);
  void on_ack(const std::string& from, const proto::Ack& ack);
  void on_bye(const std::string& from);
  bool first_delivery(const std::string& dedupe_key);
  void subscribe(Session& session, const std::string& topic);
  void unsubscribe(Session& session, const std::string& topic);
  void gone(const std::string& routing_id, const std::string& wsid);
  // Moves every session of a lost or draining worker; `dead` says it cannot answer any more.
  void release_worker(const std::string& routing_id, bool dead);
  // Gives a session without a worker to a live one: OPEN{resume} then its unacked events.
  bool take_over(Session& session);
  void take_over_waiting();
  void close_soon(Session& session, std::uint16_t code, std::string reason);
  // Closes without flushing the queue (slow consumer, ping timeout).
  void close_unflushed(Session& session, std::uint16_t code, std::string reason);
  void welcome_stranger(const std::string& routing_id, std::int64_t now_ms);
  void ping_some(std::int64_t now_ms);
  Session* find_any(std::string_view wsid);  // open or closed-pending
  Interned intern_worker(const std::string& routing_id);

  GatewayConfig config_;
  std::uint64_t epoch_;
  SocketDriver& driver_;
  std::int64_t last_heartbeat_ms_ = 0;
  WorkerRegistry workers_;
  std::string wsid_prefix_;                    // "<gateway-id>.<epoch>."
  std::unordered_set<std::string> known_apps_;  // sessions' Interned app names point here
  // Routing ids of registered workers; sessions' Interned worker ids point here. An id leaves
  // when its worker is declared dead (no session names it after release_worker).
  std::unordered_set<std::string> worker_ids_;
  SessionTable table_;          // open sockets, and closed ones until their CLOSE is acked
  std::size_t open_count_ = 0;
  std::deque<std::uint64_t> closed_order_;                              // oldest first, for the cap
  std::unordered_map<std::string, std::vector<Session*>> topics_;       // topic -> subscribers
  std::unordered_map<std::string, std::vector<std::string>> outbox_;
  std::size_t outbox_pending_ = 0;
  std::unordered_set<std::string> recent_keys_;  // dedupe keys delivered lately
  std::deque<std::string> recent_key_order_;
  std::unordered_map<std::string, std::uint64_t> latest_versions_;  // order_key -> highest delivered
  std::deque<std::string> latest_order_;                              // first-seen order, for the cap
  std::unordered_map<std::string, std::int64_t> strangers_welcomed_;  // routing id -> when
  proto::DecodeLimits limits_;
  Counters counters_;
  // Keep-alive: every table slot once, visited a slice per tick so that one pass takes one ping
  // interval (19 000 sockets: ~160 per 250 ms tick, never a burst of 19 000 writes).
  std::size_t ping_cursor_ = 0;  // next slot
  std::int64_t last_ping_tick_ms_ = 0;
  double ping_credit_ = 0;  // slots owed to the pass by ticks so far (fractional)
  Frame ping_frame_;
};

}  // namespace sb::gateway
