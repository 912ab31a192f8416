// Every setting of switchboard-backend in one struct, each with its default and why.
// Parsed from command line > SWITCHBOARD_* environment > --config file by a pure function.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/options.hpp"

namespace sb::backend {

struct BackendConfig {
  // Gateways to serve; each gets its own DEALER. One local gateway is the quick-start setup.
  std::vector<std::string> gateways{"tcp://127.0.0.1:5555"};
  // Worker processes started by this invocation; one loop per process, so scale by count.
  int workers = 1;
  // The chat store; SQLite in WAL mode is shared safely by every worker on the host.
  std::string store = "sqlite:./var/switchboard.db";
  // Apps this worker declares in HELLO; all three by default so any route works out of the box.
  std::vector<std::string> apps{"chat", "echo", "broadcast"};
  // Routing id at every gateway; empty = "<hostname>-<pid>-<random4>", unique without setup.
  std::string worker_id;
  // HELLO repeat and HEARTBEAT period; matches the gateway's default so both sides agree.
  std::int64_t heartbeat_ms = 1000;
  // A gateway silent this long is dead (3 missed heartbeats, Paranoid Pirate); HELLO again.
  std::int64_t gateway_dead_ms = 3000;
  // A gateway silent this long is given up: its sockets get on_close and leave the store, so
  // no stale member stays online when a gateway dies for good. Long enough to ride out a restart.
  std::int64_t gateway_lease_ms = 10000;
  // Largest pool frame we accept (ZMQ_MAXMSGSIZE and decode limit): 64 KiB messages plus
  // headroom; stops a rogue peer from making us allocate without bound.
  std::int64_t max_pool_message_bytes = 16ll << 20;
  // ZeroMQ high-water marks (messages, not bytes): past them sends fail with EAGAIN (counted),
  // so a stuck gateway costs bounded memory instead of blocking the loop.
  std::int64_t send_hwm = 10000;
  std::int64_t recv_hwm = 10000;
  // Bodies queued per gateway within one loop iteration; beyond it commands are dropped (counted).
  std::int64_t max_outbox_bodies = 100000;
  // Pool messages read per gateway per iteration, so the outboxes flush and timers run.
  std::int64_t max_receive_batch = 256;
  // Unanswered QUERY callbacks are answered "not open" after this long (a lost gateway).
  std::int64_t query_timeout_ms = 10000;
  // Unanswered QUERYs kept at once; more are answered "not open" at once (counted).
  std::int64_t max_pending_queries = 10000;
  // zmq reconnect backoff, 1 s doubling to 32 s (Paranoid Pirate): a dead gateway costs a
  // connection attempt now and then, not a storm; a restarted one is re-joined on its own.
  std::int64_t reconnect_ms = 1000;
  std::int64_t reconnect_max_ms = 32000;
  // A pool connection not handshaken by then is dropped and tried again (libzmq's
  // ZMQ_HANDSHAKE_IVL default): a gateway that accepts but never answers cannot hold the link.
  std::int64_t handshake_timeout_ms = 30000;
  // Finite linger: shutdown may spend at most this long flushing (default zmq linger is forever).
  std::int64_t linger_ms = 500;
  // SIGTERM: BYE to the gateways, keep serving until each answers BYE (its sockets moved to
  // other workers) or this long has passed, then exit 0.
  std::int64_t drain_timeout_ms = 2000;
  // Supervisor: how long children get after SIGTERM before SIGKILL (longer than the drain).
  std::int64_t stop_grace_ms = 5000;
  // How a worker talks to the gateways. "zmtp": it speaks ZeroMQ's wire protocol (ZMTP 3.1) on
  // its own loop thread, so a message goes from the loop straight to the kernel; "libzmq": a
  // libzmq DEALER, which relays every message through its I/O thread (two more thread wake-ups
  // per round trip). inproc:// endpoints always use libzmq.
  std::string pool_client = "zmtp";
  // debug|info|warn|error.
  std::string log_level = "info";

  // "sqlite:PATH" -> PATH (validated by the parser, so never empty).
  std::string store_path() const;
};

ParseOutcome<BackendConfig> parse_backend_options(const std::vector<std::string>& args, const Environment& env);

// "<hostname>-<pid>-<random4>", restricted to characters valid in a worker id.
std::string generate_worker_id();
bool valid_worker_id(const std::string& id);

// Known app names, for validation and help.
const std::vector<std::string>& known_app_names();

}  // namespace sb::backend
