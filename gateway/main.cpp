// switchboard-gateway: browsers' WebSockets in, a ZeroMQ pool of workers behind.
#include <csignal>
#include <cstdio>
#include <exception>

#include "common/log.hpp"
#include "gateway/core/gateway_config.hpp"
#include "gateway/shell/server.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto parsed = sb::gateway::parse_gateway_options(args, sb::switchboard_environment());
  if (!parsed.config) {
    std::fputs(parsed.message.c_str(), parsed.exit_code == 0 ? stdout : stderr);
    return parsed.exit_code;
  }
  sb::log::Level level;
  sb::log::parse_level(parsed.config->log_level, level);
  sb::log::set_level(level);
  sb::log::set_component("gateway");
  std::signal(SIGPIPE, SIG_IGN);
  try {
    sb::gateway::Server server(*parsed.config);
    return server.run();
  } catch (const std::exception& e) {
    sb::log::error("cannot start: ", e.what());
    return 2;
  }
}
