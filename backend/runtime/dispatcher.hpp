// The worker's pure core: link state with every gateway (HELLO until WELCOME, heartbeats,
// dead gateways, leases, drain), socket bookkeeping (accepted/refused/resumed WSIDs, sequence
// numbers, ACKs) and the Pool the apps call. No ZeroMQ here: the shell feeds it decoded-or-not
// bodies with the time, runs tick(), and sends what flush() hands out, one multipart message
// per gateway.
//
// WELCOME rules (issue 3). A gateway answers every HELLO with WELCOME, and also sends WELCOME,
// unasked, to a worker it does not know (it declared it dead, or it restarted). So:
// - an unasked WELCOME of the epoch we know: the gateway forgot us and moved our sockets to other
//   workers; we drop them WITHOUT on_close (their new worker gets it) and say HELLO again;
// - a WELCOME of a new epoch: the gateway restarted; the old epoch's sockets are closed for good
//   (on_close with 1001, welcome listeners purge the store); HELLO again if it was unasked;
// - a gateway silent past the lease: its sockets are closed for good the same way and the
//   gateway-lost listeners run.
// MESSAGEs are ACKed (one ACK per WSID per flush, highest seq); a CLOSE is ACKed with
// seq = last MESSAGE seq + 1 after on_close ran.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backend/app.hpp"
#include "proto/codec.hpp"

namespace sb::backend {

using SteadyTime = std::chrono::steady_clock::time_point;

struct DispatcherSettings {
  std::string worker_id;
  std::chrono::milliseconds heartbeat{1000};       // HELLO repeat and HEARTBEAT period
  std::chrono::milliseconds gateway_dead{3000};    // silence after which a gateway is dead
  // Silence after which a dead gateway's sockets are given up (on_close, lost listeners).
  // Until then commands to it are still sent: a stalled gateway gets them when it resumes.
  std::chrono::milliseconds gateway_lease{10000};
  std::chrono::milliseconds query_timeout{10000};  // unanswered QUERY -> "not open"
  std::size_t max_outbox_bodies = 100000;          // per gateway per flush; beyond: dropped
  std::size_t max_pending_queries = 10000;         // beyond: answered "not open" at once
  std::size_t max_deferred = 100000;               // pending on_gone / query answers
  std::size_t remembered_closes = 4096;            // closed WSIDs kept to spot duplicate CLOSEs
  std::size_t remembered_handoffs = 65536;         // sockets dropped when a gateway forgot us
  std::size_t max_fenced_bodies = 100000;          // per gateway, held after a stall; beyond: dropped
  proto::DecodeLimits decode_limits;
};

// Everything the dispatcher saw go wrong (or right), for logs and tests.
struct DispatcherCounters {
  std::uint64_t bodies_received = 0;
  std::uint64_t decode_errors = 0;
  std::uint64_t unexpected_kinds = 0;     // e.g. a WRITE sent to a worker
  std::uint64_t version_mismatches = 0;   // WELCOME with another protocol version
  std::uint64_t welcomes = 0;
  std::uint64_t gateways_lost = 0;
  std::uint64_t hellos_sent = 0;
  std::uint64_t heartbeats_sent = 0;
  std::uint64_t opens = 0;
  std::uint64_t refused = 0;
  std::uint64_t unknown_apps = 0;         // OPEN naming an app we do not serve
  std::uint64_t duplicate_opens = 0;
  std::uint64_t messages = 0;             // handed to an app
  std::uint64_t duplicate_messages = 0;   // seq <= last seen
  std::uint64_t late_messages = 0;        // for a refused or closed WSID
  std::uint64_t unknown_wsids = 0;        // MESSAGE/IDLE for a WSID we never saw opened
  std::uint64_t closes = 0;               // on_close calls
  std::uint64_t duplicate_closes = 0;
  std::uint64_t unknown_closes = 0;       // CLOSE for a WSID never opened here -> on_gone
  std::uint64_t idles = 0;
  std::uint64_t purged_stale = 0;         // sockets of a gateway's previous epoch
  std::uint64_t purged_lost = 0;          // sockets of a gateway dead past the lease
  std::uint64_t gateways_expired = 0;     // leases run out
  std::uint64_t resumes = 0;              // OPEN resume: sockets taken over from another worker
  std::uint64_t resume_unknown_apps = 0;  // OPEN resume for an app we do not serve (left alone)
  std::uint64_t forgotten = 0;            // unsolicited WELCOME of the same epoch: gateway forgot us
  std::uint64_t stalls = 0;               // this worker's loop stopped for a dead interval (SIGSTOP)
  std::uint64_t fenced_replayed = 0;      // held events handled after the gateway said it knew us
  std::uint64_t fenced_discarded = 0;     // held events dropped: the gateway had moved our sockets
  std::uint64_t fenced_overflow = 0;      // held events over max_fenced_bodies (lost, logged)
  std::uint64_t handed_off = 0;           // sockets dropped (no on_close) because of that
  std::uint64_t revived = 0;              // a dropped socket's events still came here: kept
  std::uint64_t close_acks = 0;           // CLOSEs acknowledged (seq = last MESSAGE seq + 1)
  std::uint64_t byes_sent = 0;
  std::uint64_t byes_received = 0;
  std::uint64_t unexpected_byes = 0;      // BYE from a gateway we did not say BYE to
  std::uint64_t app_errors = 0;           // exceptions caught at the app boundary
  std::uint64_t gones_received = 0;
  std::uint64_t unroutable = 0;           // command for an unknown gateway, old epoch or lost gateway -> on_gone
  std::uint64_t bad_wsids = 0;
  std::uint64_t statuses = 0;
  std::uint64_t unmatched_statuses = 0;
  std::uint64_t query_timeouts = 0;
  std::uint64_t queries_refused = 0;      // over max_pending_queries
  std::uint64_t outbox_drops = 0;
  std::uint64_t deferred_drops = 0;
  std::uint64_t bodies_flushed = 0;
  std::uint64_t acks_sent = 0;
};

class Dispatcher final : public Pool {
 public:
  // `apps` must outlive the dispatcher; `gateway_names` (endpoints) index the gateways.
  Dispatcher(DispatcherSettings settings, std::vector<App*> apps, std::vector<std::string> gateway_names);

  // Called after every WELCOME (every gateway, every time) with the gateway's id and epoch,
  // e.g. ChatApp::purge_stale_epochs. Runs outside any app call.
  using WelcomeListener = std::function<void(Pool& pool, const std::string& gateway_id, std::uint64_t epoch)>;
  void add_welcome_listener(WelcomeListener listener) { welcome_listeners_.push_back(std::move(listener)); }
  // Called when a gateway is given up: silent past the lease, or its endpoint now answers with
  // another gateway id. Every socket of that gateway id is gone (on_close already ran for the
  // ones this worker held); e.g. ChatApp::purge_gateway removes the rest from the store.
  using GatewayLostListener = std::function<void(Pool& pool, const std::string& gateway_id)>;
  void add_gateway_lost_listener(GatewayLostListener listener) { lost_listeners_.push_back(std::move(listener)); }

  // --- driven by the shell ---
  // Queues the first HELLO to every gateway.
  void start(SteadyTime now);
  // One pool body from gateway `gateway` (any traffic counts as liveness).
  void receive(std::size_t gateway, std::string_view body, SteadyTime now);
  // Timers: HELLO repeats, heartbeats, dead gateways, leases, query timeouts; deferred work.
  void tick(SteadyTime now);
  // When tick() next has something to do (may be in the past).
  SteadyTime next_deadline() const;
  // Hands each gateway's queued bodies (commands, then ACKs) to `sink`, oldest first.
  using Sink = std::function<void(std::size_t gateway, std::vector<std::string>& bodies)>;
  void flush(SteadyTime now, const Sink& sink);
  // Drain (SIGTERM): BYE to every welcomed gateway ("send me nothing new, move my sockets"), no
  // more HELLOs. Events keep being processed and ACKed; drained() says when all answered BYE.
  void start_drain(SteadyTime now);
  bool draining() const { return draining_; }
  // Every gateway we said BYE to has answered BYE, forgot us or died: nothing more will come.
  bool drained() const;
  // The shell could not hand the last batch flushed to `gateway` to ZeroMQ (no connection yet):
  // a HELLO in it is retried soon, backing off from 10 ms to the heartbeat period, instead of a
  // whole heartbeat later. Call it from within the flush sink.
  void batch_undelivered(std::size_t gateway, SteadyTime now);

  // --- introspection ---
  const DispatcherCounters& counters() const { return counters_; }
  std::size_t gateway_count() const { return gateways_.size(); }
  bool welcomed(std::size_t gateway) const { return gateways_.at(gateway).welcomed; }
  // Sent HELLO and waiting for the WELCOME (at start, after a dead link, after being forgotten).
  bool registering(std::size_t gateway) const { return gateways_.at(gateway).registering; }
  // Silent past the lease: its sockets were given up and commands to it go to on_gone.
  bool lost(std::size_t gateway) const { return gateways_.at(gateway).lost; }
  // It answered our BYE.
  bool released(std::size_t gateway) const { return gateways_.at(gateway).released; }
  // Id and epoch from the gateway's last WELCOME ("" / 0 before the first).
  const std::string& gateway_id(std::size_t gateway) const { return gateways_.at(gateway).id; }
  std::uint64_t gateway_epoch(std::size_t gateway) const { return gateways_.at(gateway).epoch; }
  std::size_t open_sockets() const;  // accepted and not yet closed
  // Highest MESSAGE seq seen for an open WSID (acked_seq right after a resume), or nullopt.
  std::optional<std::uint64_t> last_seq(const Wsid& wsid) const;
  std::size_t pending_queries() const { return queries_.size(); }

  // --- Pool (called by apps) ---
  using Pool::write;
  void write(const Wsid& wsid, std::string_view data, bool binary = false, std::string_view dedupe_key = {}) override;
  void write(const std::vector<Wsid>& wsids, std::string_view data, bool binary = false,
             std::string_view dedupe_key = {}) override;
  void end(const Wsid& wsid, std::uint16_t code, std::string_view reason) override;
  void subscribe(const Wsid& wsid, std::string_view topic) override;
  void unsubscribe(const Wsid& wsid, std::string_view topic) override;
  void publish(std::string_view topic, std::string_view data, bool binary = false, const Wsid& except = {},
               std::string_view dedupe_key = {}, std::string_view order_key = {},
               std::uint64_t order_version = 0) override;
  void query(const Wsid& wsid, std::function<void(bool open)> done) override;

 private:
  struct Gateway {
    std::string name;  // endpoint, for logs
    std::string id;    // from the last WELCOME
    std::uint64_t epoch = 0;
    bool welcomed = false;     // link up: heard within gateway_dead since its WELCOME
    bool registering = true;   // HELLO repeats until a WELCOME answers
    bool lost = false;         // silent past the lease; its sockets were given up
    bool bye_sent = false;     // draining: we said BYE
    bool released = false;     // ... and it answered (or forgot us, or died)
    SteadyTime next_hello{};   // while registering
    std::chrono::milliseconds hello_retry{0};  // backoff after undelivered HELLOs; 0 = none
    // HELLOs not yet answered, to tell an answer from an unsolicited WELCOME ("who are you?").
    std::uint32_t answers_expected = 0;
    SteadyTime answers_until{};
    std::uint32_t hellos_in_flush = 0;  // HELLOs in the batch being handed to the sink
    std::uint32_t hellos_queued = 0;    // HELLOs in the outbox
    SteadyTime last_heard{};
    SteadyTime last_sent{};
    std::vector<std::string> outbox;
    std::vector<std::pair<Wsid, std::uint64_t>> acks;  // one per WSID per flush
    std::unordered_map<Wsid, std::size_t> ack_index;
    bool drop_logged = false;
    // After this worker stalled for a dead interval the gateway may have moved our sockets
    // elsewhere; its bodies are held, in order, until a WELCOME says whether it still knows us.
    bool fenced = false;
    std::deque<std::string> fenced_bodies;
  };
  struct Socket {
    App* app = nullptr;  // nullptr: refused (or an app we do not serve), waiting for its CLOSE
    std::string gateway_id;
    std::uint64_t epoch = 0;
    std::uint64_t last_seq = 0;
  };
  struct PendingQuery {
    std::size_t gateway = 0;
    Wsid wsid;
    SteadyTime deadline{};
    std::function<void(bool)> done;
  };
  // Work that must not run inside the app call that caused it.
  struct Deferred {
    Wsid wsid;
    std::function<void(bool)> answer;  // set: answer a query with false; unset: on_gone
  };

  void handle(std::size_t gateway, proto::Envelope& envelope);
  void on_welcome(std::size_t gateway, const proto::Welcome& welcome);
  void on_bye(std::size_t gateway);
  void on_open(std::size_t gateway, proto::Open& open);
  void on_resume(std::size_t gateway, proto::Open& open);
  void on_message(std::size_t gateway, const proto::Message& message);
  void on_close(std::size_t gateway, const proto::Close& close);
  void on_idle(std::size_t gateway, const proto::Idle& idle);
  void on_gone(const Wsid& wsid);
  void on_status(std::size_t gateway, const proto::Status& status);

  // Gateway index for a command naming `wsid` (its gateway id and epoch as last welcomed, lease
  // not run out; the link may be down meanwhile), or nullopt (then on_gone is deferred).
  std::optional<std::size_t> route(const Wsid& wsid);
  bool enqueue(std::size_t gateway, const proto::Envelope& envelope);  // false: outbox full (counted)
  void queue_ack(std::size_t gateway, const Wsid& wsid, std::uint64_t seq);
  void defer(Deferred item);
  void run_deferred();
  void expire_queries(SteadyTime now);
  void send_hello(std::size_t gateway);
  // Sockets of `gateway_id` whose epoch is not `keep_epoch` (all of them when nullopt) are
  // closed for good: on_close with 1001 and `why`; their pending queries answer "not open".
  std::size_t purge(const std::string& gateway_id, std::optional<std::uint64_t> keep_epoch, const char* why);
  void purge_epoch(const std::string& gateway_id, std::uint64_t live_epoch);
  // The gateway is given up (lease, or replaced by another id at its endpoint).
  void lose_gateway(const std::string& gateway_id, const char* why);
  // The gateway forgot us: its sockets were moved to other workers. Dropped without on_close.
  void hand_off(const std::string& gateway_id);
  // A gap of a dead interval between two turns of our loop: fence every live gateway.
  void check_stall(SteadyTime now);
  void end_fence(std::size_t gateway, const proto::Welcome& welcome);
  // A socket we dropped in hand_off() whose events still come here: the gateway did not move it.
  Socket* revive(std::size_t gateway, const Wsid& wsid);
  void remember_closed(const Wsid& wsid, std::uint64_t close_seq);
  // Runs an app callback; on an exception logs, counts and returns false.
  template <typename Call>
  bool guarded(const char* what, const Wsid& wsid, Call&& call);
  void fail_socket(const Wsid& wsid);  // END 1011 after an app error

  DispatcherSettings settings_;
  std::vector<App*> apps_;
  std::unordered_map<std::string, App*> apps_by_name_;
  std::vector<proto::AppInfo> app_infos_;
  std::vector<Gateway> gateways_;
  std::unordered_map<std::string, std::size_t> routes_;  // gateway id -> index
  std::unordered_map<Wsid, Socket> sockets_;
  // Recently closed -> the seq their CLOSE was ACKed with; bounded by closed_order_.
  std::unordered_map<Wsid, std::uint64_t> closed_;
  std::deque<Wsid> closed_order_;
  std::unordered_map<Wsid, Socket> handed_off_;  // bounded by handed_off_order_
  std::deque<Wsid> handed_off_order_;
  std::map<std::uint64_t, PendingQuery> queries_;  // by issue order = deadline order
  std::unordered_map<std::string, std::deque<std::uint64_t>> queries_by_key_;
  std::uint64_t next_query_ = 1;
  std::deque<Deferred> deferred_;
  std::vector<WelcomeListener> welcome_listeners_;
  std::vector<GatewayLostListener> lost_listeners_;
  bool draining_ = false;
  SteadyTime now_{};
  SteadyTime last_turn_{};  // last receive()/tick(), to notice that we were stopped
  DispatcherCounters counters_;
};

}  // namespace sb::backend
