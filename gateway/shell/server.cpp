#include "gateway/shell/server.hpp"

#include <libwebsockets.h>
#include <ev.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <malloc.h>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "common/close_codes.hpp"
#include "common/log.hpp"
#include "common/uring_batch.hpp"
#include "common/wsid.hpp"
#include "gateway/core/gateway_core.hpp"
#include "gateway/core/routes.hpp"
#include "gateway/core/size_class_pool.hpp"
#include "gateway/core/ws_frame.hpp"
#include "gateway/shell/pool_router.hpp"

namespace sb::gateway {

std::string_view chat_page();  // generated from web/index.html by embed.cmake

namespace {

// lws' blocks in 8-byte size classes (see size_class_pool.hpp). Loop thread. Never destroyed:
// lws frees into it until the process exits.
SizeClassPool& lws_pool() {
  static SizeClassPool& pool = *new SizeClassPool;
  return pool;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// An HTTP response in flight (the page, /healthz, a 404): LWS_PRE bytes, then the body.
struct HttpResponse {
  std::string body;
  std::size_t sent = 0;
};

std::string header(struct lws* wsi, enum lws_token_indexes token) {
  int length = lws_hdr_total_length(wsi, token);
  if (length <= 0) return {};
  std::string out(static_cast<std::size_t>(length) + 1, '\0');
  int copied = lws_hdr_copy(wsi, out.data(), length + 1, token);
  if (copied < 0) return {};
  out.resize(static_cast<std::size_t>(copied));
  return out;
}

// Every query argument, as lws decoded it ("name=value").
std::vector<std::string> query_args(struct lws* wsi) {
  std::vector<std::string> args;
  char buffer[1024];
  for (int i = 0;; ++i) {
    int n = lws_hdr_copy_fragment(wsi, buffer, sizeof buffer, WSI_TOKEN_HTTP_URI_ARGS, i);
    if (n < 0) break;
    args.emplace_back(buffer, static_cast<std::size_t>(n));
  }
  return args;
}

// The value of one cookie in a Cookie header, or "".
std::string cookie_value(std::string_view cookies, std::string_view name) {
  while (!cookies.empty()) {
    auto semi = cookies.find(';');
    auto part = cookies.substr(0, semi);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.size() > name.size() && part.substr(0, name.size()) == name && part[name.size()] == '=')
      return std::string(part.substr(name.size() + 1));
    if (semi == std::string_view::npos) break;
    cookies.remove_prefix(semi + 1);
  }
  return {};
}

std::string random_hex(std::size_t bytes) {
  static std::mt19937_64 rng{std::random_device{}()};
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes; ++i) {
    auto v = rng() & 0xff;
    out += digits[v >> 4];
    out += digits[v & 15];
  }
  return out;
}

constexpr std::string_view session_cookie = "sbsession";

}  // namespace

struct Server::Impl final : SocketDriver, PoolRouter::Sink {
  GatewayConfig config;
  GatewayCore core;
  // libev, not libuv: lws' libev plugin keeps its watchers inside each connection's own
  // allocation, where the libuv one adds a separate ~176-byte uv_poll_t per socket (S3 memory).
  struct ev_loop* loop = nullptr;
  ev_prepare pool_prepare{};  // end of every loop turn, before the loop blocks
  ev_idle pool_idle{};        // runs only while pool input is left over, so the loop does not block
  ev_timer tick_timer{};
  ev_timer shutdown_timer{};
  // --reuse-port only: our own listening socket (lws 4.1 here does not set SO_REUSEPORT), its
  // accepted connections handed to lws. Loop thread only.
  int listen_fd = -1;
  ev_io listen_poll{};
  ev_timer accept_pause{};  // out of descriptors: accepting resumes after a pause
  struct lws_vhost* vhost = nullptr;
  std::uint64_t adopt_failures = 0;
  std::uint64_t accept_failures = 0;
  ev_signal sigint{}, sigterm{};
  bool idle_active = false;
  bool shutting_down = false;
  int shutdown_waited_ms = 0;
  struct lws_context* context = nullptr;
  std::unique_ptr<PoolRouter> pool;
  std::int64_t receive_now_ms = 0;  // the clock for the bodies of one drain_pool()
  std::string write_buffer;  // reused for every write: LWS_PRE bytes then frames
  // Batched writes (--io-uring): one loop turn's output, sent with one system call per batch
  // of up to batch_sockets sockets.
  static constexpr unsigned batch_sockets = 256;
  UringBatch batch_writer;
  struct BatchedWrite {
    Session* session;
    struct lws* wsi;
    std::size_t begin, end;  // its bytes in batch_bytes
  };
  std::vector<BatchedWrite> batch;
  std::string batch_bytes;
  std::uint64_t sndbuf_failures = 0;       // setsockopt(SO_SNDBUF) refused (logged, socket kept)
  std::uint64_t writes_batched = 0;        // sends that went through batch_writer
  std::uint64_t writes_handed_to_lws = 0;  // of those, the ones a socket did not take whole
  // Sockets with output to write, in the order they got it; each loop turn writes up to
  // max_socket_writes_per_turn from the front (see flush_writers). A listed socket's newer
  // output joins its place in line. Loop thread only.
  std::deque<Session*> write_line;
  std::vector<Session*> flushing;
  std::size_t writes_left_this_turn = 0;  // reset at the end of every turn (end_of_turn)
  ev_idle write_idle{};                   // active while write_line is not empty: the loop must not block
  std::uint64_t turns_over_write_budget = 0;  // turns that left sockets for the next one
  std::uint64_t pool_send_dropped = 0;  // bodies not sent: worker unreachable or over HWM
  std::uint64_t too_big_closes = 0;
  // lws allocates no per-connection memory for us (per_session_data_size 0, saving a malloc
  // per socket): a WebSocket's lws user pointer is its Session (set once established), and the
  // rare HTTP responses live here. Loop thread only.
  std::unordered_map<struct lws*, HttpResponse> http_responses;
  std::uint64_t refused_handshakes = 0;
  // Lateness of the periodic tick: how long something blocked the loop.
  std::uint64_t tick_period_ms = 250;
  std::int64_t tick_due_ms = 0;
  std::uint64_t loop_drift_last_ms = 0;
  std::uint64_t loop_drift_max_ms = 0;
  struct lws_protocols protocols[2]{};

  template <typename Watcher>
  static Impl* self_of(Watcher* w) {
    return static_cast<Impl*>(w->data);
  }

  explicit Impl(const GatewayConfig& c) : config(c), core(c, new_epoch(), *this) {}

  // --- SocketDriver ---
  // New output is written at the end of the loop turn, straight from here when the socket has
  // nothing buffered (the usual case): asking lws for WRITEABLE costs two epoll_ctl calls per
  // message. A socket with buffered output waits for WRITEABLE, so at most one batch sits in
  // lws' own buffer and the rest stays in our bounded queue.
  void wake_writer(Session& session) override {
    if (session.flush_listed || session.writer_woken || !session.transport) return;
    session.flush_listed = true;
    write_line.push_back(&session);
  }

  void request_writeable(Session& session) {
    if (session.writer_woken || !session.transport) return;
    session.writer_woken = true;
    lws_callback_on_writable(static_cast<struct lws*>(session.transport));
  }

  // Sends write_buffer (LWS_PRE bytes, then complete frames) raw in one lws_write.
  bool write_out(struct lws* wsi, const Session& s) {
    std::size_t n = write_buffer.size() - LWS_PRE;
    int written = lws_write(wsi, reinterpret_cast<unsigned char*>(write_buffer.data()) + LWS_PRE, n, LWS_WRITE_RAW);
    if (written >= static_cast<int>(n)) return true;
    log::warn("write to ", s.wsid(), " failed (", written, " of ", n, " bytes)");
    return false;
  }

  // A listed socket's new output, if it can be written now; else nullptr (WRITEABLE takes over).
  struct lws* direct_writable(Session* s) {
    s->flush_listed = false;
    if (!s->transport || s->writer_woken) return nullptr;
    auto* wsi = static_cast<struct lws*>(s->transport);
    if (s->closing_by_us || s->peer_close_code) return nullptr;
    if (s->closing || s->close_now || lws_partial_buffered(wsi)) {
      request_writeable(*s);  // closing is done from WRITEABLE
      return nullptr;
    }
    return wsi;
  }

  // Writes the sockets at the front of the line, up to this turn's budget.
  void flush_writers() {
    std::size_t n = std::min(write_line.size(), writes_left_this_turn);
    if (n == 0) return;
    writes_left_this_turn -= n;
    flushing.assign(write_line.begin(), write_line.begin() + static_cast<std::ptrdiff_t>(n));
    write_line.erase(write_line.begin(), write_line.begin() + static_cast<std::ptrdiff_t>(n));
    if (batch_writer.started() && flushing.size() > 1) {  // one socket: a plain send is as cheap
      flush_writers_batched();
    } else {
      for (Session* s : flushing) {
        auto* wsi = direct_writable(s);
        if (!wsi) continue;
        write_buffer.assign(LWS_PRE, '\0');
        if (core.next_output(*s, write_buffer) != GatewayCore::Output::data) continue;
        bool ok = write_out(wsi, *s);
        // More queued, or the write failed (WRITEABLE then closes it): continue from WRITEABLE.
        if (!s->queue.empty() || !ok) request_writeable(*s);
      }
    }
    flushing.clear();
  }

  // The same, with the sends of up to a ring's worth of sockets in one system call. The bytes go
  // to the socket directly, which is safe only while lws holds nothing unsent for it (checked
  // above); whatever a socket does not take is handed to lws, which then sends it before
  // anything else it writes there (pongs, close frames).
  void flush_writers_batched() {
    std::size_t next = 0;
    while (next < flushing.size()) {
      batch_bytes.clear();
      batch.clear();
      for (; next < flushing.size() && batch.size() < batch_writer.capacity() &&
             batch_bytes.size() < config.max_write_batch_bytes * 16;
           ++next) {
        Session* s = flushing[next];
        auto* wsi = direct_writable(s);
        if (!wsi) continue;
        std::size_t begin = batch_bytes.size();
        if (core.next_output(*s, batch_bytes) != GatewayCore::Output::data) continue;
        batch.push_back({s, wsi, begin, batch_bytes.size()});
      }
      // batch_bytes is complete: its buffer no longer moves.
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto& w = batch[i];
        batch_writer.add_send(lws_get_socket_fd(w.wsi), batch_bytes.data() + w.begin, w.end - w.begin, i);
      }
      batch_writer.flush([&](std::uint64_t i, int result) { finish_batched_write(batch[i], result); });
    }
  }

  void finish_batched_write(const BatchedWrite& w, int result) {
    std::size_t size = w.end - w.begin;
    bool ok = true;
    ++writes_batched;
    if (result < 0 || static_cast<std::size_t>(result) < size) {
      // Short, EAGAIN, or an error (lws meets it again and closes the socket).
      ++writes_handed_to_lws;
      std::size_t sent = result > 0 ? static_cast<std::size_t>(result) : 0;
      write_buffer.assign(LWS_PRE, '\0');
      write_buffer.append(batch_bytes, w.begin + sent, size - sent);
      ok = write_out(w.wsi, *w.session);
    }
    if (!w.session->queue.empty() || !ok) request_writeable(*w.session);
  }
  void set_reading(Session& session, bool enabled) override {
    if (session.transport) lws_rx_flow_control(static_cast<struct lws*>(session.transport), enabled ? 1 : 0);
  }

  void on_tick() {
    auto now = now_ms();
    auto period = static_cast<std::int64_t>(tick_period_ms);
    if (tick_due_ms != 0) {
      loop_drift_last_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - tick_due_ms));
      loop_drift_max_ms = std::max(loop_drift_max_ms, loop_drift_last_ms);
    }
    tick_due_ms = now + period;
    core.tick(now);
    // Timers run before the loop's poll phase: send heartbeats and re-sends now, not after
    // the next wake-up.
    end_of_turn();
  }

  // --- pool ---
  void open_pool() {
    pool = make_pool_router(config, loop, [this] { service_pool(); });
    ev_prepare_init(&pool_prepare, [](struct ev_loop*, ev_prepare* w, int) { self_of(w)->end_of_turn(); });
    pool_prepare.data = this;
    ev_prepare_start(loop, &pool_prepare);
    ev_idle_init(&pool_idle, [](struct ev_loop*, ev_idle* w, int) { self_of(w)->service_pool(); });
    // libev runs an idle watcher only when nothing of its priority or higher is pending: at the
    // sockets' priority, a steady stream of socket events would starve the pool's leftovers.
    // Above them it runs every loop turn while active, as uv_idle did.
    ev_set_priority(&pool_idle, EV_MAXPRI);
    pool_idle.data = this;
    // Only its being active matters (the loop polls without blocking); end_of_turn writes.
    ev_idle_init(&write_idle, [](struct ev_loop*, ev_idle*, int) {});
    writes_left_this_turn = write_budget();
  }

  // Reads what the pool has (bounded per turn), then sends what the core queued. With
  // libzmq's edge-triggered ZMQ_FD a send may take the edge of new input unseen, so after
  // sending, input_unreported() is asked once before the loop may block (a system call there,
  // so none is made when nothing was sent).
  void service_pool() {
    if (!pool) return;
    std::size_t handled = 0;
    bool more = false;
    for (int round = 0; round < 4; ++round) {
      more = drain_pool(handled);
      bool sent = flush_pool();
      if (more) break;  // budget spent: the idle handle brings us back after the sockets' turn
      if (!sent || !pool->input_unreported()) break;  // settled: a watcher reports the next input
    }
    flush_writers();
    if (more && !idle_active) {
      ev_idle_start(loop, &pool_idle);
      idle_active = true;
    } else if (!more && idle_active) {
      ev_idle_stop(loop, &pool_idle);
      idle_active = false;
    }
  }

  // End of a loop turn: the sockets' callbacks may have queued pool messages and output.
  // The pool's watchers had their turn (had one fired, its callback ran), so there is nothing to
  // receive before sending: send, then check once whether the send hid new input.
  void end_of_turn() {
    if (pool && flush_pool() && !idle_active && pool->input_unreported()) service_pool();
    else flush_writers();
    if (!write_line.empty()) ++turns_over_write_budget;
    writes_left_this_turn = write_budget();
    // Sockets left in line: the next turn polls without blocking, reads, then writes on.
    bool spin = !write_line.empty();
    if (spin != static_cast<bool>(ev_is_active(&write_idle))) {
      if (spin) ev_idle_start(loop, &write_idle);
      else ev_idle_stop(loop, &write_idle);
    }
  }

  std::size_t write_budget() const {
    return config.max_socket_writes_per_turn ? config.max_socket_writes_per_turn : SIZE_MAX;
  }

  // PoolRouter::Sink: every body the pool reads.
  void pool_body(const std::string& routing_id, std::string_view body) override {
    core.pool_message(routing_id, body, receive_now_ms);
  }

  bool drain_pool(std::size_t& handled) {
    receive_now_ms = now_ms();
    return pool->receive(handled, config.pool_drain_batch, *this);
  }

  // Sends what the core queued; returns true if anything was handed to ZeroMQ.
  bool flush_pool() {
    if (core.outbox_empty()) return false;
    std::vector<std::string> unreachable;
    for (auto& [routing_id, bodies] : core.outbox()) {
      if (bodies.empty()) continue;
      auto result = pool->send(routing_id, bodies);
      if (result != PoolRouter::Send::sent) {
        pool_send_dropped += bodies.size();
        if (result == PoolRouter::Send::unreachable) {
          unreachable.push_back(routing_id);
          log::warn("worker '", routing_id, "' unreachable: ", bodies.size(), " pool messages dropped");
        } else {
          log::warn("pool send to '", routing_id, "' refused (high-water mark): ", bodies.size(),
                    " pool messages dropped");
        }
      }
      bodies.clear();
    }
    core.outbox_flushed();
    for (const auto& id : unreachable) core.worker_unreachable(id, now_ms());
    return true;
  }

  // --- lws ---
  static int callback(struct lws* wsi, enum lws_callback_reasons reason, void* user, void* in, std::size_t len) {
    auto* context = lws_get_context(wsi);
    auto* self = context ? static_cast<Impl*>(lws_context_user(context)) : nullptr;
    if (!self) return lws_callback_http_dummy(wsi, reason, user, in, len);
    return self->on_event(wsi, reason, static_cast<Session*>(user), in, len);
  }

  // `s` is the socket's Session once established, else nullptr.
  int on_event(struct lws* wsi, enum lws_callback_reasons reason, Session* s, void* in, std::size_t len) {
    switch (reason) {
      case LWS_CALLBACK_HTTP: return on_http(wsi, static_cast<const char*>(in));
      case LWS_CALLBACK_HTTP_WRITEABLE: return on_http_writeable(wsi);
      case LWS_CALLBACK_CLOSED_HTTP:
      case LWS_CALLBACK_HTTP_DROP_PROTOCOL: http_responses.erase(wsi); break;
      case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: return on_filter(wsi);
      case LWS_CALLBACK_ESTABLISHED: return on_established(wsi);
      case LWS_CALLBACK_RECEIVE: return on_receive(wsi, s, static_cast<const char*>(in), len);
      case LWS_CALLBACK_RECEIVE_PONG:
        if (s) core.heard(*s, now_ms());
        return 0;
      case LWS_CALLBACK_SERVER_WRITEABLE: return on_ws_writeable(wsi, s);
      case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (s) {
          auto* bytes = static_cast<const unsigned char*>(in);
          // A close frame without a code is reported as 1005, no close frame at all as 1006.
          s->peer_close_code =
              len >= 2 ? static_cast<std::uint16_t>(bytes[0] << 8 | bytes[1]) : close_code::no_status;
        }
        break;
      case LWS_CALLBACK_CLOSED: on_closed(wsi, s); break;
      default: break;
    }
    return lws_callback_http_dummy(wsi, reason, s, in, len);
  }

  std::string healthz_body() {
    const auto& c = core.counters();
    std::string body = "{\"status\":\"";
    body += core.live_workers() ? "ok" : "no workers";
    body += "\",\"gateway_id\":\"" + config.gateway_id + "\",\"epoch\":" + std::to_string(core.epoch()) +
            ",\"workers\":" + std::to_string(core.live_workers()) +
            ",\"sockets\":" + std::to_string(core.session_count()) +
            ",\"closed_pending\":" + std::to_string(core.closed_pending()) + ",\"counters\":{";
    const std::pair<const char*, std::uint64_t> counters[] = {
        {"sockets_opened", c.sockets_opened},
        {"sockets_closed", c.sockets_closed},
        {"refused_no_worker", c.refused_no_worker},
        {"refused_handshakes", refused_handshakes},
        {"accept_failures", accept_failures},  // --reuse-port's own listener (EMFILE...)
        {"adopt_failures", adopt_failures},
        {"messages_in", c.messages_in},
        {"reads_paused", c.reads_paused},
        {"frames_queued", c.frames_queued},
        {"bytes_queued", c.bytes_queued},
        {"slow_consumer_closes", c.slow_consumer_closes},
        {"too_big_closes", too_big_closes},
        {"gone_sent", c.gone_sent},
        {"pool_messages_in", c.pool_messages_in},
        {"pool_decode_errors", c.pool_decode_errors},
        {"pool_unexpected", c.pool_unexpected},
        {"pool_send_dropped", pool_send_dropped},
        {"pool_connects", pool->counters().connects},  // the ZMTP router's (0 with --pool-server libzmq)
        {"pool_disconnects", pool->counters().disconnects},
        {"pool_handovers", pool->counters().handovers},
        {"pool_protocol_errors", pool->counters().protocol_errors},
        {"pool_lost_on_disconnect", pool->counters().lost_on_disconnect},
        {"pool_accept_failures", pool->counters().accept_failures},
        {"writes_batched", writes_batched},
        {"turns_over_write_budget", turns_over_write_budget},
        {"writes_handed_to_lws", writes_handed_to_lws},
        {"sndbuf_failures", sndbuf_failures},  // --socket-send-buffer-bytes not applied
        {"welcomes_unsolicited", c.welcomes_unsolicited},
        {"workers_registered", c.workers_registered},
        {"workers_lost", c.workers_lost},
        {"workers_drained", c.workers_drained},
        {"failover_detect_ms_last", c.failover_detect_ms_last},
        {"sessions_moved", c.sessions_moved},
        {"events_resent", c.events_resent},
        {"dedicated_closed", c.dedicated_closed},
        {"acks", c.acks},
        {"acks_ignored", c.acks_ignored},
        {"duplicates_suppressed", c.duplicates_suppressed},
        {"stale_suppressed", c.stale_suppressed},
        {"orphan_closes_dropped", c.orphan_closes_dropped},
        {"idle_events", c.idle_events},
        {"pings_sent", c.pings_sent},
        {"ping_timeouts", c.ping_timeouts},
        {"loop_drift_last_ms", loop_drift_last_ms},
        {"loop_drift_max_ms", loop_drift_max_ms},
        {"heap_in_use_bytes", static_cast<std::uint64_t>(mallinfo2().uordblks)},
        // libwebsockets' small blocks live in our pool, not in malloc's heap. Reserved is the
        // arenas' address space (one 256 KiB arena per size class in use, pages touched only as
        // blocks are handed out), kept for reuse once a burst of sockets has gone.
        {"lws_pool_in_use_bytes", lws_pool().stats().bytes_in_use},
        {"lws_pool_reserved_bytes", lws_pool().stats().arenas * SizeClassPool::arena_bytes},
    };
    bool first = true;
    for (const auto& [name, value] : counters) {
      body += (first ? "\"" : ",\"") + std::string(name) + "\":" + std::to_string(value);
      first = false;
    }
    body += "}}\n";
    return body;
  }

  int respond(struct lws* wsi, unsigned status, const char* content_type, std::string body,
              bool set_cookie) {
    unsigned char headers[LWS_PRE + 1024];
    unsigned char *start = headers + LWS_PRE, *p = start, *end = headers + sizeof headers - 1;
    if (lws_add_http_common_headers(wsi, status, content_type, body.size(), &p, end)) return 1;
    static constexpr char no_store[] = "no-store";
    if (lws_add_http_header_by_name(wsi, reinterpret_cast<const unsigned char*>("cache-control:"),
                                    reinterpret_cast<const unsigned char*>(no_store), sizeof no_store - 1, &p, end))
      return 1;
    if (set_cookie) {
      std::string cookie = std::string(session_cookie) + "=" + random_hex(16) + "; Path=/; HttpOnly; SameSite=Lax";
      if (lws_add_http_header_by_name(wsi, reinterpret_cast<const unsigned char*>("set-cookie:"),
                                      reinterpret_cast<const unsigned char*>(cookie.data()),
                                      static_cast<int>(cookie.size()), &p, end))
        return 1;
    }
    if (lws_finalize_write_http_header(wsi, start, &p, end)) return 1;
    auto& response = http_responses[wsi];
    response.body.assign(LWS_PRE, '\0');
    response.body.append(body);
    response.sent = 0;
    lws_callback_on_writable(wsi);
    return 0;
  }

  int on_http(struct lws* wsi, const char* uri) {
    std::string_view path = uri ? uri : "";
    if (path == "/" || path == "/index.html") {
      bool has_cookie = !cookie_value(header(wsi, WSI_TOKEN_HTTP_COOKIE), session_cookie).empty();
      return respond(wsi, HTTP_STATUS_OK, "text/html; charset=utf-8", std::string(chat_page()), !has_cookie);
    }
    if (path == "/healthz") {
      unsigned status = core.live_workers() ? HTTP_STATUS_OK : HTTP_STATUS_SERVICE_UNAVAILABLE;
      return respond(wsi, status, "application/json", healthz_body(), false);
    }
    return respond(wsi, HTTP_STATUS_NOT_FOUND, "text/plain; charset=utf-8",
                   "404 not found: " + std::string(path) + "\n", false);
  }

  int on_http_writeable(struct lws* wsi) {
    auto it = http_responses.find(wsi);
    if (it == http_responses.end()) return 0;
    constexpr std::size_t chunk = 16 * 1024;  // bounded per callback; lws buffers what the kernel refuses
    std::string& body = it->second.body;
    std::size_t& sent = it->second.sent;
    std::size_t left = body.size() - LWS_PRE - sent;
    std::size_t n = left < chunk ? left : chunk;
    bool last = n == left;
    // lws_write may use the LWS_PRE bytes before `data`; they lie inside the body buffer.
    unsigned char* data = reinterpret_cast<unsigned char*>(body.data()) + LWS_PRE + sent;
    if (lws_write(wsi, data, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != static_cast<int>(n)) return -1;
    sent += n;
    if (!last) {
      lws_callback_on_writable(wsi);
      return 0;
    }
    http_responses.erase(it);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  }

  int refuse_handshake(struct lws* wsi, unsigned status, const std::string& why) {
    ++refused_handshakes;
    log::info("refusing WebSocket handshake: ", why);
    lws_return_http_status(wsi, status, why.c_str());
    return -1;
  }

  int on_filter(struct lws* wsi) {
    if (shutting_down) return refuse_handshake(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "gateway shutting down");
    std::string path = header(wsi, WSI_TOKEN_GET_URI);
    auto app = app_for_path(path);
    auto state = app ? core.app_state(*app) : GatewayCore::AppState::unknown;
    if (state == GatewayCore::AppState::unknown) return refuse_handshake(wsi, HTTP_STATUS_NOT_FOUND, "no app at " + path);
    if (state == GatewayCore::AppState::unavailable)
      return refuse_handshake(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "no live worker serves app " + *app);
    if (core.session_count() >= config.max_sockets)
      return refuse_handshake(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "socket limit reached");
    return 0;
  }

  int on_established(struct lws* wsi) {
    if (config.socket_send_buffer_bytes > 0) {
      // Fixing it also turns the kernel's autotuning off for this socket, which is the point.
      int size = static_cast<int>(config.socket_send_buffer_bytes);
      if (::setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF, &size, sizeof size) != 0 &&
          log::worth_logging(++sndbuf_failures))
        log::warn("SO_SNDBUF ", size, ": ", std::strerror(errno), " (", sndbuf_failures, " so far)");
    }
    OpenParams params;
    params.path = header(wsi, WSI_TOKEN_GET_URI);
    params.app = app_for_path(params.path).value_or("");
    params.query = encode_query(query_args(wsi));
    static constexpr std::pair<const char*, lws_token_indexes> forwarded[] = {
        {"host", WSI_TOKEN_HOST},
        {"origin", WSI_TOKEN_ORIGIN},
        {"user-agent", WSI_TOKEN_HTTP_USER_AGENT},
        {"cookie", WSI_TOKEN_HTTP_COOKIE},
        {"accept-language", WSI_TOKEN_HTTP_ACCEPT_LANGUAGE},
        {"x-forwarded-for", WSI_TOKEN_X_FORWARDED_FOR},
        {"sec-websocket-protocol", WSI_TOKEN_PROTOCOL},
    };
    for (const auto& [name, token] : forwarded) {
      std::string value = header(wsi, token);
      if (!value.empty()) params.headers.emplace_back(name, std::move(value));
    }
    params.session_id = cookie_value(header(wsi, WSI_TOKEN_HTTP_COOKIE), session_cookie);
    if (params.session_id.empty()) params.session_id = random_hex(16);  // no cookie: one per socket
    char peer[64] = {0};
    lws_get_peer_simple(wsi, peer, sizeof peer);
    params.remote_address = peer;
    params.transport = wsi;
    Session* session = core.open_session(std::move(params), now_ms());
    if (!session) {
      // The worker vanished between the handshake filter and now.
      static constexpr char why[] = "no worker available";
      lws_close_reason(wsi, static_cast<lws_close_status>(close_code::try_again_later),
                       reinterpret_cast<unsigned char*>(const_cast<char*>(why)), sizeof why - 1);
      return -1;
    }
    lws_set_wsi_user(wsi, session);
    return 0;
  }

  int close_with(struct lws* wsi, Session& s, std::uint16_t code, const std::string& reason) {
    s.closing_by_us = true;
    s.close_code = code;
    std::string text = reason.substr(0, 123);  // close payload is at most 125 bytes
    lws_close_reason(wsi, static_cast<lws_close_status>(code), reinterpret_cast<unsigned char*>(text.data()),
                     text.size());
    return -1;
  }

  int on_receive(struct lws* wsi, Session* s, const char* data, std::size_t len) {
    if (!s) return -1;
    if (s->closing_by_us) return 0;  // we sent a close frame: later client data is moot
    core.heard(*s, now_ms());
    // Refuse as soon as the frame header announces too much: nothing is buffered first.
    std::size_t remaining = lws_remaining_packet_payload(wsi);
    std::size_t have = s->rx ? s->rx->size() : 0;
    if (have + len + remaining > config.max_message_bytes) {
      ++too_big_closes;
      log::warn("closing ", s->wsid(), " with 1009: message of at least ", have + len + remaining,
                " bytes over the limit of ", config.max_message_bytes);
      return close_with(wsi, *s, close_code::message_too_big, "message too big");
    }
    bool complete = lws_is_final_fragment(wsi) && remaining == 0;
    if (!s->rx) {
      // Most messages arrive whole: straight to the core, no per-socket buffer.
      if (complete) {
        core.client_message(*s, lws_frame_is_binary(wsi), std::string(data, len), now_ms());
        return 0;
      }
      s->rx = std::make_unique<std::string>();
      s->rx_binary = lws_frame_is_binary(wsi);
    }
    s->rx->append(data, len);
    if (complete) {
      std::string message = std::move(*s->rx);
      s->rx.reset();
      core.client_message(*s, s->rx_binary, std::move(message), now_ms());
    }
    return 0;
  }

  int on_ws_writeable(struct lws* wsi, Session* s) {
    if (!s) return 0;
    s->writer_woken = false;
    if (s->closing_by_us) return 0;  // close frame sent; waiting for the client's answer
    write_buffer.assign(LWS_PRE, '\0');
    switch (core.next_output(*s, write_buffer)) {
      case GatewayCore::Output::none: return 0;
      case GatewayCore::Output::close:
        // Returning -1 here made lws 4.1 (seen on libuv) drop the socket without a close frame
        // (it does send one when -1 comes from RECEIVE), so the close frame is ours: sent raw,
        // then lws closes when the client answers it, or at the timeout.
        s->closing_by_us = true;
        append_close_frame(write_buffer, s->close_code, s->close_reason());
        lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
        break;
      case GatewayCore::Output::data: break;
    }
    // One lws_write per WRITEABLE.
    if (!write_out(wsi, *s)) return -1;
    if (!s->closing_by_us && (!s->queue.empty() || s->closing || s->close_now)) request_writeable(*s);
    return 0;
  }

  void on_closed(struct lws* wsi, Session* s) {
    if (!s) return;
    lws_set_wsi_user(wsi, nullptr);  // the core may free the session
    s->rx.reset();  // a partial message cut off by the close; the session waits for its CLOSE ACK
    if (s->flush_listed) std::erase(write_line, s);  // the core may free it before the next flush
    std::uint16_t code = s->closing_by_us ? s->close_code
                         : s->peer_close_code ? s->peer_close_code
                                               : close_code::abnormal;
    core.session_closed(*s, code, s->closing_by_us ? s->close_reason() : std::string());
  }

  // --- start and stop ---
  void start_lws() {
    auto listen = parse_host_port(config.listen);
    protocols[0].name = "switchboard";
    protocols[0].callback = &Impl::callback;
    protocols[0].per_session_data_size = 0;  // see http_responses
    // Longer messages arrive in pieces, reassembled in Session::rx (see GatewayConfig).
    protocols[0].rx_buffer_size = config.rx_buffer_bytes;
    // lws caps one send at tx_packet_size, or at rx_buffer_size when that is 0: without this a
    // coalesced 64 KiB write would leave in 276-byte pieces, each needing another WRITEABLE.
    protocols[0].tx_packet_size = config.max_write_batch_bytes + 1024;

    struct lws_context_creation_info info;
    std::memset(&info, 0, sizeof info);
    void* foreign_loops[1] = {loop};
    info.foreign_loops = foreign_loops;
    info.options = LWS_SERVER_OPTION_LIBEV | LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    // With --reuse-port the vhost does not listen; open_shared_listener() accepts for it.
    info.port = config.reuse_port ? CONTEXT_PORT_NO_LISTEN_SERVER : listen->port;
    info.iface = listen->host.c_str();
    info.protocols = protocols;
    info.user = this;
    // lws' default idle policy arms a validity timer on every connection and re-arms it on
    // every frame received, each time an insertion into one sorted list of all such timers:
    // O(sockets) per message and quadratic in a connect storm. Idle handling is ours (IDLE
    // events to the apps), so that policy is switched off.
    static const lws_retry_bo_t no_validity_timers = {nullptr, 0, 0, 0, 0, 0};
    info.retry_and_idle_policy = &no_validity_timers;
    info.count_threads = 1;
    info.timeout_secs = 10;
    // Each handshake in progress holds ~5 KiB of lws header buffers, freed once upgraded; but a
    // storm of them leaves the heap that much bigger (glibc keeps freed chunks below the top):
    // 1 000 at once cost ~240 B for every socket that stays (S3, bench/README.md). Connections
    // over the cap wait for a slot; one slot is held at most timeout_secs.
    info.max_http_header_pool = static_cast<unsigned short>(config.max_pending_handshakes);
    context = lws_create_context(&info);
    if (!context) throw std::runtime_error("cannot listen on " + config.listen);
    // lws 4.1 returns a context even when its vhost could not bind (it only logs): check.
    vhost = lws_get_vhost_by_name(context, "default");
    if (!vhost) throw std::runtime_error("cannot listen on " + config.listen + " (address in use?)");
    if (config.reuse_port) open_shared_listener(*listen);
  }

  void open_shared_listener(const HostPort& where) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(where.port));
    if (inet_pton(AF_INET, where.host.c_str(), &address.sin_addr) != 1)
      throw std::runtime_error("--reuse-port needs an IPv4 address in --listen, got " + where.host);
    listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (listen_fd < 0 || ::setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        ::setsockopt(listen_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        ::bind(listen_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listen_fd, SOMAXCONN) != 0)
      throw std::runtime_error("cannot listen on " + config.listen + " with SO_REUSEPORT: " + std::strerror(errno));
    ev_io_init(&listen_poll, [](struct ev_loop*, ev_io* w, int) { self_of(w)->accept_some(); }, listen_fd, EV_READ);
    listen_poll.data = this;
    ev_timer_init(&accept_pause, [](struct ev_loop*, ev_timer* w, int) { self_of(w)->start_accepting(); }, 0.1, 0);
    accept_pause.data = this;
    start_accepting();
  }

  void start_accepting() {
    ev_io_start(loop, &listen_poll);
  }

  // Hands new connections to lws as it would its own: HTTP first, the upgrade as usual.
  void accept_some() {
    for (int i = 0; i < 64; ++i) {  // bounded: the sockets get their turn too
      int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED) return;
        if (log::worth_logging(++accept_failures))
          log::warn("accept on ", config.listen, ": ", std::strerror(err), " (", accept_failures, " failures so far)");
        if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
          // The connection stays queued and the socket readable: without a pause the loop
          // would spin on it. Retry in 100 ms.
          ev_io_stop(loop, &listen_poll);
          ev_timer_start(loop, &accept_pause);  // one-shot, 100 ms (set at init)
        }
        return;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (!lws_adopt_socket_vhost(vhost, fd)) {
        // lws closes the descriptor itself when adoption fails part-way; only count it.
        if (log::worth_logging(++adopt_failures)) log::warn("lws refused an accepted connection (", adopt_failures, " so far)");
      }
    }
  }

  void close_shared_listener() {
    if (listen_fd < 0) return;
    ev_io_stop(loop, &listen_poll);
    ev_timer_stop(loop, &accept_pause);
    ::close(listen_fd);
    listen_fd = -1;
  }

  void start_timers() {
    tick_period_ms = std::max<std::uint64_t>(10, config.heartbeat_ms / 4);
    double period = static_cast<double>(tick_period_ms) / 1000.0;
    ev_timer_init(&tick_timer, [](struct ev_loop*, ev_timer* w, int) { self_of(w)->on_tick(); }, period, period);
    tick_timer.data = this;
    ev_timer_start(loop, &tick_timer);
    ev_timer_init(&shutdown_timer, [](struct ev_loop*, ev_timer* w, int) { self_of(w)->poll_shutdown(); }, 0.02, 0.02);
    shutdown_timer.data = this;
    auto on_signal = [](struct ev_loop*, ev_signal* w, int) { self_of(w)->begin_shutdown(w->signum); };
    ev_signal_init(&sigint, on_signal, SIGINT);
    ev_signal_init(&sigterm, on_signal, SIGTERM);
    for (auto* sig : {&sigint, &sigterm}) {
      sig->data = this;
      ev_signal_start(loop, sig);
    }
  }

  // Close frames (1001) to every browser, CLOSE to the workers, then stop; bounded in time.
  void begin_shutdown(int signum) {
    if (shutting_down) return;
    shutting_down = true;
    close_shared_listener();  // no new connections while closing
    log::info("signal ", signum, ": closing ", core.session_count(), " sockets with 1001 and stopping");
    core.close_all(close_code::going_away, "gateway shutting down");
    ev_timer_start(loop, &shutdown_timer);
  }

  void poll_shutdown() {
    shutdown_waited_ms += 20;
    if (core.session_count() > 0 && shutdown_waited_ms < 1000) return;
    ev_timer_stop(loop, &shutdown_timer);
    finish();
  }

  void finish() {
    // Every listed socket closes below: drop the line at once, not one search per socket (19 000
    // sockets in line made that quadratic). One listed again meanwhile is still taken out.
    for (Session* s : write_line) s->flush_listed = false;
    write_line.clear();
    // Sockets still open (clients that did not answer the close frame in time): report their
    // close to the workers now, since lws tears them down after our pool is gone.
    for (Session* s : core.open_sessions()) {
      lws_set_wsi_user(static_cast<struct lws*>(s->transport), nullptr);
      if (s->flush_listed) std::erase(write_line, s);
      core.session_closed(*s, close_code::going_away, "gateway shutting down");
    }
    close_shared_listener();
    if (context) {
      auto* c = context;
      context = nullptr;
      lws_context_destroy(c);
    }
    flush_pool();
    pool->close(config.pool_linger_ms);  // its watchers too
    // With no watcher left active, ev_run returns.
    ev_timer_stop(loop, &tick_timer);
    ev_signal_stop(loop, &sigint);
    ev_signal_stop(loop, &sigterm);
    ev_prepare_stop(loop, &pool_prepare);
    ev_idle_stop(loop, &pool_idle);
    ev_idle_stop(loop, &write_idle);
  }
};

Server::Server(const GatewayConfig& config) : impl_(std::make_unique<Impl>(config)) {}

Server::~Server() {
  if (impl_->pool) impl_->pool->close(impl_->config.pool_linger_ms);
}

static void use_pooled_allocator_for_lws() {
  lws_set_allocator([](void* block, size_t bytes, const char*) { return lws_pool().reallocate(block, bytes); });
}

int Server::run() {
  auto& s = *impl_;
  use_pooled_allocator_for_lws();
  // lws' own warnings duplicate our log lines; SB_LWS_LOG=<lws level bitmask> (e.g. 2047)
  // turns its logging on when debugging lws itself.
  const char* lws_levels = std::getenv("SB_LWS_LOG");
  lws_set_log_level(lws_levels ? std::atoi(lws_levels) : LLL_ERR, nullptr);
  // The default loop: the only one libev guarantees signal watchers on.
  s.loop = ev_default_loop(EVBACKEND_EPOLL);
  if (!s.loop) throw std::runtime_error("cannot create the event loop (libev, epoll)");
  s.open_pool();
  if (s.config.io_uring) {
    std::string why;
    if (s.batch_writer.start(Impl::batch_sockets, why)) log::info("socket writes batched with io_uring");
    else log::warn("io_uring unavailable (", why, "): one send per socket");
  }
  s.start_lws();
  s.start_timers();
  log::info("gateway ", s.config.gateway_id, " epoch ", to_base36(s.core.epoch()), " listening on http://",
            s.config.listen, " pool ", join_list(s.config.pool, " "));
  ev_run(s.loop, 0);
  log::info("gateway stopped");
  return 0;
}

}  // namespace sb::gateway
