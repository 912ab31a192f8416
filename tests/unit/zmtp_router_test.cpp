// The gateway's end of the pool (PoolRouter) on a real libev loop: our own ZMTP 3.1 ROUTER
// (--pool-server zmtp) against real libzmq DEALERs and raw sockets, on ipc:// and tcp://
// (handshake, multipart both ways, the receive budget, ROUTER_HANDOVER, ROUTER_MANDATORY,
// MAXMSGSIZE, SNDHWM, anonymous peers, refused handshakes, PING, binding, linger), then
// make_pool_router's libzmq ROUTER once. Every wait loops on a condition under a 5 s deadline;
// nothing sleeps to synchronise.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/zmtp_codec.hpp"
#include "tests/unit/zmtp_wire_bytes.hpp"
#include "gateway/shell/pool_router.hpp"

using namespace sb::gateway;
namespace zmtp = sb::zmtp;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto wait_limit = 5s;
using Send = PoolRouter::Send;

// ---------------------------------------------------------------------------------------------
// Bytes a peer sends (built with the codec where it has the piece)

using namespace sb::zmtp::test_bytes;

// A body whose bytes differ along its length, so a misplaced chunk shows.
std::string pattern(std::size_t size, char seed) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>(seed + (i * 7) % 251);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Resources that clean up after themselves, even when a REQUIRE throws half-way

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};


// An epoll loop of the test's own (not libev's default loop).
struct Loop {
  struct ev_loop* p = ev_loop_new(EVBACKEND_EPOLL);
  Loop() { REQUIRE(p != nullptr); }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  ~Loop() {
    if (p) ev_loop_destroy(p);
  }
};

struct ZmqContext {
  void* p = zmq_ctx_new();
  ~ZmqContext() { term(); }
  void term() {
    if (p) zmq_ctx_term(p);
    p = nullptr;
  }
};

struct ZmqSocket {
  void* p = nullptr;
  ~ZmqSocket() { close(); }
  void close() {
    if (p) zmq_close(p);
    p = nullptr;
  }
};

// A TCP listener on 127.0.0.1 at a port the kernel picks; `port` is set.
Fd tcp_listener(int& port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::listen(fd.fd, 4) == 0);
  socklen_t size = sizeof address;
  REQUIRE(::getsockname(fd.fd, reinterpret_cast<sockaddr*>(&address), &size) == 0);
  port = ntohs(address.sin_port);
  return fd;
}

// A port nothing listens on right now (the caller retries if someone takes it meanwhile).
int free_tcp_port() {
  int port = 0;
  tcp_listener(port);  // closed at once
  return port;
}

// Binds a Unix socket at `path` and closes it: the file stays, as a crashed gateway leaves it.
void leave_stale_socket_file(const std::string& path) {
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.fd >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof address.sun_path);
  std::memcpy(address.sun_path, path.data(), path.size());
  REQUIRE(::bind(fd.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::listen(fd.fd, 1) == 0);
}

bool is_socket_file(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// What the router hands over

struct Got {
  std::string id;
  std::string body;
  bool operator==(const Got& o) const { return id == o.id && body == o.body; }
};

doctest::String toString(const std::vector<Got>& got) {
  std::string s = "[";
  for (const auto& g : got)
    s += "(" + printable(g.id) + ", " +
         (g.body.size() <= 32 ? "'" + printable(g.body) + "'" : std::to_string(g.body.size()) + " bytes") + ") ";
  return (s + "]").c_str();
}

struct Sink final : PoolRouter::Sink {
  std::vector<Got> got;
  void pool_body(const std::string& routing_id, std::string_view body) override {
    got.push_back({routing_id, std::string(body)});
  }
};

// ---------------------------------------------------------------------------------------------
// Peers

// A libzmq DEALER in a context of its own. It does not reconnect: a connection the router
// drops stays dropped (libzmq would come back, and with the same id take the id over again,
// which would blur what the tests count). `monitored`: socket events are recorded.
class Dealer {
 public:
  Dealer(const std::string& endpoint, const std::string& id, bool monitored = false) {
    REQUIRE(context_.p);
    socket_.p = zmq_socket(context_.p, ZMQ_DEALER);
    REQUIRE(socket_.p);
    int linger = 0;
    int no_reconnect = -1;
    REQUIRE(zmq_setsockopt(socket_.p, ZMQ_LINGER, &linger, sizeof linger) == 0);
    REQUIRE(zmq_setsockopt(socket_.p, ZMQ_RECONNECT_IVL, &no_reconnect, sizeof no_reconnect) == 0);
    if (!id.empty()) REQUIRE(zmq_setsockopt(socket_.p, ZMQ_ROUTING_ID, id.data(), id.size()) == 0);
    if (monitored) {
      std::string address = "inproc://dealer-monitor";
      REQUIRE(zmq_socket_monitor(socket_.p, address.c_str(), ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) ==
              0);
      monitor_.p = zmq_socket(context_.p, ZMQ_PAIR);
      REQUIRE(monitor_.p);
      REQUIRE(zmq_setsockopt(monitor_.p, ZMQ_LINGER, &linger, sizeof linger) == 0);
      REQUIRE(zmq_connect(monitor_.p, address.c_str()) == 0);
    }
    REQUIRE_MESSAGE(zmq_connect(socket_.p, endpoint.c_str()) == 0, zmq_strerror(zmq_errno()));
  }
  Dealer(const Dealer&) = delete;
  Dealer& operator=(const Dealer&) = delete;
  ~Dealer() { shut(); }

  // Closes the socket (linger 0) and terminates the context: the connection goes away.
  void shut() {
    monitor_.close();
    socket_.close();
    context_.term();
  }

  // One message; never blocks (a DEALER without ZMQ_IMMEDIATE queues before its handshake).
  void send(const std::vector<std::string>& frames) {
    for (std::size_t i = 0; i < frames.size(); ++i) {
      int flags = ZMQ_DONTWAIT | (i + 1 < frames.size() ? ZMQ_SNDMORE : 0);
      REQUIRE_MESSAGE(zmq_send(socket_.p, frames[i].data(), frames[i].size(), flags) >= 0, zmq_strerror(zmq_errno()));
    }
  }

  // One whole message if one is waiting: its frames and each frame's MORE flag.
  bool try_receive(std::vector<std::string>& frames, std::vector<bool>& more) {
    frames.clear();
    more.clear();
    while (true) {
      zmq_msg_t part;
      zmq_msg_init(&part);
      if (zmq_msg_recv(&part, socket_.p, frames.empty() ? ZMQ_DONTWAIT : 0) < 0) {
        int err = zmq_errno();
        zmq_msg_close(&part);
        REQUIRE_MESSAGE(frames.empty(), "a multipart message arrived in pieces: ", zmq_strerror(err));
        REQUIRE_MESSAGE(err == EAGAIN, zmq_strerror(err));
        return false;
      }
      frames.emplace_back(static_cast<const char*>(zmq_msg_data(&part)), zmq_msg_size(&part));
      more.push_back(zmq_msg_more(&part) != 0);
      zmq_msg_close(&part);
      if (!more.back()) return true;
    }
  }

  // True once the monitor reported `event` (ZMQ_EVENT_*); reads what it reported so far.
  bool saw(int event) {
    REQUIRE(monitor_.p);
    while (true) {
      zmq_msg_t part;
      zmq_msg_init(&part);
      if (zmq_msg_recv(&part, monitor_.p, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        break;
      }
      std::uint16_t number = 0;
      REQUIRE(zmq_msg_size(&part) >= sizeof number);
      std::memcpy(&number, zmq_msg_data(&part), sizeof number);
      bool more = zmq_msg_more(&part);
      zmq_msg_close(&part);
      seen_ |= number;
      while (more) {  // the endpoint frame
        zmq_msg_init(&part);
        REQUIRE(zmq_msg_recv(&part, monitor_.p, 0) >= 0);
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
      }
    }
    return (seen_ & event) != 0;
  }

 private:
  ZmqContext context_;  // declared first: terminated after the sockets are closed
  ZmqSocket socket_;
  ZmqSocket monitor_;
  int seen_ = 0;
};

// A connection to the router that speaks raw bytes: handshakes libzmq never sends, a peer that
// never reads. Non-blocking once connected.
class RawClient {
 public:
  explicit RawClient(const std::string& endpoint, int receive_buffer = 0) {
    if (endpoint.rfind("ipc://", 0) == 0) {
      std::string path = endpoint.substr(6);
      conn_.fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      REQUIRE(conn_.fd >= 0);
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      REQUIRE(path.size() < sizeof address.sun_path);
      std::memcpy(address.sun_path, path.data(), path.size());
      set_receive_buffer(receive_buffer);
      REQUIRE_MESSAGE(::connect(conn_.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0,
                      std::strerror(errno));
    } else {
      REQUIRE(endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
      conn_.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      REQUIRE(conn_.fd >= 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      address.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(16))));
      set_receive_buffer(receive_buffer);  // before connect: it sets the TCP window
      REQUIRE_MESSAGE(::connect(conn_.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0,
                      std::strerror(errno));
    }
    REQUIRE(::fcntl(conn_.fd, F_SETFL, ::fcntl(conn_.fd, F_GETFL) | O_NONBLOCK) == 0);
  }

  void write(const std::string& data) {
    REQUIRE(conn_.fd >= 0);
    REQUIRE(::send(conn_.fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
  }
  void hang_up() { conn_.reset(); }
  // Reads what is there; true once `size` bytes were received in all.
  bool has(std::size_t size) {
    read_available();
    return received_.size() >= size;
  }
  // Reads what is there; true once the router closed the connection.
  bool closed_by_router() {
    read_available();
    return eof_;
  }
  std::string take(std::size_t size) {
    REQUIRE(received_.size() >= size);
    auto out = received_.substr(0, size);
    received_.erase(0, size);
    return out;
  }
  std::size_t received() const { return received_.size(); }

 private:
  void set_receive_buffer(int size) {
    if (size > 0) REQUIRE(::setsockopt(conn_.fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) == 0);
  }
  void read_available() {
    char buffer[64 * 1024];
    while (conn_.fd >= 0 && !eof_) {
      ssize_t n = ::recv(conn_.fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        received_.append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        eof_ = true;  // orderly close or reset: either way the router let go
      } else if (errno != EINTR) {
        break;
      }
    }
  }

  Fd conn_;
  std::string received_;
  bool eof_ = false;
};

// The router's ends of the connections accepted on `endpoint`, found among this process's
// descriptors (the test's peers live in this process too, but their ends have other local
// addresses). Their kernel queues tell when a burst has fully arrived, before the router reads.
std::vector<int> accepted_fds(const std::string& endpoint) {
  std::vector<int> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    int fd = std::atoi(entry.path().filename().c_str());
    int listening = 0;
    socklen_t size = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) != 0 || listening) continue;
    sockaddr_storage local{};
    socklen_t local_size = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_size) != 0) continue;
    bool match = false;
    if (endpoint.rfind("ipc://", 0) == 0 && local.ss_family == AF_UNIX) {
      const auto* un = reinterpret_cast<const sockaddr_un*>(&local);
      auto path_size = local_size > offsetof(sockaddr_un, sun_path) ? local_size - offsetof(sockaddr_un, sun_path) : 0;
      match = std::string(un->sun_path, ::strnlen(un->sun_path, path_size)) == endpoint.substr(6);
    } else if (endpoint.rfind("tcp://", 0) == 0 && local.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&local);
      match = std::to_string(ntohs(in->sin_port)) == endpoint.substr(endpoint.rfind(':') + 1);
    }
    if (match) found.push_back(fd);
  }
  return found;
}

int accepted_fd(const std::string& endpoint) {
  auto fds = accepted_fds(endpoint);
  REQUIRE_MESSAGE(fds.size() == 1, fds.size(), " accepted connections on ", endpoint);
  return fds[0];
}

// Bytes waiting in `fd`'s receive queue (0 if it cannot tell). Asserts nothing: it also runs
// inside assertion messages, where a nested assertion would deadlock doctest's reporter.
std::size_t queued_bytes(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 ? static_cast<std::size_t>(n) : 0;
}

// ---------------------------------------------------------------------------------------------
// The rig: a loop, a router on it, a sink

enum class Transport { ipc, tcp };

struct Rig {
  Transport transport;
  TempDir dir{"sb-router"};
  Loop loop;  // destroyed after the router (declared before it)
  GatewayConfig config;
  Sink sink;
  int inputs = 0;            // on_input calls
  std::uint64_t handled = 0;  // messages the pump's receive() calls handed over
  bool auto_receive = true;  // pump() calls receive(); off when a test calls it itself
  std::string endpoint;
  std::unique_ptr<PoolRouter> router;

  explicit Rig(Transport t = Transport::ipc, const std::string& server = "zmtp") : transport(t) {
    config.pool_server = server;
    config.pool_linger_ms = 0;
  }

  std::string ipc_path() const { return dir.path + "/pool.sock"; }

  std::unique_ptr<PoolRouter> make() {
    return make_pool_router(config, loop.p, [this] { ++inputs; });
  }

  // Binds the router on this rig's transport: ipc:// in the temp dir, tcp:// on a free port.
  void start() {
    if (transport == Transport::ipc) {
      endpoint = "ipc://" + ipc_path();
      config.pool = {endpoint};
      router = make();
      return;
    }
    for (int attempt = 0;; ++attempt) {
      endpoint = "tcp://127.0.0.1:" + std::to_string(free_tcp_port());
      config.pool = {endpoint};
      try {
        router = make();
        return;
      } catch (const std::runtime_error& e) {
        // Another process took the port between the probe and the bind: pick another.
        std::string what = e.what();
        REQUIRE_MESSAGE((attempt < 20 && what.find("in use") != std::string::npos), what);
      }
    }
  }

  const PoolRouterCounters& counters() const { return router->counters(); }

  // One loop turn, waiting at most ~1 ms for the router's sockets, then (unless the test drives
  // receive() itself) everything the router has for the sink.
  void turn() {
    ev_timer tick;
    ev_timer_init(&tick, [](struct ev_loop*, ev_timer*, int) {}, 0.001, 0.);
    ev_now_update(loop.p);
    ev_timer_start(loop.p, &tick);
    ev_run(loop.p, EVRUN_ONCE);
    ev_timer_stop(loop.p, &tick);
    if (auto_receive && router) {
      std::size_t n = 0;
      router->receive(n, 1u << 20, sink);
      handled += n;
    }
  }

  // Turns the loop until `done()` holds; false if the deadline passed first.
  bool pump(const std::function<bool()>& done, std::chrono::milliseconds limit = wait_limit) {
    auto deadline = Clock::now() + limit;
    while (!done()) {
      if (Clock::now() >= deadline) return false;
      turn();
    }
    return true;
  }

  void wait_connects(std::uint64_t n) {
    REQUIRE_MESSAGE(pump([&] { return counters().connects >= n; }), "handshake ", n, " not done in time (",
                    counters().connects, ")");
    CHECK(counters().connects == n);
  }

  // The next message at `dealer`, the loop turned meanwhile.
  std::vector<std::string> dealer_receive(Dealer& dealer, std::vector<bool>* more_out = nullptr) {
    std::vector<std::string> frames;
    std::vector<bool> more;
    REQUIRE_MESSAGE(pump([&] { return dealer.try_receive(frames, more); }), "nothing reached the DEALER");
    if (more_out) *more_out = more;
    return frames;
  }

  // `count` more bodies in the sink (beyond what it had); returns just those.
  std::vector<Got> sink_receive(std::size_t count) {
    auto before = sink.got.size();
    REQUIRE_MESSAGE(pump([&] { return sink.got.size() >= before + count; }), "the sink got ",
                    sink.got.size() - before, " of ", count, " bodies");
    return std::vector<Got>(sink.got.begin() + static_cast<std::ptrdiff_t>(before), sink.got.end());
  }

  // Both ways between the router and `dealer` (connected as `id`).
  void round_trip(Dealer& dealer, const std::string& id, const std::string& tag) {
    dealer.send({"up-" + tag});
    CHECK(sink_receive(1) == std::vector<Got>{{id, "up-" + tag}});
    REQUIRE(router->send(id, {"down-" + tag}) == Send::sent);
    CHECK(dealer_receive(dealer) == std::vector<std::string>{"down-" + tag});
  }
};

#define EACH_TRANSPORT(transport)                   \
  Transport transport = Transport::ipc;             \
  SUBCASE("ipc://") { transport = Transport::ipc; } \
  SUBCASE("tcp://") { transport = Transport::tcp; }

}  // namespace

// =============================================================================================
// A libzmq DEALER against our ROUTER

TEST_CASE("zmtp router: a DEALER's handshake is counted, its multipart message reaches the sink body by body") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.start();
  CHECK(rig.counters().connects == 0);
  Dealer w1(rig.endpoint, "w1");
  rig.wait_connects(1);
  CHECK(rig.inputs > 0);  // the handshake itself came through on_input
  CHECK(rig.sink.got.empty());

  auto inputs = rig.inputs;
  w1.send({"one", "two", "three"});
  CHECK(rig.sink_receive(3) == std::vector<Got>{{"w1", "one"}, {"w1", "two"}, {"w1", "three"}});
  CHECK(rig.handled == 1);  // one message of three bodies
  CHECK(rig.inputs > inputs);

  // Drained: nothing handed over, nothing left.
  std::size_t handled = 0;
  CHECK_FALSE(rig.router->receive(handled, 100, rig.sink));
  CHECK(handled == 0);
  CHECK(rig.sink.got.size() == 3);

  CHECK(rig.counters().disconnects == 0);
  CHECK(rig.counters().handovers == 0);
  CHECK(rig.counters().protocol_errors == 0);
  CHECK_FALSE(rig.router->input_unreported());
}

TEST_CASE("zmtp router: send reaches the DEALER frame by frame with MORE right; an unknown id is unreachable") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.start();
  Dealer w1(rig.endpoint, "w1");
  rig.wait_connects(1);

  std::vector<std::string> bodies{"short", pattern(300, 'a'), ""};  // a long header (>255) and an empty frame
  REQUIRE(rig.router->send("w1", bodies) == Send::sent);
  std::vector<bool> more;
  CHECK(rig.dealer_receive(w1, &more) == bodies);
  CHECK(more == std::vector<bool>{true, true, false});

  // One frame; then one past a read's worth (the kernel takes it in several writes).
  REQUIRE(rig.router->send("w1", {"solo"}) == Send::sent);
  CHECK(rig.dealer_receive(w1, &more) == std::vector<std::string>{"solo"});
  CHECK(more == std::vector<bool>{false});
  auto big = pattern(3 << 20, 'b');
  REQUIRE(rig.router->send("w1", {big, "after-big"}) == Send::sent);
  CHECK(rig.dealer_receive(w1) == std::vector<std::string>{big, "after-big"});

  // ROUTER_MANDATORY: ids nobody holds, a prefix of one, the empty id.
  CHECK(rig.router->send("nobody", {"x"}) == Send::unreachable);
  CHECK(rig.router->send("w", {"x"}) == Send::unreachable);
  CHECK(rig.router->send("w1 ", {"x"}) == Send::unreachable);
  CHECK(rig.router->send("", {"x"}) == Send::unreachable);

  // And nothing else went to w1: the next message there is the next one sent.
  REQUIRE(rig.router->send("w1", {"last"}) == Send::sent);
  CHECK(rig.dealer_receive(w1) == std::vector<std::string>{"last"});
  CHECK(rig.counters().lost_on_disconnect == 0);
}

TEST_CASE("zmtp router: receive hands over at most `budget` messages per call and says when input is left") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.start();
  Dealer w1(rig.endpoint, "w1");
  rig.wait_connects(1);
  int fd = accepted_fd(rig.endpoint);
  REQUIRE(queued_bytes(fd) == 0);

  // Ten messages of two bodies each.
  rig.auto_receive = false;
  std::size_t burst = 0;
  std::vector<Got> expected;
  for (int i = 0; i < 10; ++i) {
    std::vector<std::string> frames{"m" + std::to_string(i) + "a", "m" + std::to_string(i) + "b"};
    w1.send(frames);
    for (std::size_t f = 0; f < frames.size(); ++f) {
      burst += frame(frames[f], f + 1 < frames.size()).size();
      expected.push_back({"w1", frames[f]});
    }
  }
  // Every byte of the burst in the router's kernel queue, and on_input called, before the router
  // reads any of it: the calls below see the same input however libzmq's I/O thread split its
  // writes.
  auto inputs = rig.inputs;
  std::size_t arrived = 0;
  REQUIRE_MESSAGE(rig.pump([&] { return (arrived = queued_bytes(fd)) >= burst && rig.inputs > inputs; }), arrived,
                  " of ", burst, " bytes arrived");
  CHECK(queued_bytes(fd) == burst);
  CHECK(rig.sink.got.empty());

  // A budget already spent reads nothing, and says input is left; its watcher reports it again.
  std::size_t spent = 3;
  CHECK(rig.router->receive(spent, 3, rig.sink));
  CHECK(spent == 3);
  CHECK(rig.sink.got.empty());
  inputs = rig.inputs;
  REQUIRE(rig.pump([&] { return rig.inputs > inputs; }));

  std::vector<std::size_t> per_call;
  std::vector<bool> left;
  for (int call = 0; call < 8; ++call) {
    std::size_t handled = 0;
    auto before = rig.sink.got.size();
    bool more = rig.router->receive(handled, 3, rig.sink);
    CHECK(rig.sink.got.size() - before == 2 * handled);  // whole messages only
    per_call.push_back(handled);
    left.push_back(more);
    if (!more) break;
  }
  CHECK(per_call == std::vector<std::size_t>{3, 3, 3, 1});
  CHECK(left == std::vector<bool>{true, true, true, false});
  CHECK(rig.sink.got == expected);

  // The budget counts messages, not bodies: one message of 5 bodies with budget 1.
  w1.send({"p", "q", "r", "s", "t"});
  inputs = rig.inputs;
  REQUIRE(rig.pump([&] { return queued_bytes(fd) >= 5 * 3 && rig.inputs > inputs; }));
  std::size_t handled = 0;
  rig.router->receive(handled, 1, rig.sink);
  CHECK(handled == 1);
  CHECK(rig.sink.got.size() == 25);
  handled = 0;
  CHECK_FALSE(rig.router->receive(handled, 1, rig.sink));
  CHECK(handled == 0);
}

TEST_CASE("zmtp router: workers readable in the same loop turn get one on_input call, not one each") {
  // Each on_input services the pool and flushes the sockets' output; two in a turn would halve
  // the frames each socket write carries (seen as ~30 % fewer fan-out deliveries with two workers).
  Rig rig;
  rig.start();
  Dealer w1(rig.endpoint, "w1"), w2(rig.endpoint, "w2");
  rig.wait_connects(2);
  rig.auto_receive = false;
  auto fds = accepted_fds(rig.endpoint);
  REQUIRE(fds.size() == 2);
  w1.send({"from-w1"});
  w2.send({"from-w2"});
  std::size_t expected = frame("from-w1").size() + frame("from-w2").size();
  // Both messages in the router's kernel queues before its loop runs again.
  auto deadline = Clock::now() + wait_limit;
  while (queued_bytes(fds[0]) + queued_bytes(fds[1]) < expected) REQUIRE(Clock::now() < deadline);
  auto inputs = rig.inputs;
  rig.turn();
  CHECK(rig.inputs == inputs + 1);
  std::size_t handled = 0;
  CHECK_FALSE(rig.router->receive(handled, 100, rig.sink));
  CHECK(handled == 2);
  REQUIRE(rig.sink.got.size() == 2);
}

TEST_CASE("zmtp router: the budget is shared fairly: a busy worker does not starve another") {
  // libzmq's ROUTER fair-queues its peers. Here a worker with more input than one call's budget
  // must not keep the others waiting until it runs dry: their heartbeats would go unread and
  // the gateway would declare them dead.
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.start();
  Dealer busy(rig.endpoint, "busy");
  Dealer quiet(rig.endpoint, "quiet");
  rig.wait_connects(2);
  auto fds = accepted_fds(rig.endpoint);
  REQUIRE(fds.size() == 2);

  rig.auto_receive = false;
  std::size_t burst = 0;
  for (int i = 0; i < 30; ++i) {
    busy.send({"b" + std::to_string(i)});
    burst += frame("b" + std::to_string(i)).size();
  }
  for (int i = 0; i < 3; ++i) {
    quiet.send({"q" + std::to_string(i)});
    burst += frame("q" + std::to_string(i)).size();
  }
  std::size_t arrived = 0;
  REQUIRE_MESSAGE(rig.pump([&] { return (arrived = queued_bytes(fds[0]) + queued_bytes(fds[1])) >= burst; }),
                  arrived, " of ", burst, " bytes arrived");

  // As the gateway drains the pool: a loop turn (the watchers report unread input), then
  // receive() with a fresh budget.
  std::vector<std::string> served;  // routing id of each message, in order
  for (int call = 0; call < 40 && rig.sink.got.size() < 33; ++call) {
    rig.turn();
    std::size_t handled = 0;
    auto before = rig.sink.got.size();
    rig.router->receive(handled, 3, rig.sink);
    for (auto i = before; i < rig.sink.got.size(); ++i) served.push_back(rig.sink.got[i].id);
  }
  REQUIRE(served.size() == 33);
  // The quiet worker is served within the first two calls, not after the busy one's 30.
  auto first_quiet = std::find(served.begin(), served.end(), "quiet") - served.begin();
  CHECK_MESSAGE(first_quiet <= 6, "the quiet worker's first message came ", first_quiet + 1, "th");
  // Each worker's own messages stay in order.
  std::vector<std::string> busy_bodies, quiet_bodies;
  for (const auto& g : rig.sink.got) (g.id == "busy" ? busy_bodies : quiet_bodies).push_back(g.body);
  CHECK(busy_bodies.size() == 30);
  CHECK(quiet_bodies == std::vector<std::string>{"q0", "q1", "q2"});
  for (std::size_t i = 0; i < busy_bodies.size(); ++i) CHECK(busy_bodies[i] == "b" + std::to_string(i));
}

TEST_CASE("zmtp router: ROUTER_HANDOVER: a second connection with a known id takes it over") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.start();
  Dealer first(rig.endpoint, "w1", true);
  rig.wait_connects(1);
  REQUIRE(rig.pump([&] { return first.saw(ZMQ_EVENT_HANDSHAKE_SUCCEEDED); }));
  rig.round_trip(first, "w1", "first");

  Dealer second(rig.endpoint, "w1");
  REQUIRE_MESSAGE(rig.pump([&] { return rig.counters().handovers == 1; }), "no handover");
  CHECK(rig.counters().connects == 2);
  CHECK(rig.counters().disconnects == 1);  // the first connection, dropped by the router
  REQUIRE_MESSAGE(rig.pump([&] { return first.saw(ZMQ_EVENT_DISCONNECTED); }), "the first DEALER kept its connection");

  for (int i = 0; i < 3; ++i) REQUIRE(rig.router->send("w1", {"to-w1-" + std::to_string(i)}) == Send::sent);
  for (int i = 0; i < 3; ++i)
    CHECK(rig.dealer_receive(second) == std::vector<std::string>{"to-w1-" + std::to_string(i)});
  std::vector<std::string> frames;
  std::vector<bool> more;
  CHECK_FALSE(first.try_receive(frames, more));  // its connection was gone before the sends

  rig.round_trip(second, "w1", "second");
  CHECK(rig.counters().handovers == 1);
  CHECK(rig.counters().protocol_errors == 0);

  // A different id is no handover.
  Dealer w2(rig.endpoint, "w2");
  rig.wait_connects(3);
  CHECK(rig.counters().handovers == 1);
  CHECK(rig.counters().disconnects == 1);
}

TEST_CASE("zmtp router: a worker that goes away is counted and becomes unreachable; it can come back") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.start();
  Dealer w1(rig.endpoint, "w1");
  rig.wait_connects(1);
  rig.round_trip(w1, "w1", "before");

  w1.shut();
  REQUIRE_MESSAGE(rig.pump([&] { return rig.counters().disconnects == 1; }), "the close went unnoticed");
  CHECK(rig.router->send("w1", {"x"}) == Send::unreachable);
  CHECK(rig.counters().protocol_errors == 0);
  CHECK(rig.counters().handovers == 0);

  Dealer again(rig.endpoint, "w1");
  rig.wait_connects(2);
  rig.round_trip(again, "w1", "again");
  CHECK(rig.counters().handovers == 0);  // the old connection was already gone
}

TEST_CASE("zmtp router: MAXMSGSIZE: a frame over max_pool_message_bytes drops the connection") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.config.max_pool_message_bytes = 1024;
  rig.start();

  struct Case {
    std::string id;
    std::vector<std::string> message;
    std::vector<Got> delivered;  // what reaches the sink before the drop
  };
  // Bodies are independent (PROTOCOL.md: multipart is only batching), so the frames before
  // the bad one of a message are handed over as they are parsed; libzmq would drop the whole
  // message.
  const std::vector<Case> cases = {
      {"w1", {pattern(2000, 'd')}, {}},
      {"w2", {"fine", pattern(1025, 'e'), "never"}, {{"w2", "fine"}}},
  };
  std::uint64_t n = 0;
  for (const auto& c : cases) {
    CAPTURE(c.id);
    ++n;
    Dealer dealer(rig.endpoint, c.id, true);
    rig.wait_connects(n);
    auto at_limit = pattern(1024, 'c');  // at the limit is fine
    dealer.send({at_limit});
    CHECK(rig.sink_receive(1) == std::vector<Got>{{c.id, at_limit}});
    auto handled = rig.handled;

    auto before = rig.sink.got.size();
    dealer.send(c.message);
    REQUIRE_MESSAGE(rig.pump([&] { return rig.counters().protocol_errors == n; }), "not refused");
    CHECK(std::vector<Got>(rig.sink.got.begin() + static_cast<std::ptrdiff_t>(before), rig.sink.got.end()) ==
          c.delivered);
    CHECK(rig.handled == handled);  // no message completed
    CHECK(rig.counters().disconnects == n);
    REQUIRE_MESSAGE(rig.pump([&] { return dealer.saw(ZMQ_EVENT_DISCONNECTED); }), "the DEALER kept its connection");
    CHECK(rig.router->send(c.id, {"x"}) == Send::unreachable);
  }

  // Others still connect and talk.
  Dealer w3(rig.endpoint, "w3");
  rig.wait_connects(3);
  rig.round_trip(w3, "w3", "after");
  CHECK(rig.counters().protocol_errors == 2);
}

TEST_CASE("zmtp router: SNDHWM: a peer that never reads makes sends full, nothing blocks, and it recovers") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.config.pool_hwm = 2;
  rig.start();
  RawClient slow(rig.endpoint, 4096);
  slow.write(zmtp::handshake("DEALER", "slow"));
  rig.wait_connects(1);

  const auto big = pattern(256 * 1024, 'h');
  auto fill = [&] {
    auto started = Clock::now();
    int sent = 0;
    Send result = Send::sent;
    for (int attempt = 0; attempt < 200 && result == Send::sent; ++attempt) {
      result = rig.router->send("slow", {big});
      if (result == Send::sent) ++sent;
    }
    CHECK(result == Send::full);
    CHECK(Clock::now() - started < 1s);  // every send returned at once
    return sent;
  };
  int sent = fill();
  CHECK(sent >= 2);  // the kernel took some, two wait in the router
  CHECK(rig.router->send("slow", {"small"}) == Send::full);

  // The mark is per peer: another worker is served meanwhile.
  Dealer w2(rig.endpoint, "w2");
  rig.wait_connects(2);
  rig.round_trip(w2, "w2", "beside-the-slow-one");

  // The slow peer reads everything: the router's queue drains and sends are accepted again.
  auto handshake_size = zmtp::handshake("ROUTER", "").size();
  auto total = handshake_size + static_cast<std::size_t>(sent) * frame(big).size();
  REQUIRE_MESSAGE(rig.pump([&] { return slow.has(total); }), slow.received(), " of ", total, " bytes read");
  CHECK(rig.router->send("slow", {"small"}) == Send::sent);
  auto small = frame("small");
  REQUIRE(rig.pump([&] { return slow.has(total + small.size()); }));
  CHECK(slow.received() == total + small.size());
  CHECK(slow.take(handshake_size) == zmtp::handshake("ROUTER", ""));
  for (int i = 0; i < sent; ++i) REQUIRE(slow.take(frame(big).size()) == frame(big));
  CHECK(slow.take(small.size()) == small);

  // Full again, then close(0): the queued messages are counted lost; close does not wait.
  fill();
  auto started = Clock::now();
  rig.router->close(0);
  CHECK(Clock::now() - started < 500ms);
  CHECK(rig.counters().lost_on_disconnect == 2);
  CHECK(rig.counters().disconnects == 2);  // slow and w2
}

// =============================================================================================
// Raw peers: what libzmq does not send

TEST_CASE("zmtp router: an anonymous peer gets a routing id starting with a zero byte") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.start();
  RawClient anon(rig.endpoint);
  anon.write(zmtp::handshake("DEALER", ""));  // READY without Identity
  rig.wait_connects(1);
  anon.write(frame("hello"));
  auto got = rig.sink_receive(1);
  REQUIRE(got.size() == 1);
  const std::string id = got[0].id;
  CHECK(got[0].body == "hello");
  REQUIRE(!id.empty());
  CHECK(id[0] == '\0');
  CHECK(id.size() > 1);

  // An empty Identity, or one starting with a zero byte (libzmq keeps those for itself), is
  // anonymous too, and each such peer gets an id of its own.
  RawClient empty(rig.endpoint);
  empty.write(greeting() + command_frame("READY", property("Socket-Type", "DEALER") + property("Identity", "")));
  RawClient zero(rig.endpoint);
  zero.write(greeting() +
             command_frame("READY", property("Socket-Type", "REQ") + property("Identity", std::string("\0w1", 3))));
  rig.wait_connects(3);
  empty.write(frame("from-empty"));
  REQUIRE(rig.pump([&] { return rig.sink.got.size() == 2; }));
  zero.write(frame("from-zero"));
  REQUIRE(rig.pump([&] { return rig.sink.got.size() == 3; }));
  const std::string id2 = rig.sink.got[1].id, id3 = rig.sink.got[2].id;
  CHECK(rig.sink.got[1].body == "from-empty");
  CHECK(rig.sink.got[2].body == "from-zero");
  for (const auto& other : {id2, id3}) {
    REQUIRE(!other.empty());
    CHECK(other[0] == '\0');
  }
  CHECK(id2 != id);
  CHECK(id3 != id);
  CHECK(id3 != id2);

  // The id routes back to that peer.
  REQUIRE(rig.router->send(id, {"back", "to-anon"}) == Send::sent);
  auto expected = zmtp::handshake("ROUTER", "") + frame("back", true) + frame("to-anon");
  REQUIRE(rig.pump([&] { return anon.has(expected.size()); }));
  CHECK(anon.take(expected.size()) == expected);
  CHECK(rig.counters().handovers == 0);
}

TEST_CASE("zmtp router (raw peers): refused handshakes are dropped and counted, a good DEALER is served meanwhile") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.start();
  Dealer good(rig.endpoint, "good");
  rig.wait_connects(1);

  struct Refusal {
    const char* what;
    std::string bytes;
  };
  const std::vector<Refusal> refusals = {
      {"Socket-Type PUB", greeting() + command_frame("READY", property("Socket-Type", "PUB"))},
      {"a CURVE greeting", greeting(3, 1, "CURVE")},
      {"a message frame before READY", greeting() + frame("early")},
      {"not ZMTP at all", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"ZMTP 2", greeting(2, 0).substr(0, 11)},
      {"READY without Socket-Type", greeting() + command_frame("READY", property("Identity", "x"))},
      {"ERROR instead of READY", greeting() + command_frame("ERROR", bytes({6}) + "denied")},
      {"a malformed command", greeting() + bytes({0x04, 0x00})},
      {"a frame header over the limit", greeting() + bytes({0x06, 0, 0, 0, 0, 0x40, 0, 0, 0})},  // 1 GiB command
  };
  std::uint64_t errors = 0;
  for (const auto& refusal : refusals) {
    CAPTURE(refusal.what);
    RawClient bad(rig.endpoint);
    bad.write(refusal.bytes);
    REQUIRE_MESSAGE(rig.pump([&] { return bad.closed_by_router(); }), "the router kept the connection");
    ++errors;
    CHECK(rig.counters().protocol_errors == errors);
    rig.round_trip(good, "good", refusal.what);
  }
  // Refused before READY: never a connection, so never a disconnect either.
  CHECK(rig.counters().connects == 1);
  CHECK(rig.counters().disconnects == 0);

  // After READY, a malformed command drops a connected peer: both counted.
  RawClient late(rig.endpoint);
  late.write(zmtp::handshake("DEALER", "late"));
  rig.wait_connects(2);
  late.write(bytes({0x04, 0x00}));
  REQUIRE(rig.pump([&] { return late.closed_by_router(); }));
  CHECK(rig.counters().protocol_errors == errors + 1);
  CHECK(rig.counters().disconnects == 1);
  CHECK(rig.router->send("late", {"x"}) == Send::unreachable);

  // A peer that hangs up mid-handshake is no error.
  {
    RawClient quitter(rig.endpoint);
    quitter.write(greeting().substr(0, 20));
  }
  RawClient marker(rig.endpoint);  // accepted after the quitter: its handshake proves the quitter was seen
  marker.write(zmtp::handshake("DEALER", "marker"));
  rig.wait_connects(3);
  rig.round_trip(good, "good", "after-quitter");
  CHECK(rig.counters().protocol_errors == errors + 1);
  CHECK(rig.sink.got.size() == refusals.size() + 1);  // only the good DEALER's bodies
  for (const auto& g : rig.sink.got) CHECK(g.id == "good");
}

TEST_CASE("zmtp router (raw peers): a connection that never finishes its handshake is dropped after the timeout") {
  Rig rig;
  rig.config.pool_handshake_timeout_ms = 100;
  rig.start();
  Dealer good(rig.endpoint, "good");
  rig.wait_connects(1);
  RawClient silent(rig.endpoint);                // connects, says nothing
  RawClient halfway(rig.endpoint);
  halfway.write(greeting());                     // a greeting but no READY
  auto started = Clock::now();
  REQUIRE_MESSAGE(rig.pump([&] { return silent.closed_by_router() && halfway.closed_by_router(); }),
                  "the router kept connections without a handshake");
  CHECK(Clock::now() - started >= std::chrono::milliseconds(90));  // not before the timeout
  CHECK(rig.counters().protocol_errors == 2);
  // A handshaken worker is not subject to it.
  rig.round_trip(good, "good", "after-timeouts");
  CHECK(rig.counters().disconnects == 0);
}

TEST_CASE("zmtp router (raw peer): the router's handshake on the wire; PING gets PONG with the same context") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.start();
  RawClient peer(rig.endpoint);
  // Our greeting in pieces, as libzmq sends it (signature, version, the rest).
  auto hello = zmtp::handshake("DEALER", "pinger");
  peer.write(hello.substr(0, 10));
  rig.turn();
  peer.write(hello.substr(10, 1));
  rig.turn();
  peer.write(hello.substr(11));
  rig.wait_connects(1);
  auto handshake = zmtp::handshake("ROUTER", "");  // 3.1, NULL, not as-server; READY(Socket-Type ROUTER)
  REQUIRE(rig.pump([&] { return peer.has(handshake.size()); }));
  CHECK(peer.take(handshake.size()) == handshake);

  peer.write(command_frame("PING", bytes({0x00, 0x64}) + "hb-7"));
  auto pong = command_frame("PONG", "hb-7");
  REQUIRE_MESSAGE(rig.pump([&] { return peer.has(pong.size()); }), "no PONG");
  CHECK(peer.take(pong.size()) == pong);

  peer.write(command_frame("PING", bytes({0x00, 0x00})));  // no context: an empty one back
  auto empty_pong = command_frame("PONG", "");
  REQUIRE(rig.pump([&] { return peer.has(empty_pong.size()); }));
  CHECK(peer.take(empty_pong.size()) == empty_pong);

  // PONG, an unknown command and a PING too short for its TTL are ignored; data flows.
  peer.write(command_frame("PONG", "x") + command_frame("X-NEW", "") + command_frame("PING", "") + frame("a", true) +
             frame("b"));
  CHECK(rig.sink_receive(2) == std::vector<Got>{{"pinger", "a"}, {"pinger", "b"}});
  REQUIRE(rig.router->send("pinger", {"down"}) == Send::sent);
  auto down = frame("down");
  REQUIRE(rig.pump([&] { return peer.has(down.size()); }));
  CHECK(peer.take(down.size()) == down);  // nothing else in between
  CHECK(peer.received() == 0);
  CHECK(rig.counters().protocol_errors == 0);
  CHECK(rig.counters().disconnects == 0);
}

// =============================================================================================
// Binding and closing

TEST_CASE("zmtp router: endpoints that cannot be bound throw std::runtime_error naming the endpoint") {
  TempDir dir{"sb-router"};
  Loop loop;
  GatewayConfig config;
  config.pool_server = "zmtp";
  config.pool_linger_ms = 0;
  auto refused = [&](const std::vector<std::string>& pool, const std::string& named) {
    config.pool = pool;
    std::string what;
    bool threw = false;
    try {
      auto router = make_pool_router(config, loop.p, [] {});
    } catch (const std::runtime_error& e) {
      threw = true;
      what = e.what();
    }
    CHECK_MESSAGE(threw, named, " was bound");
    CHECK_MESSAGE(what.find(named) != std::string::npos, what);
    return what;
  };

  SUBCASE("a tcp port another socket holds") {
    int port = 0;
    Fd held = tcp_listener(port);
    auto endpoint = "tcp://127.0.0.1:" + std::to_string(port);
    CHECK(refused({endpoint}, endpoint).find("in use") != std::string::npos);
  }
  SUBCASE("an ipc path in a directory that does not exist") {
    auto endpoint = "ipc://" + dir.path + "/missing/pool.sock";
    CHECK(refused({endpoint}, endpoint).find("No such file") != std::string::npos);
  }
  SUBCASE("a transport the zmtp server does not speak") {
    CHECK(refused({"inproc://x"}, "inproc://x").find("tcp:// and ipc://") != std::string::npos);
  }
  SUBCASE("malformed tcp and ipc endpoints") {
    CHECK(refused({"tcp://127.0.0.1"}, "tcp://127.0.0.1").find("tcp://HOST:PORT") != std::string::npos);
    CHECK(refused({"tcp://127.0.0.1:"}, "tcp://127.0.0.1:").find("tcp://HOST:PORT") != std::string::npos);
    CHECK(refused({"ipc://"}, "ipc://").find("1..107") != std::string::npos);
    auto too_long = "ipc:///" + std::string(107, 'p');
    CHECK(refused({too_long}, too_long).find("1..107") != std::string::npos);
  }
  SUBCASE("a regular file at the ipc path is not replaced") {
    auto path = dir.path + "/pool.sock";
    std::ofstream(path) << "keep me";
    refused({"ipc://" + path}, "ipc://" + path);
    std::ifstream in(path);
    std::string content;
    std::getline(in, content);
    CHECK(content == "keep me");
  }
  SUBCASE("one bad endpoint of two: the one already bound is released") {
    auto good = dir.path + "/good.sock";
    refused({"ipc://" + good, "inproc://x"}, "inproc://x");
    CHECK_FALSE(std::filesystem::exists(good));
    // Released for real: a router binds it again.
    config.pool = {"ipc://" + good};
    auto router = make_pool_router(config, loop.p, [] {});
    CHECK(is_socket_file(good));
    router->close(0);
    CHECK_FALSE(std::filesystem::exists(good));
  }
}

TEST_CASE("zmtp router: a stale ipc socket file is replaced; close() removes the file") {
  Rig rig(Transport::ipc);
  leave_stale_socket_file(rig.ipc_path());
  REQUIRE(is_socket_file(rig.ipc_path()));
  rig.start();
  Dealer w1(rig.endpoint, "w1");
  rig.wait_connects(1);
  rig.round_trip(w1, "w1", "through-the-replaced-file");

  SUBCASE("close()") {
    rig.router->close(0);
    CHECK_FALSE(std::filesystem::exists(rig.ipc_path()));
    CHECK(rig.router->send("w1", {"x"}) == Send::unreachable);
    rig.router->close(0);  // twice is harmless
  }
  SUBCASE("destroyed without close()") {
    rig.router.reset();
    CHECK_FALSE(std::filesystem::exists(rig.ipc_path()));
  }
}

TEST_CASE("zmtp router: an ipc:// endpoint in Linux's abstract namespace") {
  Rig rig;
  rig.endpoint = "ipc://@sb-router-test-" + std::to_string(::getpid());
  rig.config.pool = {rig.endpoint};
  rig.router = rig.make();
  Dealer w1(rig.endpoint, "w1");
  rig.wait_connects(1);
  rig.round_trip(w1, "w1", "abstract");
  rig.router->close(0);
}

TEST_CASE("zmtp router: close(linger) flushes a message queued just before it") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.start();
  Dealer w1(rig.endpoint, "w1");
  rig.wait_connects(1);
  rig.round_trip(w1, "w1", "warm-up");

  auto big = pattern(8 << 20, 'l');  // far more than a socket buffer: most of it waits in the router
  REQUIRE(rig.router->send("w1", {big, "tail"}) == Send::sent);
  auto started = Clock::now();
  rig.router->close(3000);
  CHECK(Clock::now() - started < 2s);  // returned once flushed, not at the linger's end
  CHECK(rig.counters().lost_on_disconnect == 0);
  CHECK(rig.counters().disconnects == 1);
  CHECK(rig.dealer_receive(w1) == std::vector<std::string>{big, "tail"});
  if (transport == Transport::ipc) CHECK_FALSE(std::filesystem::exists(rig.ipc_path()));
}

TEST_CASE("zmtp router: close(0) does not wait: what the kernel has not taken is counted lost") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.start();
  // A peer that never reads (a DEALER's I/O thread would drain the socket while send() writes).
  RawClient peer(rig.endpoint, 4096);
  peer.write(zmtp::handshake("DEALER", "w1"));
  rig.wait_connects(1);
  REQUIRE(rig.router->send("w1", {pattern(8 << 20, 'z')}) == Send::sent);  // more than the kernel holds
  REQUIRE(rig.router->send("w1", {"second"}) == Send::sent);
  auto started = Clock::now();
  rig.router->close(0);
  CHECK(Clock::now() - started < 500ms);
  CHECK(rig.counters().lost_on_disconnect == 2);
  CHECK(rig.counters().disconnects == 1);
  REQUIRE(rig.pump([&] { return peer.closed_by_router(); }));
  if (transport == Transport::ipc) CHECK_FALSE(std::filesystem::exists(rig.ipc_path()));
}

// =============================================================================================
// make_pool_router's other kind

TEST_CASE("libzmq router via make_pool_router: a DEALER both ways, unknown ids unreachable, bind errors") {
  Rig rig(Transport::ipc, "libzmq");
  rig.start();
  Dealer w1(rig.endpoint, "w1");
  w1.send({"up-1", "up-2"});
  CHECK(rig.sink_receive(2) == std::vector<Got>{{"w1", "up-1"}, {"w1", "up-2"}});
  CHECK(rig.inputs > 0);

  REQUIRE(rig.router->send("w1", {"down-1", "down-2"}) == Send::sent);
  std::vector<bool> more;
  CHECK(rig.dealer_receive(w1, &more) == std::vector<std::string>{"down-1", "down-2"});
  CHECK(more == std::vector<bool>{true, false});
  CHECK(rig.router->send("nobody", {"x"}) == Send::unreachable);

  // libzmq keeps its own counts: none here.
  CHECK(rig.counters().connects == 0);
  CHECK(rig.counters().protocol_errors == 0);

  rig.router->close(0);
  CHECK_FALSE(std::filesystem::exists(rig.ipc_path()));  // libzmq leaves it; the router removes it

  std::string what;
  rig.config.pool = {"nonsense://x"};
  try {
    rig.make();
  } catch (const std::runtime_error& e) {
    what = e.what();
  }
  CHECK_MESSAGE(what.find("nonsense://x") != std::string::npos, what);
}
