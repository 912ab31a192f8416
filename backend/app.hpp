// The app-server API: what a Switchboard app implements and what it may call.
// Mirrors IRIS %CSP.WebSocket (see README "IRIS mapping"):
//   OnPreServer -> on_open, Server/Read -> on_message (+ on_idle for a Read timeout),
//   (take-over by another worker, no IRIS equivalent) -> on_resume,
//   OnPostServer -> on_close, Write -> Pool::write, EndServer -> Pool::end,
//   OpenServer(WebSocketID) -> Pool::open_server, SharedConnection -> AppInfo::mode.
// All callbacks run on the worker's single loop thread; they must not block for long.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proto/link.hpp"

namespace sb::backend {

using Wsid = std::string;

struct OpenRequest {
  Wsid wsid;
  std::string app;
  std::string path;
  std::string query;  // raw, without '?'
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names
  std::string session_id;
  std::string remote_address;

  // Header value or "" when absent (name in lower case).
  std::string header(std::string_view name) const;
  // Percent-decoded query parameter, or `fallback` when absent or malformed.
  std::string param(std::string_view name, std::string_view fallback = "") const;
};

struct OpenDecision {
  bool accept = true;
  std::uint16_t code = 1008;  // close code when refused
  std::string reason;
  static OpenDecision accepted() { return {}; }
  static OpenDecision refused(std::uint16_t code, std::string reason) { return {false, code, std::move(reason)}; }
};

class Pool;

// A handle on one socket anywhere in the pool (IRIS OpenServer(WebSocketID)).
class ServerHandle {
 public:
  ServerHandle(Pool& pool, Wsid wsid) : pool_(pool), wsid_(std::move(wsid)) {}
  const Wsid& wsid() const { return wsid_; }
  void write(std::string_view data, bool binary = false, std::string_view dedupe_key = {});
  void end(std::uint16_t code = 1000, std::string_view reason = "");
  // Asks the gateway holding the socket; `done(open)` runs later on the loop thread.
  void is_open(std::function<void(bool open)> done);

 private:
  Pool& pool_;
  Wsid wsid_;
};

// The shared pool as an app sees it. Any method may name any WSID, including sockets
// another worker opened. Commands to one gateway keep their order. A command naming a
// socket that is no longer open comes back as App::on_gone(wsid).
//
// `dedupe_key` (write, publish): non-empty keys are delivered once by each gateway, which
// remembers recent keys; a repeat is dropped. An app that may process an event twice (after a
// worker failover events are re-sent) gives the output of that event a key derived from what it
// stored, e.g. chat uses "chat:<room>:<message id>".
class Pool {
 public:
  virtual ~Pool() = default;
  virtual void write(const Wsid& wsid, std::string_view data, bool binary = false,
                     std::string_view dedupe_key = {}) = 0;
  virtual void write(const std::vector<Wsid>& wsids, std::string_view data, bool binary = false,
                     std::string_view dedupe_key = {}) = 0;
  virtual void end(const Wsid& wsid, std::uint16_t code, std::string_view reason) = 0;
  // Topics are delivered by the gateways: one PUBLISH per gateway, framed once there.
  virtual void subscribe(const Wsid& wsid, std::string_view topic) = 0;
  virtual void unsubscribe(const Wsid& wsid, std::string_view topic) = 0;
  // order_key/order_version: for snapshots of one changing thing published by several workers
  // (a room's userlist): each gateway drops a snapshot older than one it already delivered.
  virtual void publish(std::string_view topic, std::string_view data, bool binary = false,
                       const Wsid& except = {}, std::string_view dedupe_key = {},
                       std::string_view order_key = {}, std::uint64_t order_version = 0) = 0;
  virtual void query(const Wsid& wsid, std::function<void(bool open)> done) = 0;

  ServerHandle open_server(const Wsid& wsid) { return ServerHandle(*this, wsid); }
};

class App {
 public:
  virtual ~App() = default;
  // Name (the gateway routes /<name> and the IRIS path to it), mode, idle timeout.
  virtual proto::AppInfo info() const = 0;
  // May refuse; a refused socket is closed with decision.code and gets no on_close.
  virtual OpenDecision on_open(Pool& pool, const OpenRequest& request) { return OpenDecision::accepted(); }
  virtual void on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary) = 0;
  // The same with the event's sequence number (1, 2, 3... per WSID). Delivery is at least once:
  // after a worker failover a message may be processed again, by this or another worker, with
  // the same seq. Apps with side effects override this one and deduplicate by (wsid, seq);
  // the default forwards to the 4-argument form.
  virtual void on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary, std::uint64_t seq) {
    on_message(pool, wsid, data, binary);
  }
  // This worker takes over a socket another worker accepted (it died or is draining): on_open
  // is NOT called again. `request` carries the WSID, app and query (path and headers may be
  // empty); events after `acked_seq` follow. For apps that keep local state per socket, or that
  // want to repair shared state (the first worker may have died inside on_open).
  virtual void on_resume(Pool& pool, const OpenRequest& request, std::uint64_t acked_seq) {}
  // Once per accepted WSID, on the worker that holds the socket when it closes (a socket taken
  // over gets it on the new worker). Also called, with 1001, when the socket's gateway
  // restarted (new epoch) or stayed dead past the gateway lease: that CLOSE never comes.
  virtual void on_close(Pool& pool, const Wsid& wsid, std::uint16_t code, std::string_view reason) {}
  // No message from the client for info().idle_timeout_ms.
  virtual void on_idle(Pool& pool, const Wsid& wsid) {}
  // A write/end/subscribe named a socket that is closed: drop what you keep about it.
  virtual void on_gone(Pool& pool, const Wsid& wsid) {}
  // After each loop turn's events, before anything they produced is sent: an app that
  // batches (one store commit per turn, one snapshot per changed room) finishes the batch here.
  virtual void on_batch_end(Pool& pool) {}
};

}  // namespace sb::backend
