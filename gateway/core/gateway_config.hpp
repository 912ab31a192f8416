// Every gateway setting and limit in one place, each with its default and why.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/options.hpp"

namespace sb::gateway {

struct GatewayConfig {
  std::string listen = "127.0.0.1:8080";         // loopback by default: exposing it is a deliberate choice
  // Endpoints the ZeroMQ ROUTER binds; workers connect to any one. tcp:// for workers anywhere;
  // ipc:// (a Unix socket) for workers on this host skips the TCP stack: S4 p50 140 -> 115 us.
  std::vector<std::string> pool = {"tcp://127.0.0.1:5555"};
  // How the pool is served. "zmtp": the gateway's own loop speaks ZMTP 3.1 (ZeroMQ's wire
  // protocol; workers see an ordinary ROUTER), so a message goes from the loop straight to the
  // kernel; "libzmq": a libzmq ROUTER, which relays every message through its I/O thread (two
  // more thread wake-ups per round trip).
  std::string pool_server = "zmtp";
  std::string gateway_id;                        // names this gateway in every WSID; default "gw-<port>"
  // Several gateway processes on one port (SO_REUSEPORT; the kernel spreads new connections):
  // past one process's ~19 000 sockets or one core. Each needs its own --gateway-id and --pool.
  bool reuse_port = false;
  std::size_t max_message_bytes = 64 * 1024;     // larger client messages: close 1009 (peers use 16-128 KiB)
  std::size_t max_queue_bytes = 1024 * 1024;     // per-socket send backlog before close 4008 (Centrifugo: 1 MB)
  std::size_t max_write_batch_bytes = 64 * 1024; // bytes coalesced into one lws_write
  // SO_SNDBUF of each WebSocket (the kernel doubles it). Without it Linux grows a socket's send
  // buffer up to tcp_wmem's max (4 MiB here), so a stalled reader could pin that much kernel
  // memory on top of max_queue_bytes and reach its 4008 only after ~5 MiB. 0 = the kernel's
  // autotuning.
  std::size_t socket_send_buffer_bytes = 128 * 1024;
  // One loop turn's socket writes go to the kernel in one io_uring submission (per 256
  // sockets) instead of one send() each; without io_uring (old kernel, seccomp) the gateway
  // falls back to send() and says so at start.
  bool io_uring = true;
  // Sockets written per loop turn; the rest keep their place in line for the next turns. When a
  // fan-out makes every socket due at once, one turn writing them all (1 000 loopback sends,
  // ~5 ms here) makes a message wait for the turn that reads it, then for all of the next one
  // after the worker's reply. Bounded turns read input and replies every ~0.3 ms, and each
  // socket is still written once per round. S2, ten rooms of 100 with interleaved senders at
  // 25 000 sends/s: p99 19-29 ms unbounded, 5-10 ms at 64. 0 = no bound.
  std::size_t max_socket_writes_per_turn = 64;
  // lws' per-socket receive buffer, which is also the most it reads from a socket at once.
  // Small keeps idle sockets cheap (a message arriving in pieces is reassembled); larger cuts
  // read calls for big or pipelined messages. At least 125: lws handles control frames (close,
  // ping) only whole inside it.
  std::size_t rx_buffer_bytes = 128;
  std::size_t max_sockets = 19000;               // fd limit is 20 000 per process; keep room for the rest
  // HTTP requests (upgrades) parsed at once, ~5 KiB each; more wait for a slot (lws' header
  // pool). Bounds a connect storm's memory; 0 = no bound (lws' default).
  std::size_t max_pending_handshakes = 256;
  std::uint32_t heartbeat_ms = 1000;             // pool heartbeat interval (Paranoid Pirate)
  // A socket silent this long gets a WebSocket ping (browsers answer by themselves); one that
  // leaves the ping unanswered for another interval is closed with 4009, so half-open TCP
  // connections do not pile up.
  // 0 = never ping. Centrifugo pings every 25 s, the ws README example every 30 s.
  std::uint32_t ping_interval_ms = 30000;
  std::uint32_t worker_dead_ms = 3000;           // 3 missed heartbeats = dead
  std::size_t max_pool_message_bytes = 16u << 20;  // ZMQ_MAXMSGSIZE: a rogue worker cannot make us allocate more
  int pool_hwm = 100000;                         // messages waiting to be sent per worker (libzmq: both ways)
  int pool_linger_ms = 200;                      // do not hang on exit with unsent pool messages
  // A worker's connection that has not finished its ZMTP handshake by then is dropped (libzmq's
  // ZMQ_HANDSHAKE_IVL default), so silent connections cannot pile up on the pool port.
  std::uint32_t pool_handshake_timeout_ms = 30000;
  std::size_t pool_drain_batch = 2048;           // pool messages handled per loop turn before yielding to sockets
  std::size_t max_unacked_bytes = 256 * 1024;    // per socket: client reads pause past this until workers ACK
  std::size_t max_unacked_events = 256;          // same, counted in events
  std::size_t max_closed_pending = 100000;       // closed sockets kept for a worker's on_close; oldest dropped
  std::size_t dedupe_window = 65536;             // dedupe keys remembered (a few seconds of room traffic)
  std::string log_level = "info";
};

ParseOutcome<GatewayConfig> parse_gateway_options(const std::vector<std::string>& args, const Environment& env);

}  // namespace sb::gateway
