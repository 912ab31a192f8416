#include "bench/src/scenarios.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>

#include "bench/src/engine.hpp"
#include "bench/src/host_probe.hpp"
#include "bench/src/proc.hpp"
#include "bench/src/stats.hpp"

namespace sb::bench {
namespace {

constexpr std::int64_t ms = 1'000'000;
constexpr std::int64_t sec = 1'000'000'000;

std::int64_t to_ns(double seconds) { return static_cast<std::int64_t>(seconds * 1e9); }
double us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }
double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

Json latency_json(const Histogram& h) {
  Json j;
  j["samples"] = h.count();
  j["p50_us"] = round3(us(h.percentile(50)));
  j["p90_us"] = round3(us(h.percentile(90)));
  j["p99_us"] = round3(us(h.percentile(99)));
  j["p999_us"] = round3(us(h.percentile(99.9)));
  j["max_us"] = round3(us(h.max()));
  j["mean_us"] = round3(h.mean() / 1000.0);
  return j;
}

// Percentile curve for the latency-distribution plot.
Json latency_curve(const Histogram& h) {
  Json curve = Json::array();
  for (double p : {1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0})
    curve.push_back({p, round3(us(h.percentile(p)))});
  return curve;
}

// Server and bench CPU over one measured window.
struct Window {
  std::vector<int> pids;
  std::int64_t t0 = 0, cpu0 = 0, self0 = 0;
  std::int64_t dt = 0, cpu = 0, self = 0;
  void start() {
    t0 = now_ns();
    cpu0 = total_cpu_us(pids);
    self0 = self_cpu_us();
  }
  void stop() {
    dt = now_ns() - t0;
    cpu = total_cpu_us(pids) - cpu0;
    self = self_cpu_us() - self0;
  }
  double seconds() const { return static_cast<double>(dt) / 1e9; }
  void add(Json& j, const char* per_what, std::uint64_t count) const {
    j["seconds"] = round3(seconds());
    if (!pids.empty()) {
      j["server_cpu_pct"] = round3(100.0 * static_cast<double>(cpu) / (static_cast<double>(dt) / 1000.0));
      if (count) j[std::string("server_cpu_us_per_") + per_what] = round3(static_cast<double>(cpu) / count);
    }
    j["bench_cpu_pct"] = round3(100.0 * static_cast<double>(self) / (static_cast<double>(dt) / 1000.0));
  }
};

class Runner {
 public:
  explicit Runner(const Options& o) : o_(o), engine_(o.sources, o.io_uring, o.kernel_rx_time) {
    auto url = parse_ws_url(o.url);
    if (!url) throw std::runtime_error("bad --url (want ws://HOST:PORT): " + o.url);
    base_ = *url;
    server_pids_ = with_descendants(o.server_pids);
    gateway_pids_ = o.gateway_pids.empty() ? server_pids_ : with_descendants(o.gateway_pids);
    std::random_device rd;
    char tag[16];
    std::snprintf(tag, sizeof tag, "%08x", rd());
    tag_ = tag;
    payload_ = make_payload({}, o.size);
    engine_.max_message_bytes = 16u << 20;
  }

  Json run() {
    Json out;
    out["target"] = o_.label;
    // "host" alone measures the machine, not a server: no URL to name.
    if (std::any_of(o_.scenarios.begin(), o_.scenarios.end(), [](const std::string& n) { return n != "host"; }))
      out["url"] = o_.url;
    Json cfg;
    cfg["duration_s"] = o_.duration;
    cfg["warmup_s"] = o_.warmup;
    cfg["payload_bytes"] = std::max(o_.size, stamp_size);
    cfg["sources"] = o_.sources;
    cfg["reads"] = engine_.batched_reads() ? "io_uring" : "recv";
    cfg["writes"] = engine_.batched_writes() ? "io_uring" : "send";
    // Where a message's arrival is timed: "kernel" (the socket's receive timestamp) or "loop"
    // (when the bench's one thread read it).
    cfg["receive_time"] = engine_.kernel_rx_time() ? "kernel" : "loop";
    cfg["server_pids"] = server_pids_;
    cfg["gateway_pids"] = gateway_pids_;
    out["config"] = cfg;
    Json scen;
    for (const auto& name : o_.scenarios) {
      log("scenario ", name);
      Json r;
      try {
        if (name == "s1") r = s1();
        else if (name == "s2") r = s2();
        else if (name == "s3") r = s3();
        else if (name == "s4") r = s4();
        else if (name == "s5") r = s5();
        else if (name == "s6") r = s6();
        else if (name == "host") r = host();
        else r = {{"error", "unknown scenario"}};
      } catch (const std::exception& e) {
        r = {{"error", e.what()}};
      }
      reset();
      scen[name] = r;
    }
    out["scenarios"] = scen;
    out["engine"] = {{"connect_failures", engine_.stats().connect_failures},
                     {"handshake_failures", engine_.stats().handshake_failures},
                     {"protocol_errors", engine_.stats().protocol_errors},
                     {"closed_by_server", engine_.stats().closed_by_server},
                     {"rx_timestamp_failures", engine_.stats().rx_timestamp_failures}};
    return out;
  }

 private:
  template <typename... A>
  void log(const A&... a) {
    if (!o_.verbose) return;
    std::ostringstream s;
    (s << ... << a);
    std::cerr << "[bench " << o_.label << "] " << s.str() << "\n";
  }

  WsUrl url_for(const std::string& target) const {
    WsUrl u = base_;
    u.target = target;
    return u;
  }

  void clear_callbacks() {
    engine_.on_open = nullptr;
    engine_.on_message = nullptr;
    engine_.on_closed = nullptr;
    engine_.on_tick = nullptr;
    engine_.set_wakeup(0);
  }

  // Closes everything and waits for the server to go quiet, so scenarios do not overlap.
  void reset() {
    clear_callbacks();
    engine_.drop_all();
    quiesce();
  }

  void quiesce() {
    std::int64_t deadline = now_ns() + to_ns(o_.quiesce_max);
    if (server_pids_.empty()) {
      engine_.run_until([] { return false; }, now_ns() + 300 * ms);
      return;
    }
    while (now_ns() < deadline) {
      auto c0 = total_cpu_us(server_pids_);
      auto t0 = now_ns();
      engine_.run_until([] { return false; }, t0 + 200 * ms);
      double pct = 100.0 * static_cast<double>(total_cpu_us(server_pids_) - c0) / ((now_ns() - t0) / 1000.0);
      if (pct < 5.0) return;
    }
  }

  // Opens `count` sockets to `target(i)`, at most max_pending handshakes at a time.
  // Returns the connections (some may have failed: check state).
  std::vector<Conn*> open_many(int count, const std::function<std::string(int)>& target, int rcvbuf_from = -1,
                               int rcvbuf = 0, int max_pending = 0) {
    if (max_pending <= 0) max_pending = o_.max_pending;
    std::vector<Conn*> out;
    out.reserve(static_cast<std::size_t>(count));
    int started = 0, failed = 0;
    std::string first_error;
    auto prev_closed = engine_.on_closed;
    engine_.on_closed = [&](Conn& c) {
      if (c.t_open == 0) {
        ++failed;
        if (first_error.empty()) first_error = c.error;
      }
      if (prev_closed) prev_closed(c);
    };
    auto top_up = [&] {
      while (started < count && static_cast<int>(engine_.pending_count()) < max_pending) {
        int i = started++;
        out.push_back(&engine_.connect(url_for(target(i)), rcvbuf_from >= 0 && i >= rcvbuf_from ? rcvbuf : 0));
      }
    };
    engine_.on_tick = [&](std::int64_t) { top_up(); };
    top_up();
    std::int64_t deadline = now_ns() + to_ns(o_.connect_timeout);
    engine_.run_until(
        [&] {
          return started == count && engine_.pending_count() == 0;
        },
        deadline);
    engine_.on_tick = nullptr;
    engine_.on_closed = prev_closed;
    if (failed) log(failed, " of ", count, " connections failed; first: ", first_error);
    last_open_error_ = first_error;
    last_open_failed_ = failed;
    return out;
  }

  // The warm-up (not counted), then `duration` seconds with `measuring` set and the window's
  // CPU clock running: the measured phase of a closed-loop scenario.
  void warm_then_measure(bool& measuring, Window& window, double duration) {
    engine_.run_until([] { return false; }, now_ns() + to_ns(o_.warmup));
    measuring = true;
    window.start();
    engine_.run_until([] { return false; }, now_ns() + to_ns(duration));
    measuring = false;
    window.stop();
  }

  static std::size_t count_open(const std::vector<Conn*>& v) {
    return static_cast<std::size_t>(
        std::count_if(v.begin(), v.end(), [](Conn* c) { return c->state == ConnState::open; }));
  }

  void require_open(const std::vector<Conn*>& v, const char* what) {
    auto n = count_open(v);
    if (n != v.size())
      throw std::runtime_error(std::string(what) + ": " + std::to_string(v.size() - n) + " of " +
                               std::to_string(v.size()) + " sockets did not open (" + last_open_error_ + ")");
  }

  void send_stamped(Conn& c, std::int64_t time_ns) {
    restamp(payload_, {time_ns, c.id, c.seq++});
    engine_.send_text(c, payload_);
  }

  // --- closed-loop echo: each active socket keeps one message in flight ---
  struct EchoResult {
    double rate = 0;
    std::uint64_t count = 0;
    Histogram latency;
    Window window;
  };

  EchoResult echo_closed(const std::vector<Conn*>& active, double duration) {
    EchoResult r;
    r.window.pids = server_pids_;
    bool measuring = false, stopping = false;
    std::uint64_t in_flight = 0;
    engine_.on_message = [&](Conn& c, std::string_view payload, bool, std::int64_t now) {
      Stamp s;
      if (!parse_stamp(payload, s) || s.sender != c.id || !c.flag) return;
      --in_flight;
      if (measuring) {
        r.latency.record(now - s.time_ns);
        ++r.count;
      }
      if (!stopping) {
        send_stamped(c, now);
        ++in_flight;
      }
    };
    auto t = now_ns();
    for (Conn* c : active) {
      c->flag = true;  // marks the active set
      send_stamped(*c, t);
      ++in_flight;
    }
    warm_then_measure(measuring, r.window, duration);
    stopping = true;
    engine_.run_until([&] { return in_flight == 0; }, now_ns() + 5 * sec);
    for (Conn* c : active) c->flag = false;
    engine_.on_message = nullptr;
    r.rate = static_cast<double>(r.count) / r.window.seconds();
    return r;
  }

  Json echo_json(const EchoResult& r) {
    Json j;
    j["msgs_per_s"] = std::round(r.rate);
    j["messages"] = r.count;
    j["latency"] = latency_json(r.latency);
    r.window.add(j, "msg", r.count);
    return j;
  }

  // --- S1: echo, one message in flight per socket ---
  Json s1() {
    Json rows = Json::array();
    for (int n : o_.s1_conns) {
      auto conns = open_many(n, [&](int) { return o_.echo_path; });
      require_open(conns, "s1");
      quiesce();
      auto r = echo_closed(conns, o_.duration);
      Json j = echo_json(r);
      Json row{{"conns", n}};
      row.update(j);
      log("s1 conns=", n, " msgs/s=", r.rate);
      rows.push_back(row);
      reset();
    }
    return rows;
  }

  // Waits until every room delivers a probe to all its members (subscriptions are asynchronous).
  bool wait_rooms_ready(const std::vector<std::vector<Conn*>>& rooms, double timeout_s) {
    std::vector<bool> ready(rooms.size(), false);
    std::size_t ready_count = 0;
    engine_.on_message = [&](Conn& c, std::string_view payload, bool, std::int64_t) {
      if (!payload.empty() && payload[0] == '#') c.flag = true;
    };
    std::int64_t next_probe = 0;
    std::uint32_t probe = 0;
    engine_.on_tick = [&](std::int64_t now) {
      for (std::size_t r = 0; r < rooms.size(); ++r) {
        if (ready[r]) continue;
        bool all = std::all_of(rooms[r].begin(), rooms[r].end(), [](Conn* c) { return c->flag; });
        if (all) {
          ready[r] = true;
          ++ready_count;
        }
      }
      if (now >= next_probe) {
        ++probe;
        std::string text = "#probe-" + std::to_string(probe);
        for (std::size_t r = 0; r < rooms.size(); ++r)
          if (!ready[r] && !rooms[r].empty()) engine_.send_text(*rooms[r][0], text);
        next_probe = now + 100 * ms;
        engine_.set_wakeup(next_probe);
      }
    };
    bool ok = engine_.run_until([&] { return ready_count == rooms.size(); }, now_ns() + to_ns(timeout_s));
    clear_callbacks();
    // Late probes still in flight are ignored by the stamp parser ('#' is not hex).
    engine_.run_until([] { return false; }, now_ns() + 100 * ms);
    for (auto& room : rooms)
      for (Conn* c : room) c->flag = false;
    return ok;
  }

  struct FanoutResult {
    double deliveries_per_s = 0, sends_per_s = 0;
    std::uint64_t deliveries = 0, sends = 0;
    Histogram latency;
    Histogram send_lag;  // open loop: how late the bench itself sent, vs the schedule
    Histogram latency_at_loop;  // open loop: the same deliveries timed when the bench read them
    Window window;
    bool drained = true;
    std::size_t window_per_room = 0;  // closed loop: messages in flight per room
    // Open loop, when asked: (send time since the phase began, latency) of each measured sample.
    std::vector<std::pair<std::int64_t, std::int64_t>> samples;
  };

  // Closed loop with a window per room: W messages in flight in each room; when a sender
  // gets its own message back, the room's next member (round robin) sends, so every member
  // sends in turn. W = in-flight deliveries wanted / members in all rooms, between 1 and the
  // room's sender count: enough queued work to saturate a server, little enough to drain in
  // seconds (one message in flight per member of a 1 000-room is a million deliveries).
  // Counts deliveries to sockets in `counted`.
  FanoutResult fanout_closed(const std::vector<Conn*>& senders, const std::vector<Conn*>& counted,
                             double duration) {
    FanoutResult r;
    r.window.pids = server_pids_;
    bool measuring = false, stopping = false;
    std::uint64_t sent_total = 0, counted_received = 0;
    for (Conn* c : counted) c->flag = true;
    std::size_t rooms = 0;
    for (Conn* c : senders) rooms = std::max<std::size_t>(rooms, c->group + 1);
    std::vector<std::vector<Conn*>> by_room(rooms);
    for (Conn* c : senders) by_room[c->group].push_back(c);
    std::vector<std::size_t> next(rooms, 0);
    auto per_send = counted_per_send(counted);
    std::size_t members = std::max<std::size_t>(1, per_send * rooms);
    std::size_t want = static_cast<std::size_t>(o_.inflight_deliveries) / members;
    auto send_next = [&](std::uint32_t room, std::int64_t now) {
      auto& list = by_room[room];
      Conn* c = list[next[room]++ % list.size()];
      send_stamped(*c, now);
      ++sent_total;
    };
    engine_.on_message = [&](Conn& c, std::string_view payload, bool, std::int64_t now) {
      Stamp s;
      if (!parse_stamp(payload, s)) return;
      if (c.flag) {
        ++counted_received;
        if (measuring) {
          ++r.deliveries;
          r.latency.record(now - s.time_ns);
        }
      }
      if (s.sender == c.id && c.user == 1) {
        if (measuring) ++r.sends;
        if (!stopping) send_next(c.group, now);
      }
    };
    auto t = now_ns();
    for (Conn* c : senders) c->user = 1;  // marks senders
    for (std::uint32_t room = 0; room < rooms; ++room) {
      std::size_t w = std::clamp<std::size_t>(want, 1, by_room[room].size());
      r.window_per_room = w;
      for (std::size_t i = 0; i < w; ++i) send_next(room, t);
    }
    warm_then_measure(measuring, r.window, duration);
    stopping = true;
    r.drained = engine_.run_until([&] { return counted_received >= sent_total * per_send; }, now_ns() + 30 * sec);
    for (Conn* c : senders) c->user = 0;
    for (Conn* c : counted) c->flag = false;
    engine_.on_message = nullptr;
    r.deliveries_per_s = static_cast<double>(r.deliveries) / r.window.seconds();
    r.sends_per_s = static_cast<double>(r.sends) / r.window.seconds();
    return r;
  }

  // Every room has the same number of counted members, and each message sent in a room
  // reaches all of them: that many counted deliveries per send.
  static std::uint64_t counted_per_send(const std::vector<Conn*>& counted) {
    std::size_t room_count = 0;
    for (Conn* c : counted) room_count = std::max<std::size_t>(room_count, c->group + 1);
    return room_count ? counted.size() / room_count : 0;
  }

  // Open loop: sends at `rate` per second round-robin over senders, stamped with the
  // scheduled time, so a stalled server shows as latency (no coordinated omission).
  FanoutResult fanout_open(const std::vector<Conn*>& senders, const std::vector<Conn*>& counted,
                           double rate, double duration, bool keep_samples = false) {
    FanoutResult r;
    r.window.pids = server_pids_;
    if (rate <= 0 || senders.empty()) return r;
    std::uint64_t sent_total = 0, counted_received = 0;
    std::int64_t t0 = now_ns() + 10 * ms;
    std::int64_t measure_from = t0 + to_ns(o_.warmup);
    std::int64_t end = measure_from + to_ns(duration);
    double interval = 1e9 / rate;
    std::uint64_t k = 0;
    for (Conn* c : counted) c->flag = true;
    engine_.on_message = [&](Conn& c, std::string_view payload, bool, std::int64_t now) {
      Stamp s;
      if (!parse_stamp(payload, s) || !c.flag) return;
      ++counted_received;
      if (s.time_ns >= measure_from && s.time_ns < end) {
        ++r.deliveries;
        r.latency.record(now - s.time_ns);
        r.latency_at_loop.record(engine_.read_time() - s.time_ns);
        if (keep_samples) r.samples.emplace_back(s.time_ns - measure_from, now - s.time_ns);
      }
    };
    // Reserved up front: growing by doubling would stall the loop for ms while it copies.
    if (keep_samples)
      r.samples.reserve(static_cast<std::size_t>(rate * duration * 1.1 * static_cast<double>(counted_per_send(counted))) + 16);
    engine_.on_tick = [&](std::int64_t now) {
      while (true) {
        auto due = t0 + static_cast<std::int64_t>(static_cast<double>(k) * interval);
        if (due >= end) {
          engine_.set_wakeup(0);
          return;
        }
        if (due > now) {
          engine_.set_wakeup(due);
          return;
        }
        Conn* c = senders[k % senders.size()];
        if (due >= measure_from) r.send_lag.record(now - due);
        send_stamped(*c, due);
        ++sent_total;
        if (due >= measure_from) ++r.sends;
        ++k;
      }
    };
    engine_.set_wakeup(t0);
    r.window.start();
    engine_.run_until([] { return false; }, end);
    r.window.stop();
    engine_.on_tick = nullptr;
    engine_.set_wakeup(0);
    auto per_send = counted_per_send(counted);
    r.drained = engine_.run_until([&] { return counted_received >= sent_total * per_send; }, now_ns() + 30 * sec);
    for (Conn* c : counted) c->flag = false;
    engine_.on_message = nullptr;
    r.deliveries_per_s = static_cast<double>(r.deliveries) / to_ns(duration) * 1e9;
    r.sends_per_s = static_cast<double>(r.sends) / to_ns(duration) * 1e9;
    return r;
  }

  // Opens `rooms` rooms of `size` members (member i is in room i / size) and waits until
  // each delivers to all its members.
  std::vector<std::vector<Conn*>> open_rooms(int rooms, int size, const std::string& name, int rcvbuf_from = -1,
                                             int rcvbuf = 0) {
    auto conns = open_many(
        rooms * size,
        [&](int i) { return o_.broadcast_path + "?room=" + name + "-" + tag_ + "-" + std::to_string(i / size); },
        rcvbuf_from, rcvbuf);
    require_open(conns, name.c_str());
    std::vector<std::vector<Conn*>> out(static_cast<std::size_t>(rooms));
    for (std::size_t i = 0; i < conns.size(); ++i) {
      conns[i]->group = static_cast<std::uint32_t>(i / static_cast<std::size_t>(size));
      out[i / static_cast<std::size_t>(size)].push_back(conns[i]);
    }
    if (!wait_rooms_ready(out, 30)) throw std::runtime_error(name + ": rooms did not deliver to every member in 30 s");
    return out;
  }

  // --- S2: room fan-out ---
  Json s2() {
    Json rows = Json::array();
    for (int size : o_.s2_rooms) {
      int rooms = std::max(1, o_.s2_clients / size);
      auto room_list = open_rooms(rooms, size, "s2r" + std::to_string(size));
      std::vector<Conn*> all;
      for (auto& r : room_list) all.insert(all.end(), r.begin(), r.end());
      quiesce();
      auto sat = fanout_closed(all, all, o_.duration);
      log("s2 room=", size, " deliveries/s=", sat.deliveries_per_s);
      quiesce();
      double half_rate = o_.s2_open_rate > 0 ? o_.s2_open_rate : sat.sends_per_s / 2.0;
      // `all` is ordered by room, so the open loop's round robin sends ~size messages in a row
      // to one room: each loop pass of the server writes that room's members. The same rate
      // again with the senders interleaved across rooms makes every pass write every socket.
      auto half = fanout_open(all, all, half_rate, o_.duration);
      FanoutResult mixed;
      if (rooms > 1) {
        std::vector<Conn*> interleaved;
        interleaved.reserve(all.size());
        for (std::size_t i = 0; i < static_cast<std::size_t>(size); ++i)
          for (auto& r : room_list) interleaved.push_back(r[i]);
        quiesce();
        mixed = fanout_open(interleaved, all, half_rate, o_.duration);
      }
      Json j;
      j["room_size"] = size;
      j["rooms"] = rooms;
      j["clients"] = rooms * size;
      j["deliveries_per_s"] = std::round(sat.deliveries_per_s);
      j["sends_per_s"] = std::round(sat.sends_per_s);
      j["saturated_latency"] = latency_json(sat.latency);
      j["in_flight_per_room"] = sat.window_per_room;
      j["drained"] = sat.drained && half.drained && (rooms == 1 || mixed.drained);
      sat.window.add(j, "delivery", sat.deliveries);
      j["half_load"] = half_load_json(half, half_rate, "by_room");
      j["half_load"]["latency_curve"] = latency_curve(half.latency);
      if (rooms > 1) j["half_load_interleaved"] = half_load_json(mixed, half_rate, "interleaved");
      rows.push_back(j);
      reset();
    }
    return rows;
  }

  // One S2 open-loop phase at `rate` sends/s, its senders in `order`.
  static Json half_load_json(const FanoutResult& r, double rate, const char* order) {
    Json h;
    h["order"] = order;
    h["sends_per_s_offered"] = std::round(rate);
    h["deliveries_per_s"] = std::round(r.deliveries_per_s);
    h["latency"] = latency_json(r.latency);
    h["latency_at_loop"] = latency_json(r.latency_at_loop);
    h["bench_send_lag_p99_us"] = round3(us(r.send_lag.percentile(99)));
    r.window.add(h, "delivery", r.deliveries);
    return h;
  }

  // A scenario's own phase length (--s3/s4/s6-duration), or --duration when it has none.
  double phase_seconds(double own) const { return own > 0 ? own : o_.duration; }

  // --- host: no target; the machine's own wake-up and run gaps (see host_probe.hpp) ---
  Json host() {
    auto handoff = probe_handoff(o_.host_duration, 1'000'000);
    auto sleep = probe_sleep(o_.host_duration, 1'000'000);
    auto spin = probe_spin(o_.host_duration, 50'000);
    // The two periodic probes: period, run time, one sample per wake-up.
    auto periodic = [](std::int64_t period_ns, double seconds, const char* what, const Histogram& h) {
      return Json{{"period_us", us(static_cast<std::uint64_t>(period_ns))},
                  {"seconds", round3(seconds)},
                  {"wakeups", h.count()},
                  {what, latency_json(h)}};
    };
    Json j;
    Json h = periodic(handoff.period_ns, handoff.seconds, "wake", handoff.wake);
    h["coalesced"] = handoff.coalesced;
    j["handoff"] = h;
    Json s = periodic(sleep.period_ns, sleep.seconds, "late", sleep.late);
    s["late_over_500us"] = sleep.late_over_500us;
    s["late_over_1ms"] = sleep.late_over_1ms;
    s["late_over_500us_per_10k"] =
        round3(sleep.late.count() ? 1e4 * static_cast<double>(sleep.late_over_500us) / static_cast<double>(sleep.late.count()) : 0);
    j["sleep"] = s;
    Json g;
    g["threshold_us"] = us(static_cast<std::uint64_t>(spin.threshold_ns));
    g["seconds"] = round3(spin.seconds);
    g["gaps"] = spin.gaps;
    g["gaps_per_s"] = round3(spin.seconds > 0 ? static_cast<double>(spin.gaps) / spin.seconds : 0);
    g["gaps_over_500us"] = spin.gaps_over_500us;
    g["lost_pct"] = round3(spin.seconds > 0 ? 100.0 * static_cast<double>(spin.lost_ns) / (spin.seconds * 1e9) : 0);
    g["worst_gap_us"] = round3(us(static_cast<std::uint64_t>(spin.worst_gap_ns)));
    j["spin"] = g;
    return j;
  }

  // --- S3: idle sockets ---
  Json s3() {
    Json j;
    auto active = open_many(o_.s3_active, [&](int) { return o_.echo_path; });
    require_open(active, "s3 active");
    quiesce();
    // Its ratio compares two phases in a row, so it may get longer ones (--s3-duration).
    const double phase = phase_seconds(o_.s3_duration);
    auto before = echo_closed(active, phase);
    log("s3 without idle: ", before.rate);
    quiesce();
    auto rss0 = total_rss_kib(gateway_pids_);
    auto t0 = now_ns();
    auto idle = open_many(o_.s3_idle, [&](int) { return o_.echo_path; });
    double open_s = static_cast<double>(now_ns() - t0) / 1e9;
    auto idle_open = count_open(idle);
    quiesce();
    auto rss1 = total_rss_kib(gateway_pids_);
    auto after = echo_closed(active, phase);
    log("s3 with ", idle_open, " idle: ", after.rate);
    j["idle_requested"] = o_.s3_idle;
    j["idle_open"] = idle_open;
    j["idle_failed"] = last_open_failed_;
    if (last_open_failed_) j["idle_first_error"] = last_open_error_;
    j["idle_open_seconds"] = round3(open_s);
    j["active"] = o_.s3_active;
    j["without_idle"] = echo_json(before);
    j["with_idle"] = echo_json(after);
    j["rate_ratio"] = before.rate > 0 ? round3(after.rate / before.rate) : 0.0;
    j["rss_before_kib"] = rss0;
    j["rss_after_kib"] = rss1;
    if (idle_open > 0)
      j["rss_bytes_per_idle_socket"] = std::round(static_cast<double>(rss1 - rss0) * 1024.0 / idle_open);
    std::size_t still_open = count_open(idle);
    j["idle_still_open"] = still_open;
    return j;
  }

  // --- S4: one connection ---
  Json s4() {
    Json j;
    auto conns = open_many(1, [&](int) { return o_.echo_path; });
    require_open(conns, "s4");
    quiesce();
    auto rt = echo_closed(conns, o_.duration);
    j["round_trip"] = echo_json(rt);
    j["round_trip"]["latency_curve"] = latency_curve(rt.latency);
    quiesce();
    // Open loop at a fixed rate on the same socket: an echo is a room of one.
    conns[0]->group = 0;
    const double phase = phase_seconds(o_.s4_duration);
    auto fixed = fanout_open(conns, conns, o_.s4_rate, phase, true);
    Json f;
    f["rate_offered"] = o_.s4_rate;
    f["msgs_per_s"] = std::round(fixed.deliveries_per_s);
    f["latency"] = latency_json(fixed.latency);
    f["latency_curve"] = latency_curve(fixed.latency);
    f["latency_at_loop"] = latency_json(fixed.latency_at_loop);
    f["bench_send_lag_p99_us"] = round3(us(fixed.send_lag.percentile(99)));
    f["bench_send_lag_p50_us"] = round3(us(fixed.send_lag.percentile(50)));
    f["drained"] = fixed.drained;
    f["seconds_measured"] = phase;
    auto spread = tail_spread(fixed.samples, to_ns(phase), 10 * ms, 99);
    f["tail_windows_10ms"] = spread.windows_with_tail;
    f["windows_10ms"] = spread.windows;
    f["tail_samples"] = spread.tail_samples;
    fixed.window.add(f, "msg", fixed.deliveries);
    j["fixed_rate"] = f;
    // The same phase at other rates: how p99 grows with load, and where it crosses a goal.
    if (!o_.s4_sweep.empty()) {
      Json sweep = Json::array();
      for (int rate : o_.s4_sweep) {
        quiesce();
        auto p = fanout_open(conns, conns, rate, phase);
        Json row;
        row["rate_offered"] = rate;
        row["msgs_per_s"] = std::round(p.deliveries_per_s);
        row["latency"] = latency_json(p.latency);
        row["bench_send_lag_p99_us"] = round3(us(p.send_lag.percentile(99)));
        row["drained"] = p.drained;
        p.window.add(row, "msg", p.deliveries);
        sweep.push_back(row);
      }
      j["rate_sweep"] = sweep;
    }
    return j;
  }

  // --- S5: connect storm to the chat app: time to the first server message (Status) ---
  Json s5() {
    Json j;
    int n = o_.s5_sockets;
    Histogram to_status;
    std::uint64_t reached = 0, status_seen = 0;
    std::int64_t last = 0;
    engine_.on_message = [&](Conn& c, std::string_view payload, bool, std::int64_t now) {
      if (c.flag) return;
      c.flag = true;
      ++reached;
      if (payload.find("Status") != std::string_view::npos) ++status_seen;
      to_status.record(now - c.t_connect);
      last = now;
    };
    Window w;
    w.pids = server_pids_;
    w.start();
    auto t0 = now_ns();
    auto conns = open_many(
        n,
        [&](int i) {
          return o_.chat_path + "?room=storm-" + tag_ + "-" + std::to_string(i / std::max(1, o_.s5_room_size));
        },
        -1, 0, o_.s5_concurrency);
    engine_.run_until([&] { return reached + static_cast<std::uint64_t>(last_open_failed_) >= conns.size(); },
                      now_ns() + 20 * sec);
    w.stop();
    double span = static_cast<double>((last ? last : now_ns()) - t0) / 1e9;
    j["sockets"] = n;
    j["concurrency"] = o_.s5_concurrency;
    j["room_size"] = o_.s5_room_size;
    j["reached_first_message"] = reached;
    j["first_message_was_status"] = status_seen;
    j["failed"] = last_open_failed_;
    if (last_open_failed_) j["first_error"] = last_open_error_;
    j["sockets_per_s"] = span > 0 ? std::round(static_cast<double>(reached) / span) : 0.0;
    j["time_to_status"] = latency_json(to_status);
    w.add(j, "socket", reached);
    engine_.on_message = nullptr;
    return j;
  }

  // --- S6: 10 % of a room stop reading ---
  Json s6() {
    Json j;
    int size = o_.s6_room;
    int stalled_n = static_cast<int>(std::round(size * o_.s6_stalled_pct / 100.0));
    int healthy_n = size - stalled_n;
    const double phase = phase_seconds(o_.s6_duration);
    auto rooms = open_rooms(1, size, "s6", healthy_n, o_.s6_stalled_rcvbuf);
    auto& room = rooms[0];
    std::vector<Conn*> healthy(room.begin(), room.begin() + healthy_n);
    std::vector<Conn*> stalled(room.begin() + healthy_n, room.end());
    quiesce();
    // Counted deliveries reach healthy members only: "sent * healthy" with one room (group 0).
    auto base = fanout_closed(healthy, healthy, phase);
    log("s6 all reading: ", base.deliveries_per_s);
    quiesce();
    auto rss0 = total_rss_kib(gateway_pids_);
    for (Conn* c : stalled) engine_.pause_reading(*c);
    std::int64_t rss_peak = rss0;
    std::int64_t next_sample = 0;
    engine_.on_tick = [&](std::int64_t now) {
      if (now >= next_sample) {
        rss_peak = std::max(rss_peak, total_rss_kib(gateway_pids_));
        next_sample = now + 100 * ms;
      }
    };
    auto slow = fanout_closed(healthy, healthy, phase);
    engine_.on_tick = nullptr;
    auto rss1 = total_rss_kib(gateway_pids_);
    rss_peak = std::max(rss_peak, rss1);
    log("s6 10% stalled: ", slow.deliveries_per_s);
    // Let the stalled ones read again and see what the server did with them.
    for (Conn* c : stalled) engine_.resume_reading(*c);
    engine_.run_until([] { return false; }, now_ns() + 1 * sec);
    std::size_t closed = 0, closed_4008 = 0;
    for (Conn* c : stalled)
      if (c->state != ConnState::open) {
        ++closed;
        if (c->close_code == 4008) ++closed_4008;
      }
    j["room_size"] = size;
    j["stalled"] = stalled_n;
    j["stalled_rcvbuf"] = o_.s6_stalled_rcvbuf;
    j["phase_s"] = phase;
    j["in_flight"] = base.window_per_room;
    Json a;
    a["healthy_deliveries_per_s"] = std::round(base.deliveries_per_s);
    base.window.add(a, "delivery", base.deliveries);
    Json b;
    b["healthy_deliveries_per_s"] = std::round(slow.deliveries_per_s);
    b["drained"] = slow.drained;
    slow.window.add(b, "delivery", slow.deliveries);
    j["all_reading"] = a;
    j["with_stalled"] = b;
    j["rate_ratio"] = base.deliveries_per_s > 0 ? round3(slow.deliveries_per_s / base.deliveries_per_s) : 0.0;
    j["rss_before_kib"] = rss0;
    j["rss_peak_kib"] = rss_peak;
    j["rss_growth_kib"] = rss_peak - rss0;
    j["queue_cap_kib_total"] = std::round(o_.queue_cap_bytes * stalled_n / 1024.0);
    j["stalled_closed_by_server"] = closed;
    j["stalled_closed_4008"] = closed_4008;
    return j;
  }

  const Options& o_;
  Engine engine_;
  WsUrl base_;
  std::vector<int> server_pids_, gateway_pids_;
  std::string tag_;
  std::string payload_;
  std::string last_open_error_;
  int last_open_failed_ = 0;
};

std::string fmt(const Json& v, const char* key, const char* unit = "") {
  if (!v.is_object() || !v.contains(key)) return "-";
  const auto& x = v[key];
  std::ostringstream s;
  if (x.is_number_float()) {
    double d = x.get<double>();
    s.setf(std::ios::fixed);
    s.precision(d >= 100 ? 0 : d >= 10 ? 1 : 2);
    s << d;
  } else {
    s << x.dump();
  }
  s << unit;
  return s.str();
}

}  // namespace

Json run_scenarios(const Options& options) {
  Runner runner(options);
  return runner.run();
}

std::string format_table(const Json& r) {
  std::ostringstream out;
  out << "target " << r.value("target", "?") << " (" << r.value("url", "no target: this machine") << ")\n";
  const auto& s = r["scenarios"];
  auto err = [&](const Json& v) { return v.is_object() && v.contains("error"); };
  if (s.contains("s1")) {
    if (err(s["s1"])) out << "S1 echo: error: " << s["s1"]["error"].get<std::string>() << "\n";
    else
      for (const auto& row : s["s1"])
        out << "S1 echo            conns=" << fmt(row, "conns") << "  msgs/s=" << fmt(row, "msgs_per_s")
            << "  p50=" << fmt(row["latency"], "p50_us", "us") << "  p99=" << fmt(row["latency"], "p99_us", "us")
            << "  cpu/msg=" << fmt(row, "server_cpu_us_per_msg", "us") << "  bench cpu=" << fmt(row, "bench_cpu_pct", "%")
            << "\n";
  }
  if (s.contains("s2")) {
    if (err(s["s2"])) out << "S2 fan-out: error: " << s["s2"]["error"].get<std::string>() << "\n";
    else
      for (const auto& row : s["s2"]) {
        out << "S2 fan-out         room=" << fmt(row, "room_size") << "  deliveries/s=" << fmt(row, "deliveries_per_s")
            << "  cpu/delivery=" << fmt(row, "server_cpu_us_per_delivery", "us")
            << "  half-load p50=" << fmt(row["half_load"]["latency"], "p50_us", "us")
            << " p99=" << fmt(row["half_load"]["latency"], "p99_us", "us");
        if (row.contains("half_load_interleaved"))
          out << " (rooms interleaved p50=" << fmt(row["half_load_interleaved"]["latency"], "p50_us", "us")
              << " p99=" << fmt(row["half_load_interleaved"]["latency"], "p99_us", "us") << ")";
        out << "  bench cpu=" << fmt(row, "bench_cpu_pct", "%") << "\n";
      }
  }
  if (s.contains("s3")) {
    const auto& v = s["s3"];
    if (err(v)) out << "S3 idle: error: " << v["error"].get<std::string>() << "\n";
    else
      out << "S3 idle            idle=" << fmt(v, "idle_open") << "  active msgs/s " << fmt(v["without_idle"], "msgs_per_s")
          << " -> " << fmt(v["with_idle"], "msgs_per_s") << " (x" << fmt(v, "rate_ratio")
          << ")  rss/idle socket=" << fmt(v, "rss_bytes_per_idle_socket", "B") << "\n";
  }
  if (s.contains("s4")) {
    const auto& v = s["s4"];
    if (err(v)) out << "S4 one socket: error: " << v["error"].get<std::string>() << "\n";
    else
      out << "S4 one socket      rtt p50=" << fmt(v["round_trip"]["latency"], "p50_us", "us")
          << " p99=" << fmt(v["round_trip"]["latency"], "p99_us", "us") << "  at " << fmt(v["fixed_rate"], "rate_offered")
          << "/s: p50=" << fmt(v["fixed_rate"]["latency"], "p50_us", "us")
          << " p99=" << fmt(v["fixed_rate"]["latency"], "p99_us", "us") << " (slowest 1 % in "
          << fmt(v["fixed_rate"], "tail_windows_10ms") << " of " << fmt(v["fixed_rate"], "windows_10ms") << " 10 ms windows)\n";
    if (!err(v) && v.contains("rate_sweep")) {
      out << "S4 p99 by rate    ";
      for (const auto& row : v["rate_sweep"])
        out << " " << fmt(row, "rate_offered") << "/s: " << fmt(row["latency"], "p99_us", "us");
      out << "\n";
    }
  }
  if (s.contains("s5")) {
    const auto& v = s["s5"];
    if (err(v)) out << "S5 storm: error: " << v["error"].get<std::string>() << "\n";
    else
      out << "S5 storm           sockets=" << fmt(v, "sockets") << "  reached=" << fmt(v, "reached_first_message")
          << "  sockets/s=" << fmt(v, "sockets_per_s") << "  p50=" << fmt(v["time_to_status"], "p50_us", "us")
          << " p99=" << fmt(v["time_to_status"], "p99_us", "us") << "\n";
  }
  if (s.contains("s6")) {
    const auto& v = s["s6"];
    if (err(v)) out << "S6 slow readers: error: " << v["error"].get<std::string>() << "\n";
    else
      out << "S6 slow readers    room=" << fmt(v, "room_size") << " stalled=" << fmt(v, "stalled")
          << "  healthy deliveries/s " << fmt(v["all_reading"], "healthy_deliveries_per_s") << " -> "
          << fmt(v["with_stalled"], "healthy_deliveries_per_s") << " (x" << fmt(v, "rate_ratio")
          << ")  rss growth=" << fmt(v, "rss_growth_kib", "KiB") << "  closed 4008=" << fmt(v, "stalled_closed_4008")
          << "\n";
  }
  if (s.contains("host")) {
    const auto& v = s["host"];
    if (err(v)) out << "host: error: " << v["error"].get<std::string>() << "\n";
    else
      out << "host               eventfd hand-off p50=" << fmt(v["handoff"]["wake"], "p50_us", "us")
          << " p99=" << fmt(v["handoff"]["wake"], "p99_us", "us") << " p99.9=" << fmt(v["handoff"]["wake"], "p999_us", "us")
          << " max=" << fmt(v["handoff"]["wake"], "max_us", "us") << "\n"
          << "host               1 ms sleeps late p50=" << fmt(v["sleep"]["late"], "p50_us", "us")
          << " p99=" << fmt(v["sleep"]["late"], "p99_us", "us") << " p99.9=" << fmt(v["sleep"]["late"], "p999_us", "us")
          << " max=" << fmt(v["sleep"]["late"], "max_us", "us") << " (>0.5 ms: " << fmt(v["sleep"], "late_over_500us_per_10k")
          << " per 10 000)  spinning thread lost " << fmt(v["spin"], "lost_pct", "%") << " in gaps >50 us, worst "
          << fmt(v["spin"], "worst_gap_us", "us") << "\n";
  }
  return out.str();
}

}  // namespace sb::bench
