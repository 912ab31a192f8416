// The issue-4 scenarios (S1..S6) over the engine, and "host" (no target: how promptly this
// machine runs a thread). Each returns a JSON object of figures.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace sb::bench {

using Json = nlohmann::ordered_json;

struct Options {
  std::string url = "ws://127.0.0.1:8080";  // base: scheme, host, port (a path here is ignored)
  std::string label = "target";
  std::vector<std::string> scenarios = {"s1", "s2", "s4", "s6", "s5", "s3"};
  double duration = 5.0;  // seconds per measured phase
  double warmup = 0.5;    // seconds before each measured phase, not counted
  std::size_t size = 64;  // payload bytes
  int sources = 8;        // loopback source addresses
  bool io_uring = true;   // a turn's reads in one system call, and its writes in another
  bool kernel_rx_time = true;  // time arrivals by the kernel's receive timestamp, not the loop's read
  std::string echo_path = "/echo";
  std::string broadcast_path = "/broadcast";
  std::string chat_path = "/chat";
  std::vector<int> s1_conns = {100, 500};
  std::vector<int> s2_rooms = {10, 100, 1000};
  int s2_clients = 1000;
  double inflight_deliveries = 50000;  // S2/S6 closed loop: deliveries in flight in all (sets each room's window)
  int s3_idle = 19000;
  int s3_active = 100;
  double s3_duration = 0;  // seconds per S3 phase; 0 = duration
  double s4_rate = 20000;
  double s4_duration = 0;  // seconds of S4's fixed-rate phase; 0 = duration
  std::vector<int> s4_sweep;  // S4: more fixed rates, msgs/s (where p99 crosses a goal); empty = none
  double s2_open_rate = 0;  // S2 open-loop sends/s; 0 = half of the measured saturation
  int s5_sockets = 5000;
  int s5_concurrency = 500;
  int s5_room_size = 10;
  int s6_room = 1000;
  double s6_stalled_pct = 10;
  int s6_stalled_rcvbuf = 8192;
  double s6_duration = 0;  // seconds per S6 phase; 0 = duration
  double host_duration = 5;  // "host": seconds of each probe (eventfd hand-off, sleeping thread, spinning thread)
  double queue_cap_bytes = 1 << 20;  // the server's per-socket queue cap, for the S6 report
  int max_pending = 1000;            // handshakes in flight while opening many sockets
  double connect_timeout = 60;       // seconds to open a scenario's sockets
  double quiesce_max = 8;            // at most this long waiting for the server to go idle between phases
  std::vector<int> server_pids;      // the whole system under test (descendants added)
  std::vector<int> gateway_pids;     // whose RSS is reported (default: server_pids)
  bool verbose = false;
};

Json run_scenarios(const Options& options);
std::string format_table(const Json& results);

}  // namespace sb::bench
