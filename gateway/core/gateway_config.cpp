#include "gateway/core/gateway_config.hpp"

#include "common/log.hpp"
#include "common/wsid.hpp"

namespace sb::gateway {
namespace po = boost::program_options;

ParseOutcome<GatewayConfig> parse_gateway_options(const std::vector<std::string>& args, const Environment& env) {
  GatewayConfig c;
  po::options_description options("Gateway");
  options.add_options()
      ("listen", po::value(&c.listen)->default_value(c.listen), "HTTP/WebSocket address host:port")
      ("pool", po::value<std::vector<std::string>>()->default_value(c.pool, join_list(c.pool)),
       "ZeroMQ endpoints to bind for workers, tcp://HOST:PORT or ipc://PATH (repeatable, or comma-separated)")
      ("pool-server", po::value(&c.pool_server)->default_value(c.pool_server),
       "zmtp: the gateway's loop speaks ZeroMQ's wire protocol itself; libzmq: a libzmq ROUTER")
      ("gateway-id", po::value(&c.gateway_id), "id put in every WSID ([A-Za-z0-9_-], 1-32); default gw-<port>")
      ("reuse-port", po::value(&c.reuse_port)->default_value(c.reuse_port)->implicit_value(true),
       "share --listen with other gateway processes (SO_REUSEPORT); each needs its own --gateway-id and --pool")
      ("io-uring", po::value(&c.io_uring)->default_value(c.io_uring)->implicit_value(true),
       "batch each loop turn's socket writes into one io_uring submission (false: one send per socket)")
      ("max-message-bytes", po::value(&c.max_message_bytes)->default_value(c.max_message_bytes),
       "largest client message; larger ones are closed with 1009")
      ("max-queue-bytes", po::value(&c.max_queue_bytes)->default_value(c.max_queue_bytes),
       "per-socket send backlog before the socket is closed with 4008")
      ("socket-send-buffer-bytes", po::value(&c.socket_send_buffer_bytes)->default_value(c.socket_send_buffer_bytes),
       "SO_SNDBUF per WebSocket (4096-16777216; the kernel doubles it); bounds a stalled reader's kernel memory; 0 = autotuning")
      ("rx-buffer-bytes", po::value(&c.rx_buffer_bytes)->default_value(c.rx_buffer_bytes),
       "per-socket receive buffer (125-65536): small keeps idle sockets cheap, large cuts read calls")
      ("max-sockets", po::value(&c.max_sockets)->default_value(c.max_sockets), "WebSockets held at once")
      ("max-pending-handshakes", po::value(&c.max_pending_handshakes)->default_value(c.max_pending_handshakes),
       "HTTP requests parsed at once (~5 KiB each); more wait for a slot; 0 = no bound")
      ("heartbeat-ms", po::value(&c.heartbeat_ms)->default_value(c.heartbeat_ms), "pool heartbeat interval")
      ("ping-interval-ms", po::value(&c.ping_interval_ms)->default_value(c.ping_interval_ms),
       "ping sockets silent this long; close them (4009) if the ping stays unanswered as long; 0 = never")
      ("worker-dead-ms", po::value(&c.worker_dead_ms)->default_value(c.worker_dead_ms),
       "a worker silent this long is dead")
      ("max-pool-message-bytes", po::value(&c.max_pool_message_bytes)->default_value(c.max_pool_message_bytes),
       "largest pool message accepted from a worker")
      ("pool-hwm", po::value(&c.pool_hwm)->default_value(c.pool_hwm), "ZeroMQ high-water mark per worker")
      ("pool-handshake-timeout-ms", po::value(&c.pool_handshake_timeout_ms)->default_value(c.pool_handshake_timeout_ms),
       "a worker's pool connection must finish its ZMTP handshake within this (ms)")
      ("max-socket-writes-per-turn", po::value(&c.max_socket_writes_per_turn)->default_value(c.max_socket_writes_per_turn),
       "sockets written per loop turn, the rest in order in the next turns (input is read between); 0 = no bound")
      ("pool-drain-batch", po::value(&c.pool_drain_batch)->default_value(c.pool_drain_batch),
       "pool messages handled per loop turn before the sockets get their turn")
      ("log-level", po::value(&c.log_level)->default_value(c.log_level), "debug, info, warn or error");

  auto raw = parse_layers("switchboard-gateway",
                          "Terminates browser WebSockets and multiplexes them over a ZeroMQ pool to workers.",
                          options, args, env);
  ParseOutcome<GatewayConfig> out;
  if (raw.stop) {
    out.exit_code = raw.exit_code;
    out.message = raw.message;
    return out;
  }
  auto fail = [&](const std::string& why) {
    out.exit_code = 2;
    out.message = "switchboard-gateway: " + why + " (see --help)\n";
    return out;
  };
  auto listen = parse_host_port(c.listen);
  if (!listen) return fail("--listen must be host:port, got '" + c.listen + "'");
  c.pool = split_list(raw.values["pool"].as<std::vector<std::string>>());
  if (c.pool.empty()) return fail("--pool: at least one endpoint is needed");
  for (std::size_t i = 0; i < c.pool.size(); ++i) {
    const auto& endpoint = c.pool[i];
    bool tcp = endpoint.rfind("tcp://", 0) == 0, ipc = endpoint.rfind("ipc://", 0) == 0;
    if ((!tcp && !ipc) || endpoint.size() == 6)
      return fail("--pool '" + endpoint + "': expected tcp://HOST:PORT or ipc://PATH");
    for (std::size_t j = 0; j < i; ++j)
      if (c.pool[j] == endpoint) return fail("--pool '" + endpoint + "' given twice");
  }
  if (c.reuse_port && c.gateway_id.empty())
    return fail("--reuse-port needs --gateway-id: gateways sharing a port must not share an id");
  if (c.gateway_id.empty()) c.gateway_id = "gw-" + std::to_string(listen->port);
  if (!valid_gateway_id(c.gateway_id)) return fail("--gateway-id must be 1-32 of [A-Za-z0-9_-], got '" + c.gateway_id + "'");
  if (c.max_message_bytes < 125 || c.max_message_bytes > (64u << 20))
    return fail("--max-message-bytes must be between 125 and 67108864");
  if (c.max_queue_bytes < c.max_message_bytes) return fail("--max-queue-bytes must be at least --max-message-bytes");
  if (c.socket_send_buffer_bytes != 0 && (c.socket_send_buffer_bytes < 4096 || c.socket_send_buffer_bytes > (16u << 20)))
    return fail("--socket-send-buffer-bytes must be 0 or between 4096 and 16777216");
  if (c.rx_buffer_bytes < 125 || c.rx_buffer_bytes > 65536) return fail("--rx-buffer-bytes must be between 125 and 65536");
  if (c.max_sockets == 0) return fail("--max-sockets must be positive");
  if (c.max_pending_handshakes > 65535) return fail("--max-pending-handshakes must be at most 65535");
  if (c.heartbeat_ms < 10) return fail("--heartbeat-ms must be at least 10");
  if (c.ping_interval_ms != 0 && c.ping_interval_ms < 100) return fail("--ping-interval-ms must be 0 or at least 100");
  if (c.worker_dead_ms < 2 * c.heartbeat_ms) return fail("--worker-dead-ms must be at least twice --heartbeat-ms");
  if (c.pool_server != "zmtp" && c.pool_server != "libzmq")
    return fail("--pool-server must be zmtp or libzmq, got '" + c.pool_server + "'");
  if (c.pool_hwm <= 0) return fail("--pool-hwm must be positive");
  if (c.pool_handshake_timeout_ms < 10) return fail("--pool-handshake-timeout-ms must be at least 10");
  if (c.pool_drain_batch == 0) return fail("--pool-drain-batch must be positive");
  log::Level level;
  if (!log::parse_level(c.log_level, level)) return fail("--log-level must be debug, info, warn or error");
  out.config = c;
  return out;
}

}  // namespace sb::gateway
