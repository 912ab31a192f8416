#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "backend/runtime/backend_config.hpp"

using sb::backend::BackendConfig;
using sb::backend::parse_backend_options;

namespace {

using Args = std::vector<std::string>;

BackendConfig parse_ok(const Args& args, const sb::Environment& env = {}) {
  auto outcome = parse_backend_options(args, env);
  INFO(outcome.message);
  REQUIRE(outcome.config.has_value());
  return *outcome.config;
}

std::string parse_error(const Args& args, const sb::Environment& env = {}) {
  auto outcome = parse_backend_options(args, env);
  REQUIRE_FALSE(outcome.config.has_value());
  CHECK(outcome.exit_code == 2);
  return outcome.message;
}

// A config file that removes itself.
struct TempFile {
  std::filesystem::path path;
  explicit TempFile(const std::string& text) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("sb-backend-options-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".ini");
    std::ofstream(path) << text;
  }
  ~TempFile() { std::filesystem::remove(path); }
};

}  // namespace

TEST_CASE("backend options: --help prints usage and exits 0") {
  auto outcome = parse_backend_options({"--help"}, {});
  CHECK_FALSE(outcome.config.has_value());
  CHECK(outcome.exit_code == 0);
  CHECK(outcome.message.find("--gateway") != std::string::npos);
  CHECK(outcome.message.find("--workers") != std::string::npos);
  CHECK(outcome.message.find("SWITCHBOARD_") != std::string::npos);
}

TEST_CASE("backend options: defaults") {
  auto config = parse_ok({});
  const BackendConfig defaults;
  CHECK(config.gateways == std::vector<std::string>{"tcp://127.0.0.1:5555"});
  CHECK(config.workers == 1);
  CHECK(config.store == "sqlite:./var/switchboard.db");
  CHECK(config.store_path() == "./var/switchboard.db");
  CHECK(config.apps == std::vector<std::string>{"chat", "echo", "broadcast"});
  CHECK(config.worker_id.empty());
  CHECK(config.heartbeat_ms == 1000);
  CHECK(config.gateway_dead_ms == 3000);
  CHECK(config.gateway_lease_ms == 10000);
  CHECK(config.drain_timeout_ms == 2000);
  CHECK(config.reconnect_ms == 1000);  // 1 s doubling to 32 s
  CHECK(config.reconnect_max_ms == 32000);
  CHECK(config.max_pool_message_bytes == defaults.max_pool_message_bytes);
  CHECK(config.send_hwm == defaults.send_hwm);
  CHECK(config.linger_ms == defaults.linger_ms);
  CHECK(config.log_level == "info");
}

TEST_CASE("backend options: command line values") {
  auto config = parse_ok({"--gateway", "tcp://127.0.0.1:6000", "--workers", "3", "--store", "sqlite:/tmp/x.db",
                          "--apps", "echo,broadcast", "--worker-id", "w1", "--log-level", "debug", "--heartbeat-ms",
                          "200", "--gateway-dead-ms", "600", "--linger-ms", "0"});
  CHECK(config.gateways == std::vector<std::string>{"tcp://127.0.0.1:6000"});
  CHECK(config.workers == 3);
  CHECK(config.store_path() == "/tmp/x.db");
  CHECK(config.apps == std::vector<std::string>{"echo", "broadcast"});
  CHECK(config.worker_id == "w1");
  CHECK(config.log_level == "debug");
  CHECK(config.heartbeat_ms == 200);
  CHECK(config.gateway_dead_ms == 600);
  CHECK(config.linger_ms == 0);
}

TEST_CASE("backend options: --gateway and --apps are repeatable and comma-separated") {
  auto config = parse_ok({"--gateway", "tcp://127.0.0.1:1", "--gateway=tcp://127.0.0.1:2,tcp://127.0.0.1:3",
                          "--apps", "echo", "--apps", "chat"});
  CHECK(config.gateways == std::vector<std::string>{"tcp://127.0.0.1:1", "tcp://127.0.0.1:2", "tcp://127.0.0.1:3"});
  CHECK(config.apps == std::vector<std::string>{"echo", "chat"});
}

TEST_CASE("backend options: command line over environment over config file") {
  TempFile file("workers = 4\nstore = sqlite:/from/file.db\nheartbeat-ms = 300\nlog-level = warn\n"
                "gateway = tcp://127.0.0.1:7001\ngateway = tcp://127.0.0.1:7002\n");
  SUBCASE("file alone") {
    auto config = parse_ok({"--config", file.path.string()});
    CHECK(config.workers == 4);
    CHECK(config.store == "sqlite:/from/file.db");
    CHECK(config.heartbeat_ms == 300);
    CHECK(config.log_level == "warn");
    CHECK(config.gateways == std::vector<std::string>{"tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002"});
  }
  SUBCASE("environment wins over the file") {
    auto config = parse_ok({"--config", file.path.string()},
                           {{"SWITCHBOARD_WORKERS", "5"}, {"SWITCHBOARD_GATEWAY", "tcp://127.0.0.1:8000"}});
    CHECK(config.workers == 5);
    CHECK(config.gateways == std::vector<std::string>{"tcp://127.0.0.1:8000"});
    CHECK(config.heartbeat_ms == 300);  // only in the file
  }
  SUBCASE("command line wins over both") {
    auto config = parse_ok({"--config", file.path.string(), "--workers", "6", "--gateway", "tcp://127.0.0.1:9000"},
                           {{"SWITCHBOARD_WORKERS", "5"}, {"SWITCHBOARD_GATEWAY", "tcp://127.0.0.1:8000"}});
    CHECK(config.workers == 6);
    CHECK(config.gateways == std::vector<std::string>{"tcp://127.0.0.1:9000"});
    CHECK(config.store == "sqlite:/from/file.db");
  }
  SUBCASE("config file named in the environment") {
    auto config = parse_ok({}, {{"SWITCHBOARD_CONFIG", file.path.string()}});
    CHECK(config.workers == 4);
  }
}

TEST_CASE("backend options: environment alone, lists split on commas") {
  auto config = parse_ok({}, {{"SWITCHBOARD_GATEWAY", "tcp://a:1,tcp://b:2"}, {"SWITCHBOARD_APPS", "echo"},
                              {"SWITCHBOARD_WORKER_ID", "env-worker"}});
  CHECK(config.gateways == std::vector<std::string>{"tcp://a:1", "tcp://b:2"});
  CHECK(config.apps == std::vector<std::string>{"echo"});
  CHECK(config.worker_id == "env-worker");
}

TEST_CASE("backend options: bad values exit 2 with a clear message") {
  CHECK(parse_error({"--workers", "0"}).find("--workers") != std::string::npos);
  CHECK(parse_error({"--workers", "-3"}).find("--workers") != std::string::npos);
  CHECK(parse_error({"--workers", "many"}).find("workers") != std::string::npos);
  CHECK(parse_error({"--store", "redis://x"}).find("sqlite:PATH") != std::string::npos);
  CHECK(parse_error({"--store", "sqlite:"}).find("path") != std::string::npos);
  CHECK(parse_error({"--apps", "chat,nope"}).find("unknown app 'nope'") != std::string::npos);
  CHECK(parse_error({"--apps", "echo,echo"}).find("twice") != std::string::npos);
  CHECK(parse_error({"--apps", ""}).find("--apps") != std::string::npos);
  CHECK(parse_error({"--gateway", ""}).find("--gateway") != std::string::npos);
  CHECK(parse_error({"--gateway", "127.0.0.1:5555"}).find("tcp://") != std::string::npos);
  CHECK(parse_error({"--gateway", "tcp://a:1", "--gateway", "tcp://a:1"}).find("twice") != std::string::npos);
  CHECK(parse_error({"--worker-id", "bad id!"}).find("--worker-id") != std::string::npos);
  CHECK(parse_error({"--log-level", "loud"}).find("--log-level") != std::string::npos);
  CHECK(parse_error({"--heartbeat-ms", "0"}).find("--heartbeat-ms") != std::string::npos);
  CHECK(parse_error({"--heartbeat-ms", "1000", "--gateway-dead-ms", "1000"}).find("--gateway-dead-ms") !=
        std::string::npos);
  CHECK(parse_error({"--linger-ms", "-1"}).find("--linger-ms") != std::string::npos);
  CHECK(parse_error({"--no-such-option"}).find("no-such-option") != std::string::npos);
  CHECK(parse_error({}, {{"SWITCHBOARD_NO_SUCH", "1"}}).find("SWITCHBOARD_NO_SUCH") != std::string::npos);
  CHECK(parse_error({"--config", "/nonexistent/switchboard.ini"}).find("config") != std::string::npos);
}

TEST_CASE("backend options: generated worker ids are valid") {
  auto a = sb::backend::generate_worker_id();
  CHECK(sb::backend::valid_worker_id(a));
  CHECK(a.find("-" + std::to_string(getpid()) + "-") != std::string::npos);
  CHECK_FALSE(sb::backend::valid_worker_id(""));
  CHECK_FALSE(sb::backend::valid_worker_id(std::string(201, 'a')));
}

TEST_CASE("backend options: gateway lease and drain timeout") {
  auto config = parse_ok({"--gateway-lease-ms", "4000", "--drain-timeout-ms", "500"});
  CHECK(config.gateway_lease_ms == 4000);
  CHECK(config.drain_timeout_ms == 500);
  config = parse_ok({}, {{"SWITCHBOARD_GATEWAY_LEASE_MS", "7000"}});
  CHECK(config.gateway_lease_ms == 7000);
  CHECK(parse_error({"--gateway-lease-ms", "3000"}).find("--gateway-lease-ms") != std::string::npos);  // = dead
  CHECK(parse_error({"--gateway-dead-ms", "20000"}).find("--gateway-lease-ms") != std::string::npos);
  CHECK(parse_ok({"--gateway-dead-ms", "20000", "--gateway-lease-ms", "60000"}).gateway_lease_ms == 60000);
  CHECK(parse_error({"--drain-timeout-ms", "-1"}).find("--drain-timeout-ms") != std::string::npos);
  CHECK(parse_ok({"--drain-timeout-ms", "0"}).drain_timeout_ms == 0);
  auto help = parse_backend_options({"--help"}, {});
  CHECK(help.message.find("--gateway-lease-ms") != std::string::npos);
  CHECK(help.message.find("--drain-timeout-ms") != std::string::npos);
}
