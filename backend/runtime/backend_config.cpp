#include "backend/runtime/backend_config.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "common/log.hpp"

namespace sb::backend {
namespace po = boost::program_options;

namespace {

struct Range {
  const char* name;
  std::int64_t BackendConfig::*field;
  std::int64_t min;
  std::int64_t max;
};

// Ranges keep obviously broken values (negative counts, zero periods) out of the runtime.
constexpr Range ranges[] = {
    {"heartbeat-ms", &BackendConfig::heartbeat_ms, 10, 600'000},
    {"gateway-dead-ms", &BackendConfig::gateway_dead_ms, 20, 3'600'000},
    {"max-pool-message-bytes", &BackendConfig::max_pool_message_bytes, 1024, 1ll << 30},
    {"send-hwm", &BackendConfig::send_hwm, 1, 10'000'000},
    {"recv-hwm", &BackendConfig::recv_hwm, 1, 10'000'000},
    {"max-outbox-bodies", &BackendConfig::max_outbox_bodies, 1, 10'000'000},
    {"max-receive-batch", &BackendConfig::max_receive_batch, 1, 1'000'000},
    {"query-timeout-ms", &BackendConfig::query_timeout_ms, 1, 3'600'000},
    {"max-pending-queries", &BackendConfig::max_pending_queries, 1, 10'000'000},
    {"reconnect-ms", &BackendConfig::reconnect_ms, 1, 600'000},
    {"reconnect-max-ms", &BackendConfig::reconnect_max_ms, 1, 600'000},
    {"linger-ms", &BackendConfig::linger_ms, 0, 600'000},
    {"stop-grace-ms", &BackendConfig::stop_grace_ms, 0, 600'000},
    {"gateway-lease-ms", &BackendConfig::gateway_lease_ms, 30, 86'400'000},
    {"drain-timeout-ms", &BackendConfig::drain_timeout_ms, 0, 600'000},
    {"handshake-timeout-ms", &BackendConfig::handshake_timeout_ms, 10, 600'000},
};

}  // namespace

const std::vector<std::string>& known_app_names() {
  static const std::vector<std::string> names{"chat", "echo", "broadcast"};
  return names;
}

std::string BackendConfig::store_path() const {
  static constexpr std::string_view prefix = "sqlite:";
  return store.rfind(prefix, 0) == 0 ? store.substr(prefix.size()) : std::string();
}

bool valid_worker_id(const std::string& id) {
  // It is a ZeroMQ routing id (<= 255 bytes, not starting with a zero byte) and appears in
  // logs; a conservative alphabet keeps both easy.
  if (id.empty() || id.size() > 200) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

std::string generate_worker_id() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof host, "worker");
  std::string clean;
  for (char c : std::string(host)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.';
    clean += ok ? c : '_';
  }
  if (clean.size() > 100) clean.resize(100);
  std::random_device device;
  std::uniform_int_distribution<int> digit(0, 35);
  static constexpr char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string random4;
  for (int i = 0; i < 4; ++i) random4 += digits[digit(device)];
  return clean + "-" + std::to_string(getpid()) + "-" + random4;
}

ParseOutcome<BackendConfig> parse_backend_options(const std::vector<std::string>& args, const Environment& env) {
  const BackendConfig defaults;
  po::options_description options("Backend worker");
  auto add_range = [&](const Range& range, const char* help) {
    options.add_options()(range.name, po::value<std::int64_t>()->default_value(defaults.*range.field), help);
  };
  options.add_options()(
      "gateway", po::value<std::vector<std::string>>()->default_value(defaults.gateways, join_list(defaults.gateways)),
      "gateway pool endpoint to connect to (repeatable, or comma-separated)")(
      "workers", po::value<int>()->default_value(defaults.workers), "worker processes to start")(
      "store", po::value<std::string>()->default_value(defaults.store), "chat store: sqlite:PATH")(
      "apps", po::value<std::vector<std::string>>()->default_value(defaults.apps, join_list(defaults.apps)),
      "apps to serve (comma-separated or repeatable): chat, echo, broadcast")(
      "worker-id", po::value<std::string>()->default_value(""),
      "routing id at the gateways (default <hostname>-<pid>-<random4>; with --workers N, <id>-1..<id>-N)")(
      "log-level", po::value<std::string>()->default_value(defaults.log_level), "debug, info, warn or error")(
      "pool-client", po::value<std::string>()->default_value(defaults.pool_client),
      "zmtp: speak ZeroMQ's wire protocol on the worker's loop (tcp://, ipc://); libzmq: a libzmq DEALER");
  add_range(ranges[0], "HELLO repeat and heartbeat period (ms)");
  add_range(ranges[1], "a gateway silent this long is dead and HELLO starts again (ms)");
  add_range(ranges[2], "largest pool frame accepted (bytes)");
  add_range(ranges[3], "ZeroMQ send high-water mark per gateway (messages)");
  add_range(ranges[4], "ZeroMQ receive high-water mark per gateway (messages)");
  add_range(ranges[5], "bodies queued per gateway per loop iteration before drops");
  add_range(ranges[6], "pool messages read per gateway per loop iteration");
  add_range(ranges[7], "unanswered QUERYs count as 'not open' after this long (ms)");
  add_range(ranges[8], "unanswered QUERYs kept at once");
  add_range(ranges[9], "first ZeroMQ reconnect delay (ms)");
  add_range(ranges[10], "largest ZeroMQ reconnect delay (ms)");
  add_range(ranges[11], "ZeroMQ linger at shutdown (ms)");
  add_range(ranges[12], "time children get after SIGTERM before SIGKILL (ms)");
  add_range(ranges[13], "a gateway silent this long is given up: its sockets are closed and leave the store (ms)");
  add_range(ranges[14], "SIGTERM: longest wait for the gateways to take our sockets before exiting (ms)");
  add_range(ranges[15], "a pool connection must finish its ZMTP handshake within this (ms)");

  ParseOutcome<BackendConfig> outcome;
  auto raw = parse_layers("switchboard-backend",
                          "Runs Switchboard apps (chat, echo, broadcast) for one or more gateways over ZeroMQ.",
                          options, args, env);
  if (raw.stop) {
    outcome.exit_code = raw.exit_code;
    outcome.message = raw.message;
    return outcome;
  }
  auto fail = [&](const std::string& text) {
    outcome.exit_code = 2;
    outcome.message = "switchboard-backend: " + text + " (see --help)\n";
    return outcome;
  };

  const auto& values = raw.values;
  BackendConfig config;
  config.gateways = split_list(values["gateway"].as<std::vector<std::string>>());
  config.workers = values["workers"].as<int>();
  config.store = values["store"].as<std::string>();
  config.apps = split_list(values["apps"].as<std::vector<std::string>>());
  config.worker_id = values["worker-id"].as<std::string>();
  config.log_level = values["log-level"].as<std::string>();
  config.pool_client = values["pool-client"].as<std::string>();
  for (const auto& range : ranges) config.*range.field = values[range.name].as<std::int64_t>();

  if (config.gateways.empty()) return fail("--gateway: at least one endpoint is needed");
  for (const auto& endpoint : config.gateways) {
    if (endpoint.empty()) return fail("--gateway: empty endpoint");
    if (endpoint.find("://") == std::string::npos)
      return fail("--gateway '" + endpoint + "': expected a ZeroMQ endpoint like tcp://127.0.0.1:5555");
  }
  for (std::size_t i = 0; i < config.gateways.size(); ++i)
    for (std::size_t j = i + 1; j < config.gateways.size(); ++j)
      if (config.gateways[i] == config.gateways[j]) return fail("--gateway '" + config.gateways[i] + "' given twice");
  if (config.pool_client != "zmtp" && config.pool_client != "libzmq")
    return fail("--pool-client must be zmtp or libzmq, got '" + config.pool_client + "'");
  if (config.workers < 1 || config.workers > 1024) return fail("--workers must be between 1 and 1024");
  if (config.store.rfind("sqlite:", 0) != 0) return fail("--store must look like sqlite:PATH, got '" + config.store + "'");
  if (config.store_path().empty()) return fail("--store sqlite: needs a path");
  if (config.apps.empty()) return fail("--apps: at least one app is needed");
  for (std::size_t i = 0; i < config.apps.size(); ++i) {
    const auto& app = config.apps[i];
    const auto& known = known_app_names();
    if (std::find(known.begin(), known.end(), app) == known.end())
      return fail("--apps: unknown app '" + app + "' (known: " + join_list(known, ", ") + ")");
    if (std::find(config.apps.begin(), config.apps.begin() + static_cast<std::ptrdiff_t>(i), app) !=
        config.apps.begin() + static_cast<std::ptrdiff_t>(i))
      return fail("--apps: '" + app + "' given twice");
  }
  if (!config.worker_id.empty() && !valid_worker_id(config.worker_id))
    return fail("--worker-id must be 1-200 characters of A-Z a-z 0-9 - _ .");
  sb::log::Level level;
  if (!sb::log::parse_level(config.log_level, level))
    return fail("--log-level must be debug, info, warn or error, got '" + config.log_level + "'");
  for (const auto& range : ranges) {
    auto value = config.*range.field;
    if (value < range.min || value > range.max)
      return fail("--" + std::string(range.name) + " must be between " + std::to_string(range.min) + " and " +
                  std::to_string(range.max) + ", got " + std::to_string(value));
  }
  if (config.gateway_dead_ms <= config.heartbeat_ms)
    return fail("--gateway-dead-ms must be larger than --heartbeat-ms (3x is usual)");
  if (config.reconnect_max_ms < config.reconnect_ms) return fail("--reconnect-max-ms must be >= --reconnect-ms");
  if (config.gateway_lease_ms <= config.gateway_dead_ms)
    return fail("--gateway-lease-ms must be larger than --gateway-dead-ms");

  outcome.config = std::move(config);
  return outcome;
}

}  // namespace sb::backend
