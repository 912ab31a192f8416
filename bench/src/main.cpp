// switchboard-bench: WebSocket load generator for the issue-4 scenarios. See bench/README.md.
#include <sys/prctl.h>
#include <sys/resource.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <fstream>
#include <iostream>
#include <sstream>

#include "bench/src/proc.hpp"
#include "bench/src/scenarios.hpp"

namespace po = boost::program_options;

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// Positive integers only: a typo must not become a zero-sized phase that measures nothing.
std::vector<int> split_ints(const std::string& s, const char* option) {
  std::vector<int> out;
  for (const auto& item : split(s)) {
    std::size_t used = 0;
    int value = 0;
    try {
      value = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || value <= 0)
      throw std::invalid_argument(std::string("--") + option + ": '" + item + "' is not a positive integer");
    out.push_back(value);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  sb::bench::Options o;
  // S5 and S3 last: closing thousands of sockets keeps a slow server busy for a while.
  std::string scenarios = "s1,s2,s4,s6,s5,s3", s1_conns = "100,500", s2_rooms = "10,100,1000", s4_sweep;
  std::string server_pids, gateway_pids, json_out;
  bool json = false;
  po::options_description desc("switchboard-bench: WebSocket load generator (scenarios S1..S6 of issue 4)");
  desc.add_options()("help,h", "this help")
      ("url", po::value(&o.url)->default_value(o.url), "target base URL ws://HOST:PORT (IPv4)")
      ("label", po::value(&o.label)->default_value(o.label), "name of the target in the results")
      ("scenario", po::value(&scenarios)->default_value(scenarios), "comma list of s1..s6, host (no target: this machine's wake-up lateness)")
      ("duration", po::value(&o.duration)->default_value(o.duration), "seconds per measured phase")
      ("warmup", po::value(&o.warmup)->default_value(o.warmup), "seconds before each measured phase")
      ("size", po::value(&o.size)->default_value(o.size), "payload bytes (at least 32)")
      ("sources", po::value(&o.sources)->default_value(o.sources), "loopback source addresses 127.0.0.1..N")
      ("io-uring", po::value(&o.io_uring)->default_value(o.io_uring),
       "read a loop turn's readable sockets with one io_uring submission, and write its output with another (false: one recv / send each)")
      ("kernel-rx-time", po::value(&o.kernel_rx_time)->default_value(o.kernel_rx_time),
       "time a message's arrival by its socket's kernel receive timestamp (false: when the bench's loop read it)")
      ("echo-path", po::value(&o.echo_path)->default_value(o.echo_path), "echo endpoint")
      ("broadcast-path", po::value(&o.broadcast_path)->default_value(o.broadcast_path), "room broadcast endpoint (?room= is added)")
      ("chat-path", po::value(&o.chat_path)->default_value(o.chat_path), "chat endpoint for S5 (?room= is added)")
      ("s1-conns", po::value(&s1_conns)->default_value(s1_conns), "S1: connection counts")
      ("s2-rooms", po::value(&s2_rooms)->default_value(s2_rooms), "S2: room sizes")
      ("s2-clients", po::value(&o.s2_clients)->default_value(o.s2_clients), "S2: clients per room size (rooms = clients / size)")
      ("inflight-deliveries", po::value(&o.inflight_deliveries)->default_value(o.inflight_deliveries), "S2/S6 closed loop: deliveries in flight in all (each room's window = this / members)")
      ("s3-idle", po::value(&o.s3_idle)->default_value(o.s3_idle), "S3: idle sockets")
      ("s3-active", po::value(&o.s3_active)->default_value(o.s3_active), "S3: active echo sockets")
      ("s3-duration", po::value(&o.s3_duration)->default_value(o.s3_duration),
       "S3: seconds per measured phase (0: --duration); its ratio compares two phases, so short ones are noisy")
      ("s2-open-rate", po::value(&o.s2_open_rate)->default_value(o.s2_open_rate),
       "S2: open-loop sends/s for the latency phase; 0 = half the saturating rate (fix it to compare builds at equal load)")
      ("s4-rate", po::value(&o.s4_rate)->default_value(o.s4_rate), "S4: fixed open-loop rate, msgs/s")
      ("s4-sweep", po::value(&s4_sweep),
       "S4: comma list of more fixed rates, msgs/s, each a phase as long as the main one (p99 against load)")
      ("s4-duration", po::value(&o.s4_duration)->default_value(o.s4_duration),
       "S4: seconds of the fixed-rate phase (0: --duration); its p99 rests on a few stalls, so short ones are noisy")
      ("s5-sockets", po::value(&o.s5_sockets)->default_value(o.s5_sockets), "S5: sockets in the storm")
      ("s5-concurrency", po::value(&o.s5_concurrency)->default_value(o.s5_concurrency), "S5: handshakes in flight")
      ("s5-room-size", po::value(&o.s5_room_size)->default_value(o.s5_room_size), "S5: sockets per chat room")
      ("s6-room", po::value(&o.s6_room)->default_value(o.s6_room), "S6: room size")
      ("s6-stalled-pct", po::value(&o.s6_stalled_pct)->default_value(o.s6_stalled_pct), "S6: percent that stop reading")
      ("s6-duration", po::value(&o.s6_duration)->default_value(o.s6_duration),
       "S6: seconds per measured phase (0: --duration); its ratio compares two phases, so short ones are noisy")
      ("host-duration", po::value(&o.host_duration)->default_value(o.host_duration),
       "host: seconds of each of its three probes (an eventfd hand-off every 1 ms, a thread sleeping 1 ms at a time, a spinning thread)")
      ("s6-stalled-rcvbuf", po::value(&o.s6_stalled_rcvbuf)->default_value(o.s6_stalled_rcvbuf), "S6: SO_RCVBUF of stalled sockets (0: default)")
      ("queue-cap-bytes", po::value(&o.queue_cap_bytes)->default_value(o.queue_cap_bytes), "server per-socket queue cap (report only)")
      ("max-pending", po::value(&o.max_pending)->default_value(o.max_pending), "handshakes in flight when opening many sockets")
      ("connect-timeout", po::value(&o.connect_timeout)->default_value(o.connect_timeout), "seconds to open a scenario's sockets")
      ("quiesce-max", po::value(&o.quiesce_max)->default_value(o.quiesce_max), "seconds at most to wait for the server to go idle between phases")
      ("server-pids", po::value(&server_pids), "comma list of pids of the system under test (descendants are added): CPU")
      ("gateway-pid", po::value(&gateway_pids), "comma list of pids whose VmRSS is reported (default: server pids)")
      ("json", po::bool_switch(&json), "print JSON instead of the table")
      ("json-out", po::value(&json_out), "also write the JSON to this file")
      ("verbose,v", po::bool_switch(&o.verbose), "progress on stderr");
  po::variables_map vm;
  try {
    // A repeated option overrides the earlier one (run.sh adds per-target overrides).
    auto parsed = po::parse_command_line(argc, argv, desc);
    std::vector<po::option> kept;
    for (auto it = parsed.options.rbegin(); it != parsed.options.rend(); ++it) {
      bool seen = std::any_of(kept.begin(), kept.end(), [&](const po::option& o2) { return o2.string_key == it->string_key; });
      if (!seen) kept.insert(kept.begin(), *it);
    }
    parsed.options = kept;
    po::store(parsed, vm);
    po::notify(vm);
    o.scenarios = split(scenarios);
    o.s1_conns = split_ints(s1_conns, "s1-conns");
    o.s2_rooms = split_ints(s2_rooms, "s2-rooms");
    o.s4_sweep = split_ints(s4_sweep, "s4-sweep");
    o.server_pids = sb::bench::parse_pid_list(server_pids);
    o.gateway_pids = sb::bench::parse_pid_list(gateway_pids);
  } catch (const std::exception& e) {
    std::cerr << "switchboard-bench: " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  // As many descriptors as allowed: S3 holds ~19 100 sockets.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  // open-loop sends want microsecond wakeups

  sb::bench::Json results;
  try {
    results = sb::bench::run_scenarios(o);
  } catch (const std::exception& e) {
    std::cerr << "switchboard-bench: " << e.what() << "\n";
    return 1;
  }
  if (!json_out.empty()) {
    std::ofstream f(json_out);
    f << results.dump(2) << "\n";
  }
  if (json) std::cout << results.dump(2) << "\n";
  else std::cout << sb::bench::format_table(results);
  return 0;
}
