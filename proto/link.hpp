// Link family: handshake and liveness of one worker <-> gateway connection.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sb::proto {

// How an app's sockets are bound to workers (IRIS SharedConnection=1 / 0).
enum class AppMode : std::uint8_t {
  shared = 0,     // any worker may serve the WSID and take it over
  dedicated = 1,  // pinned to the worker that opened it; its loss closes the socket (1012)
};

struct AppInfo {
  std::string name;
  AppMode mode = AppMode::shared;
  std::uint32_t idle_timeout_ms = 0;  // 0: no idle events
};

struct Hello {
  std::uint32_t version = 0;
  std::string worker_id;
  std::vector<AppInfo> apps;
};

struct Welcome {
  std::uint32_t version = 0;
  std::string gateway_id;
  std::uint64_t epoch = 0;
  std::uint32_t heartbeat_ms = 0;
  // True when the worker was registered before the HELLO this answers: the gateway did not
  // declare it dead meanwhile, so the events it sent before still belong to it. False for a
  // worker it had forgotten and for an unsolicited WELCOME.
  bool registered = true;
};

struct Heartbeat {};

// worker -> gateway: draining, send me no new sockets and move mine elsewhere.
// gateway -> worker: done, your sockets are handed to other workers; you may exit.
struct Bye {};

}  // namespace sb::proto
