// The gateway's state machine: sessions, their worker affinity, topics, and the pool protocol.
// Pure: no lws/zmq. The shell feeds it socket and pool events and carries out what it asks
// (wake a socket's writer, flush the per-worker outbox). Everything here is owned by the
// gateway's single loop thread.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "gateway/core/gateway_config.hpp"
#include "gateway/core/send_queue.hpp"
#include "gateway/core/worker_registry.hpp"
#include "proto/codec.hpp"

namespace sb::gateway {

struct Session {
  std::string wsid;
  std::string app;
  std::string worker;             // routing id of the worker serving it; "" once that worker is gone
  std::uint64_t next_seq = 1;     // sequence number of the next MESSAGE
  SendQueue queue;
  std::vector<std::string> topics;
  bool closing = false;           // close once the queue is flushed (END, dedicated worker lost)
  bool close_now = false;         // close without flushing (slow consumer)
  std::uint16_t close_code = 0;
  std::string close_reason;
  std::int64_t last_activity_ms = 0;  // for idle events
  // Owned by the shell (I/O state, never read by the core):
  void* transport = nullptr;      // struct lws*
  bool writer_woken = false;      // a WRITEABLE callback is already requested
  bool rx_binary = false;         // opcode of the message being reassembled
  std::string rx;                 // the message being reassembled
};

// What the shell does for the core.
class SocketDriver {
 public:
  virtual ~SocketDriver() = default;
  virtual void wake_writer(Session& session) = 0;  // ask for a WRITEABLE callback
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
  std::uint64_t messages_in = 0;           // client messages forwarded to workers
  std::uint64_t messages_no_worker = 0;    // client messages with no worker to take them (dropped)
  std::uint64_t frames_queued = 0;         // frames put on socket queues
  std::uint64_t bytes_queued = 0;
  std::uint64_t slow_consumer_closes = 0;  // frames refused because a queue was full
  std::uint64_t gone_sent = 0;
  std::uint64_t pool_messages_in = 0;
  std::uint64_t pool_decode_errors = 0;
  std::uint64_t pool_unexpected = 0;       // well-formed but wrong direction / unknown worker
  std::uint64_t workers_registered = 0;
  std::uint64_t workers_lost = 0;
  std::uint64_t sockets_lost_with_worker = 0;
  std::uint64_t idle_events = 0;
};

class GatewayCore {
 public:
  GatewayCore(GatewayConfig config, std::uint64_t epoch, SocketDriver& driver);

  const GatewayConfig& config() const { return config_; }
  std::uint64_t epoch() const { return epoch_; }
  const Counters& counters() const { return counters_; }
  std::size_t session_count() const { return sessions_.size(); }
  std::size_t live_workers() const { return workers_.size(); }
  // known: some worker has declared the app since this gateway started (else 404);
  // available: a live, non-draining worker serves it now (else 503).
  enum class AppState { unknown, unavailable, available };
  AppState app_state(const std::string& app);

  // --- socket side ---
  // A new WebSocket for an app. nullptr when no live worker serves the app (counted).
  Session* open_session(OpenParams params, std::int64_t now_ms);
  void client_message(Session& session, bool binary, std::string payload, std::int64_t now_ms);
  // The socket is gone (either side closed it). Frees the session.
  void session_closed(Session& session, std::uint16_t code, std::string_view reason);

  // What the shell should do on WRITEABLE.
  enum class Output { none, data, close };
  // Appends coalesced frames to `buffer` (data), or says to close with session.close_code.
  Output next_output(Session& session, std::string& buffer);

  // --- pool side ---
  void pool_message(const std::string& routing_id, std::string_view body, std::int64_t now_ms);
  // Heartbeats, worker expiry, idle events. Call every heartbeat interval or more often.
  void tick(std::int64_t now_ms);
  // Bodies to send per worker routing id, in order; the shell sends and clears it each loop turn.
  std::unordered_map<std::string, std::vector<std::string>>& outbox() { return outbox_; }
  bool outbox_empty() const { return outbox_pending_ == 0; }
  void outbox_flushed() { outbox_pending_ = 0; }
  // The shell could not deliver to this worker (unroutable): treat it as gone.
  void worker_unreachable(const std::string& routing_id);
  // Gateway shutdown: every socket gets `code` after its queued frames.
  void close_all(std::uint16_t code, const std::string& reason);

  Session* find(std::string_view wsid);

 private:
  void send(const std::string& routing_id, const proto::Envelope& envelope);
  void enqueue(Session& session, const Frame& frame);
  void handle(const std::string& routing_id, proto::Envelope&& envelope, std::int64_t now_ms);
  void on_write(const std::string& from, proto::Write& write);
  void on_publish(proto::Publish& publish);
  void subscribe(Session& session, const std::string& topic);
  void unsubscribe(Session& session, const std::string& topic);
  void gone(const std::string& routing_id, const std::string& wsid);
  void lose_worker(const std::string& routing_id);
  void close_soon(Session& session, std::uint16_t code, std::string reason);

  GatewayConfig config_;
  std::uint64_t epoch_;
  SocketDriver& driver_;
  std::uint64_t next_counter_ = 1;
  std::int64_t last_heartbeat_ms_ = 0;
  WorkerRegistry workers_;
  std::unordered_set<std::string> known_apps_;
  std::unordered_map<std::string, std::unique_ptr<Session>> sessions_;  // by WSID
  std::unordered_map<std::string, std::vector<Session*>> topics_;        // topic -> subscribers
  std::unordered_map<std::string, std::vector<std::string>> outbox_;
  std::size_t outbox_pending_ = 0;
  proto::DecodeLimits limits_;
  Counters counters_;
};

}  // namespace sb::gateway
