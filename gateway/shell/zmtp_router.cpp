// The pool's ROUTER speaking ZMTP 3.1 (NULL mechanism) on the gateway's libev loop: listeners
// and workers' connections are plain non-blocking sockets with ev_io watchers.
#include <ev.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <unordered_map>

#include "common/log.hpp"
#include "common/zmtp_codec.hpp"
#include "common/zmtp_socket.hpp"
#include "gateway/shell/pool_router.hpp"

namespace sb::gateway {
namespace {

constexpr std::size_t read_chunk = 64 * 1024;
constexpr int listen_backlog = 128;
constexpr std::size_t max_pong_backlog = 64 * 1024;  // unsent bytes past which PINGs go unanswered

class ZmtpRouter;

// One worker's connection. Owned by ZmtpRouter::peers_.
struct Peer {
  ZmtpRouter* owner = nullptr;
  int fd = -1;
  ev_io reader{};
  ev_io writer{};  // active only while the kernel refused part of `out`
  bool ready = false;    // handshake done, `routing_id` is in the routing table
  ev_tstamp accepted_at = 0;
  bool dead = false;     // dropped; deleted once no list refers to it
  bool listed = false;   // in ZmtpRouter::readable_
  bool pending = false;  // parsed input left over after a budget ran out
  std::string routing_id;
  std::string name;  // for logs: routing id once known, else the remote address
  zmtp::Decoder decoder;
  zmtp::SendBuffer out;

  explicit Peer(std::uint64_t max_frame) : decoder(max_frame) {}
};

struct Listener {
  ZmtpRouter* owner = nullptr;
  int fd = -1;
  ev_io watcher{};
  ev_timer pause{};  // out of descriptors: accepting resumes after it, instead of spinning
  std::string endpoint;
  std::string ipc_file;  // removed at close
};

// Binds `endpoint` (tcp://HOST:PORT, tcp://*:PORT, ipc://PATH); throws with a clear message.
int bind_endpoint(const std::string& endpoint, std::string& ipc_file) {
  auto fail = [&](const std::string& why) -> int { throw std::runtime_error("cannot bind pool " + endpoint + ": " + why); };
  zmtp::StreamEndpoint target;
  std::string why;
  if (endpoint.rfind("ipc://", 0) != 0 && endpoint.rfind("tcp://", 0) != 0)
    fail("only tcp:// and ipc:// here; --pool-server libzmq knows more");
  if (!zmtp::parse_stream_endpoint(endpoint, target, why)) fail(why);
  if (target.unix_socket) {
    sockaddr_un address{};
    socklen_t size = zmtp::unix_address(target.path, address);
    if (target.path[0] != '@') {
      // A file left by a gateway that died is not in use; libzmq replaces it the same way.
      struct stat st {};
      if (::stat(target.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(target.path.c_str());
      ipc_file = target.path;
    }
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail(std::strerror(errno));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), size) != 0 || ::listen(fd, listen_backlog) != 0) {
      int err = errno;
      ::close(fd);
      ipc_file.clear();
      fail(std::strerror(err));
    }
    return fd;
  }
  const std::string& host = target.host;
  std::string port = target.port == "*" ? "0" : target.port;
  addrinfo hints{};
  hints.ai_family = zmtp::address_family(host);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  int rc = ::getaddrinfo(host == "*" ? nullptr : host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0 || !found) fail(gai_strerror(rc));
  addrinfo* pick = found;  // "*": 0.0.0.0, every IPv4 address, as in libzmq
  int fd = ::socket(pick->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ::freeaddrinfo(found);
    fail(std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // restart without TIME_WAIT trouble
  if (::bind(fd, pick->ai_addr, pick->ai_addrlen) != 0 || ::listen(fd, listen_backlog) != 0) {
    int err = errno;
    ::close(fd);
    ::freeaddrinfo(found);
    fail(std::strerror(err));
  }
  ::freeaddrinfo(found);
  return fd;
}

class ZmtpRouter final : public PoolRouter {
 public:
  ZmtpRouter(const GatewayConfig& config, struct ev_loop* loop, std::function<void()> on_input)
      : loop_(loop),
        on_input_(std::move(on_input)),
        handshake_(zmtp::handshake("ROUTER", "")),
        max_frame_(config.max_pool_message_bytes),
        send_hwm_(static_cast<std::size_t>(std::max(1, config.pool_hwm))),
        handshake_timeout_s_(config.pool_handshake_timeout_ms / 1000.) {
    try {
      for (const auto& endpoint : config.pool) {
        auto listener = std::make_unique<Listener>();
        listener->owner = this;
        listener->endpoint = endpoint;
        listener->fd = bind_endpoint(endpoint, listener->ipc_file);
        ev_io_init(&listener->watcher, [](struct ev_loop*, ev_io* w, int) {
          auto* l = static_cast<Listener*>(w->data);
          l->owner->accept_from(*l);
        }, listener->fd, EV_READ);
        listener->watcher.data = listener.get();
        ev_io_start(loop_, &listener->watcher);
        ev_timer_init(&listener->pause, [](struct ev_loop* loop, ev_timer* w, int) {
          auto* l = static_cast<Listener*>(w->data);
          ev_io_start(loop, &l->watcher);
        }, 0.1, 0.);
        listener->pause.data = listener.get();
        listeners_.push_back(std::move(listener));
      }
    } catch (...) {
      close(0);
      throw;
    }
    ev_check_init(&service_, [](struct ev_loop*, ev_check* w, int) { static_cast<ZmtpRouter*>(w->data)->on_input_(); });
    // Lowest priority: it runs after the turn's socket callbacks, which are at the default.
    ev_set_priority(&service_, EV_MINPRI);
    service_.data = this;
    ev_timer_init(&handshake_check_, [](struct ev_loop*, ev_timer* w, int) {
      static_cast<ZmtpRouter*>(w->data)->drop_slow_handshakes();
    }, 0., std::min(1., handshake_timeout_s_ / 2));
    handshake_check_.data = this;
    ev_timer_start(loop_, &handshake_check_);
  }

  ~ZmtpRouter() override { close(0); }

  bool receive(std::size_t& handled, std::size_t budget, Sink& sink) override {
    std::vector<Peer*> batch;
    batch.swap(readable_);
    Peer* cut_off = nullptr;  // the peer whose input outlasted the budget (at most one per call)
    for (Peer* peer : batch) {
      peer->listed = false;
      if (peer->dead) continue;
      // Past the budget a peer keeps its place, ahead of the one the budget cut off: a worker
      // with more input than one budget must not keep the others (and their heartbeats) waiting
      // until it runs dry. libzmq's ROUTER fair-queues its peers too.
      if (handled >= budget) {
        list(*peer);
        continue;
      }
      if (read_in(*peer, handled, budget, sink)) cut_off = peer;  // input left: behind the rest
    }
    if (cut_off) list(*cut_off);
    bury();
    return !readable_.empty();
  }

  Send send(std::string_view routing_id, const std::vector<std::string>& bodies) override {
    auto found = by_id_.find(std::string(routing_id));
    if (found == by_id_.end()) return Send::unreachable;
    Peer& peer = *found->second;
    if (peer.out.messages() >= send_hwm_) return Send::full;
    peer.out.append_message(bodies.data(), bodies.size());
    // Straight to the kernel: this is the hop libzmq would give to its I/O thread.
    if (!ev_is_active(&peer.writer)) write_out(peer);
    return Send::sent;
  }

  bool input_unreported() override { return false; }  // level-triggered watchers see everything

  void close(int linger_ms) override {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(linger_ms);
    for (auto& [key, peer] : peers_) {
      while (!peer->dead && peer->ready && peer->out.unwritten() > 0) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0) break;
        pollfd entry{peer->fd, POLLOUT, 0};
        if (::poll(&entry, 1, static_cast<int>(left)) <= 0) break;
        write_out(*peer);
      }
      if (!peer->dead) drop(*peer, "the gateway is stopping", false);
    }
    bury();
    peers_.clear();
    graveyard_.clear();
    by_id_.clear();
    readable_.clear();
    for (auto& listener : listeners_) {
      ev_io_stop(loop_, &listener->watcher);
      ev_timer_stop(loop_, &listener->pause);
      ::close(listener->fd);
      if (!listener->ipc_file.empty()) ::unlink(listener->ipc_file.c_str());
    }
    listeners_.clear();
    ev_timer_stop(loop_, &handshake_check_);
    ev_clear_pending(loop_, &service_);
  }

  const PoolRouterCounters& counters() const override { return counters_; }

  void accept_from(Listener& listener) {
    // A bounded batch per wake-up, so a connect storm cannot hold the loop.
    for (int n = 0; n < 64; ++n) {
      int fd = ::accept4(listener.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return;
        ++counters_.accept_failures;
        if (log::worth_logging(counters_.accept_failures))
          log::warn("pool accept on ", listener.endpoint, " failed: ", std::strerror(errno), " (",
                    counters_.accept_failures, " so far)");
        // EMFILE and kin: the listener stays readable; pause so the loop does not spin on it.
        ev_io_stop(loop_, &listener.watcher);
        ev_timer_start(loop_, &listener.pause);
        return;
      }
      if (listener.ipc_file.empty() && listener.endpoint.rfind("tcp://", 0) == 0) {
        int one = 1;  // small messages must not wait for Nagle (libzmq sets it too)
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      }
      auto peer = std::make_unique<Peer>(max_frame_);
      peer->owner = this;
      peer->fd = fd;
      peer->name = "a worker connecting on " + listener.endpoint;
      ev_io_init(&peer->reader, [](struct ev_loop*, ev_io* w, int) {
        auto* p = static_cast<Peer*>(w->data);
        p->owner->on_readable(*p);
      }, fd, EV_READ);
      ev_io_init(&peer->writer, [](struct ev_loop*, ev_io* w, int) {
        auto* p = static_cast<Peer*>(w->data);
        p->owner->write_out(*p);
        p->owner->bury();
      }, fd, EV_WRITE);
      peer->reader.data = peer->writer.data = peer.get();
      ev_io_start(loop_, &peer->reader);
      peer->accepted_at = ev_now(loop_);
      peer->out.append_raw(handshake_);
      Peer& p = *peer;
      peers_.emplace(&p, std::move(peer));
      write_out(p);
    }
  }

 private:
  void drop_slow_handshakes() {
    auto now = ev_now(loop_);
    for (auto& [key, peer] : peers_)
      if (!peer->ready && !peer->dead && now - peer->accepted_at > handshake_timeout_s_)
        drop(*peer, "no ZMTP handshake within " + std::to_string(handshake_timeout_s_) + " s", true);
    bury();
  }

  void list(Peer& peer) {
    if (peer.listed) return;
    peer.listed = true;
    readable_.push_back(&peer);
  }

  // Lists the peer; the pool is serviced once per loop turn, after every I/O callback of the
  // turn (service_), not once per readable worker: each service flushes the sockets' output,
  // and two flushes in a turn halve how many frames each write carries. A fed event runs in
  // this turn's dispatch, after the pending events of higher priority; feeding it again while
  // it is pending adds nothing.
  void on_readable(Peer& peer) {
    list(peer);
    ev_feed_event(loop_, &service_, EV_CUSTOM);
  }

  // Reads and parses until EAGAIN or the budget; returns true if input is left (pending).
  bool read_in(Peer& peer, std::size_t& handled, std::size_t budget, Sink& sink) {
    peer.pending = false;
    while (true) {
      zmtp::Frame frame;
      auto status = peer.decoder.next(frame);
      if (status == zmtp::Decoder::Status::error) {
        drop(peer, peer.decoder.error(), true);
        return false;
      }
      if (status == zmtp::Decoder::Status::greeting) continue;
      if (status == zmtp::Decoder::Status::frame) {
        if (frame.command) {
          if (!on_command(peer, frame.body)) return false;
          continue;
        }
        if (!peer.ready) {
          drop(peer, "a message before the handshake finished", true);
          return false;
        }
        sink.pool_body(peer.routing_id, frame.body);
        if (frame.more) continue;
        if (++handled >= budget) {
          peer.pending = true;
          return true;
        }
        continue;
      }
      ssize_t n = ::recv(peer.fd, peer.decoder.prepare(read_chunk), read_chunk, MSG_DONTWAIT);
      if (n > 0) {
        peer.decoder.commit(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
      drop(peer, n == 0 ? "the worker closed it" : std::strerror(errno), false);
      return false;
    }
  }

  // False if the peer was dropped.
  bool on_command(Peer& peer, std::string_view body) {
    zmtp::Command command;
    if (!zmtp::parse_command(body, command)) {
      drop(peer, "malformed command frame", true);
      return false;
    }
    if (!peer.ready) {
      std::string_view type, identity;
      if (command.name != "READY" || !zmtp::find_property(command.data, "Socket-Type", type)) {
        drop(peer, "expected READY with a Socket-Type, got " + std::string(command.name), true);
        return false;
      }
      if (type != "DEALER" && type != "ROUTER" && type != "REQ") {
        drop(peer, "a " + std::string(type) + " socket cannot talk to a ROUTER", true);
        return false;
      }
      zmtp::find_property(command.data, "Identity", identity);
      if (identity.empty() || identity[0] == '\0') {
        // As libzmq: an anonymous peer gets an id of its own, which starts with a zero byte.
        std::string id(1, '\0');
        auto n = ++anonymous_;
        for (int i = 0; i < 4; ++i) id.push_back(static_cast<char>((n >> (8 * (3 - i))) & 0xff));
        peer.routing_id = id;
        peer.name = "an anonymous worker";
      } else {
        peer.routing_id.assign(identity);
        peer.name = "worker '" + peer.routing_id + "'";
      }
      auto found = by_id_.find(peer.routing_id);
      if (found != by_id_.end()) {
        // ROUTER_HANDOVER: a restarted worker reconnects before its old connection is noticed gone.
        ++counters_.handovers;
        drop(*found->second, "its id was taken over by a new connection", false);
      }
      by_id_[peer.routing_id] = &peer;
      peer.ready = true;
      ++counters_.connects;
      log::debug("pool: ", peer.name, " connected");
      return true;
    }
    // ZMTP 3.1 heartbeat: answer with the context the peer sent after its TTL, unless the peer
    // is not reading what we send (a PING flood must not grow our buffer without bound).
    if (command.name == "PING" && command.data.size() >= 2 && peer.out.unwritten() < max_pong_backlog) {
      peer.out.append_command("PONG", command.data.substr(2));
      if (!ev_is_active(&peer.writer)) return write_out(peer);
    }
    return true;  // other commands (PONG, ...) carry nothing for a ROUTER
  }

  // Writes what is queued; false if the peer was dropped.
  bool write_out(Peer& peer) {
    if (peer.dead) return false;
    auto result = peer.out.write_to(peer.fd);
    if (result == zmtp::SendBuffer::Write::failed) {
      drop(peer, errno ? std::strerror(errno) : "write returned 0", false);
      return false;
    }
    // Writability matters only while the kernel refuses part of what is queued.
    if (result == zmtp::SendBuffer::Write::blocked)
      ev_io_start(loop_, &peer.writer);
    else
      ev_io_stop(loop_, &peer.writer);
    return true;
  }

  // Closes the connection now; the Peer itself is deleted by bury(), once no list refers to it.
  void drop(Peer& peer, const std::string& why, bool protocol_error) {
    if (peer.dead) return;
    peer.dead = true;
    if (protocol_error) {
      ++counters_.protocol_errors;
      log::warn("pool: dropping the connection of ", peer.name, ": ", why);
    } else if (peer.ready) {
      log::info("pool: ", peer.name, " disconnected (", why, ")");
    }
    if (peer.ready) {
      ++counters_.disconnects;
      counters_.lost_on_disconnect += peer.out.messages();
      auto found = by_id_.find(peer.routing_id);
      if (found != by_id_.end() && found->second == &peer) by_id_.erase(found);
    }
    ev_io_stop(loop_, &peer.reader);
    ev_io_stop(loop_, &peer.writer);
    ::close(peer.fd);
    peer.fd = -1;
    graveyard_.push_back(&peer);
  }

  void bury() {
    auto kept = std::remove_if(graveyard_.begin(), graveyard_.end(), [&](Peer* peer) {
      if (peer->listed) return false;  // readable_ still points at it
      peers_.erase(peer);
      return true;
    });
    graveyard_.erase(kept, graveyard_.end());
  }

  struct ev_loop* loop_;
  std::function<void()> on_input_;
  const std::string handshake_;
  std::uint64_t max_frame_;
  std::size_t send_hwm_;
  ev_tstamp handshake_timeout_s_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  // Every connection; a dropped Peer stays until bury().
  std::unordered_map<Peer*, std::unique_ptr<Peer>> peers_;
  std::unordered_map<std::string, Peer*> by_id_;  // ready peers by routing id
  std::vector<Peer*> readable_;                    // peers with input to read, in arrival order
  std::vector<Peer*> graveyard_;                   // dropped peers not yet deleted
  std::uint32_t anonymous_ = 0;
  ev_timer handshake_check_{};  // drop_slow_handshakes() every second (or half the timeout)
  ev_check service_{};          // never started, only fed: on_input_() once per turn with input
  PoolRouterCounters counters_;
};

}  // namespace

std::unique_ptr<PoolRouter> make_zmtp_router(const GatewayConfig& config, struct ev_loop* loop,
                                             std::function<void()> on_input) {
  return std::make_unique<ZmtpRouter>(config, loop, std::move(on_input));
}

}  // namespace sb::gateway
