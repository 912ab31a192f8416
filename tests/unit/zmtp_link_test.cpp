// The worker's own ZMTP 3.1 client: the pure codec (greeting, READY, frames, the incremental
// decoder and its refusals), then the link against a real libzmq ROUTER on ipc:// and tcp://
// (handshake, ZMQ_IMMEDIATE, multipart both ways, batch limit, reconnect, MAXMSGSIZE, SNDHWM,
// heartbeats), a raw peer for what libzmq never sends (PING bytes, refused handshakes), the
// endpoint checks, and make_pool_link's choice of libzmq. Every wait loops on a condition under
// a 5 s deadline; nothing sleeps to synchronise.
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backend/runtime/pool_link.hpp"
#include "common/zmtp_codec.hpp"
#include "tests/unit/zmtp_wire_bytes.hpp"

using namespace sb::backend;
namespace zmtp = sb::zmtp;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto wait_limit = 5s;
const std::string worker_id = "w-test-1";

// ---------------------------------------------------------------------------------------------
// Codec helpers

using namespace sb::zmtp::test_bytes;

std::string ready_frame(std::string_view socket_type) {
  return command_frame("READY", property("Socket-Type", socket_type) + property("Identity", ""));
}



// What a decoder yields, flattened so a whole exchange compares in one CHECK.
struct Unit {
  std::string kind;  // "greeting", "frame", "command"
  std::string body;
  bool more = false;
  bool operator==(const Unit& o) const { return kind == o.kind && body == o.body && more == o.more; }
};

doctest::String toString(const std::vector<Unit>& units) {
  std::string s = "[";
  for (const auto& u : units)
    s += u.kind + "(" + std::to_string(u.body.size()) + (u.more ? " bytes, more) " : " bytes) ");
  return (s + "]").c_str();
}

// Drains every complete unit; stops at incomplete or error (returned).
zmtp::Decoder::Status drain(zmtp::Decoder& decoder, std::vector<Unit>& out) {
  while (true) {
    zmtp::Frame f;
    auto status = decoder.next(f);
    if (status == zmtp::Decoder::Status::greeting) {
      out.push_back({"greeting", "", false});
      continue;
    }
    if (status == zmtp::Decoder::Status::frame) {
      out.push_back({f.command ? "command" : "frame", std::string(f.body), f.more});
      continue;
    }
    return status;
  }
}

zmtp::Decoder::Status feed(zmtp::Decoder& decoder, std::string_view data, std::size_t chunk, std::vector<Unit>& out) {
  auto status = zmtp::Decoder::Status::incomplete;
  for (std::size_t at = 0; at < data.size(); at += chunk) {
    std::size_t n = std::min(chunk, data.size() - at);
    std::memcpy(decoder.prepare(n), data.data() + at, n);
    decoder.commit(n);
    status = drain(decoder, out);
    if (status == zmtp::Decoder::Status::error) return status;
  }
  return status;
}

// ---------------------------------------------------------------------------------------------
// Link helpers

struct Sink final : BodySink {
  std::vector<std::string> bodies;
  void body(std::string_view b) override { bodies.emplace_back(b); }
};

// One turn of a worker loop: wait as prepare_wait asks (at most `wait_ms`, less if the link has
// a reconnect due), then service. Returns the link's `revents`.
short turn(PoolLink& link, BodySink& sink, std::int64_t batch = 256, int wait_ms = 5) {
  pollfd entry{};
  int timeout = link.prepare_wait(entry) ? 0 : wait_ms;
  auto due = link.deadline();
  if (due != SteadyTime::max()) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(due - Clock::now()).count();
    timeout = static_cast<int>(std::clamp<std::int64_t>(left, 0, timeout));
  }
  short revents = 0;
  if (entry.fd >= 0) {
    if (::poll(&entry, 1, timeout) > 0) revents = entry.revents;
  } else {
    ::poll(nullptr, 0, timeout);  // nothing to wait on: a reconnect is due
  }
  link.service(revents, batch, sink, Clock::now());
  return revents;
}

// Turns the link until `done()` holds; false if the deadline passed first.
bool pump(PoolLink& link, BodySink& sink, const std::function<bool()>& done, std::int64_t batch = 256,
          std::chrono::milliseconds limit = wait_limit) {
  auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    turn(link, sink, batch);
  }
  return true;
}


struct RouterOptions {
  int rcvhwm = -1;           // -1: libzmq's default
  int heartbeat_ivl_ms = 0;  // 0: no PINGs
  int heartbeat_timeout_ms = 0;
};

// A gateway's pool socket in miniature: a libzmq ROUTER with ZMQ_ROUTER_MANDATORY and
// ZMQ_ROUTER_HANDOVER, bound in the test thread. Owns its context unless given one, so shut() tears everything down
// for real (zmq_ctx_term with linger 0 returns once the listener and connections are closed).
class Router {
 public:
  Router(const std::string& bind_to, RouterOptions options = {}, void* shared_context = nullptr)
      : options_(options), shared_(shared_context) {
    open(bind_to);
  }
  ~Router() { shut(); }
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  const std::string& endpoint() const { return endpoint_; }

  void shut() {
    if (socket_) zmq_close(socket_);
    socket_ = nullptr;
    if (context_ && !shared_) zmq_ctx_term(context_);
    context_ = nullptr;
  }

  // After shut(): a new ROUTER on the same endpoint (same path, same port), as a restarted gateway.
  void reopen() { open(endpoint_); }

  // [id][frames...] if the ROUTER knows `id` now; false (nothing sent) if not yet.
  bool try_send(const std::string& id, const std::vector<std::string>& frames) {
    if (zmq_send(socket_, id.data(), id.size(), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
      int err = zmq_errno();
      REQUIRE_MESSAGE((err == EHOSTUNREACH || err == EAGAIN), zmq_strerror(err));
      return false;
    }
    for (std::size_t i = 0; i < frames.size(); ++i) {
      int flags = ZMQ_DONTWAIT | (i + 1 < frames.size() ? ZMQ_SNDMORE : 0);
      REQUIRE(zmq_send(socket_, frames[i].data(), frames[i].size(), flags) >= 0);
    }
    return true;
  }

  // One whole message if one is waiting: frames (routing id first) and each frame's MORE flag.
  bool try_receive(std::vector<std::string>& frames, std::vector<bool>& more) {
    frames.clear();
    more.clear();
    while (true) {
      zmq_msg_t part;
      zmq_msg_init(&part);
      if (zmq_msg_recv(&part, socket_, frames.empty() ? ZMQ_DONTWAIT : 0) < 0) {
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

 private:
  void open(const std::string& bind_to) {
    context_ = shared_ ? shared_ : zmq_ctx_new();
    REQUIRE(context_);
    socket_ = zmq_socket(context_, ZMQ_ROUTER);
    REQUIRE(socket_);
    int linger = 0;
    int one = 1;
    REQUIRE(zmq_setsockopt(socket_, ZMQ_LINGER, &linger, sizeof linger) == 0);
    // As the gateway sets it (gateway/shell/libzmq_router.cpp): unroutable sends fail, and a
    // reconnecting worker takes its id over from a connection the ROUTER has not yet reaped.
    REQUIRE(zmq_setsockopt(socket_, ZMQ_ROUTER_MANDATORY, &one, sizeof one) == 0);
    REQUIRE(zmq_setsockopt(socket_, ZMQ_ROUTER_HANDOVER, &one, sizeof one) == 0);
    if (options_.rcvhwm >= 0)
      REQUIRE(zmq_setsockopt(socket_, ZMQ_RCVHWM, &options_.rcvhwm, sizeof options_.rcvhwm) == 0);
    if (options_.heartbeat_ivl_ms > 0) {
      REQUIRE(zmq_setsockopt(socket_, ZMQ_HEARTBEAT_IVL, &options_.heartbeat_ivl_ms, sizeof(int)) == 0);
      REQUIRE(zmq_setsockopt(socket_, ZMQ_HEARTBEAT_TIMEOUT, &options_.heartbeat_timeout_ms, sizeof(int)) == 0);
    }
    // The old listener is gone (its context terminated), so a refusal here is not a race with
    // it; still, retry a busy address until the deadline rather than fail on a slow kernel.
    auto deadline = Clock::now() + wait_limit;
    while (zmq_bind(socket_, bind_to.c_str()) != 0) {
      int err = zmq_errno();
      REQUIRE_MESSAGE(err == EADDRINUSE, "bind ", bind_to, ": ", zmq_strerror(err));
      REQUIRE_MESSAGE(Clock::now() < deadline, "bind ", bind_to, ": address stayed in use");
      ::poll(nullptr, 0, 5);
    }
    char last[256];
    std::size_t size = sizeof last;
    REQUIRE(zmq_getsockopt(socket_, ZMQ_LAST_ENDPOINT, last, &size) == 0);
    endpoint_ = last;
  }

  RouterOptions options_;
  void* shared_ = nullptr;
  void* context_ = nullptr;
  void* socket_ = nullptr;
  std::string endpoint_;
};

// Terminates a context on scope exit (declare it before the sockets that live in it).
struct ContextGuard {
  void*& context;
  ~ContextGuard() {
    if (context) zmq_ctx_term(context);
  }
};

enum class Transport { ipc, tcp };

// A ROUTER plus a zmtp link to it, with the reconnect backoff short enough for tests.
struct Rig {
  TempDir dir;
  BackendConfig config;
  ShellCounters counters;
  Sink sink;
  std::optional<Router> router;
  std::unique_ptr<PoolLink> link;

  explicit Rig(Transport transport, RouterOptions options = {}) {
    config.reconnect_ms = 10;
    config.reconnect_max_ms = 20;
    config.linger_ms = 0;
    router.emplace(transport == Transport::ipc ? "ipc://" + dir.path + "/gw.sock" : "tcp://127.0.0.1:*", options);
    if (transport == Transport::ipc) REQUIRE(router->endpoint() == "ipc://" + dir.path + "/gw.sock");
    if (transport == Transport::tcp) REQUIRE(router->endpoint().rfind("tcp://127.0.0.1:", 0) == 0);
  }
  ~Rig() {
    link.reset();
    router.reset();
  }

  void make_link() {
    std::string error;
    link = make_zmtp_link(config, router->endpoint(), worker_id, counters, error);
    REQUIRE_MESSAGE(link, error);
  }

  bool pump(const std::function<bool()>& done, std::int64_t batch = 256) { return ::pump(*link, sink, done, batch); }

  void wait_connects(std::uint64_t n) {
    REQUIRE_MESSAGE(pump([&] { return counters.connects >= n; }), "handshake ", n, " not done in time");
    REQUIRE(counters.connects == n);
  }

  // The ROUTER sends, retrying while it does not know us yet (our READY not processed).
  void router_send(const std::vector<std::string>& frames) {
    REQUIRE_MESSAGE(pump([&] { return router->try_send(worker_id, frames); }), "the ROUTER never learnt ", worker_id);
  }

  // The next message at the ROUTER, the link serviced meanwhile.
  std::vector<std::string> router_receive(std::vector<bool>* more_out = nullptr) {
    std::vector<std::string> frames;
    std::vector<bool> more;
    REQUIRE_MESSAGE(pump([&] { return router->try_receive(frames, more); }), "nothing reached the ROUTER");
    if (more_out) *more_out = more;
    return frames;
  }

  // Bodies the sink gets, `count` of them, in order.
  std::vector<std::string> sink_receive(std::size_t count) {
    REQUIRE_MESSAGE(pump([&] { return sink.bodies.size() >= count; }), "the sink got ", sink.bodies.size(), " of ",
                    count, " bodies");
    auto out = sink.bodies;
    sink.bodies.clear();
    return out;
  }

  PoolLink::Send send(const std::vector<std::string>& bodies) {
    std::string error;
    auto result = link->send(bodies.data(), bodies.size(), error);
    CHECK_MESSAGE(result != PoolLink::Send::failed, error);
    return result;
  }

  // A round trip both ways: proof the connection carries messages.
  void round_trip(const std::string& tag) {
    REQUIRE(send({"up-" + tag}) == PoolLink::Send::sent);
    CHECK(router_receive() == std::vector<std::string>{worker_id, "up-" + tag});
    router_send({"down-" + tag});
    CHECK(sink_receive(1) == std::vector<std::string>{"down-" + tag});
  }
};

#define EACH_TRANSPORT(transport)                   \
  Transport transport = Transport::ipc;             \
  SUBCASE("ipc://") { transport = Transport::ipc; } \
  SUBCASE("tcp://") { transport = Transport::tcp; }

// A Unix-socket listener that speaks raw bytes, for the handshakes libzmq would never send.
class RawPeer {
 public:
  explicit RawPeer(const std::string& path) : path_(path) {
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE(listener_ >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof address.sun_path);
    std::memcpy(address.sun_path, path.data(), path.size());
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener_, 4) == 0);
  }
  ~RawPeer() {
    hang_up();
    ::close(listener_);
    ::unlink(path_.c_str());
  }
  std::string endpoint() const { return "ipc://" + path_; }

  bool try_accept() {
    if (conn_ >= 0) return true;
    conn_ = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn_ < 0) REQUIRE_MESSAGE((errno == EAGAIN || errno == EWOULDBLOCK), std::strerror(errno));
    received_.clear();
    eof_ = false;
    return conn_ >= 0;
  }
  void hang_up() {
    if (conn_ >= 0) ::close(conn_);
    conn_ = -1;
  }
  void write(const std::string& data) {
    REQUIRE(conn_ >= 0);
    REQUIRE(::send(conn_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
  }
  // Reads what is there; true once `size` bytes were received in all.
  bool has(std::size_t size) {
    read_available();
    return received_.size() >= size;
  }
  bool closed_by_link() {
    read_available();
    return eof_;
  }
  std::string take(std::size_t size) {
    auto out = received_.substr(0, size);
    received_.erase(0, size);
    return out;
  }

 private:
  void read_available() {
    char buffer[4096];
    while (conn_ >= 0 && !eof_) {
      ssize_t n = ::recv(conn_, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) {
        received_.append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        eof_ = true;  // orderly close or reset: either way the link let go
      } else if (errno != EINTR) {
        break;
      }
    }
  }

  std::string path_;
  int listener_ = -1;
  int conn_ = -1;
  std::string received_;
  bool eof_ = false;
};

// A zmtp link to a RawPeer, accepted and with the link's handshake read off the wire.
struct RawRig {
  TempDir dir;
  RawPeer peer{dir.path + "/raw.sock"};
  BackendConfig config;
  ShellCounters counters;
  Sink sink;
  std::unique_ptr<PoolLink> link;
  const std::string handshake = zmtp::handshake("DEALER", worker_id);

  explicit RawRig(std::int64_t handshake_timeout_ms = 30000) {
    config.handshake_timeout_ms = handshake_timeout_ms;
    config.reconnect_ms = 10;
    config.reconnect_max_ms = 20;
    config.linger_ms = 0;
    std::string error;
    link = make_zmtp_link(config, peer.endpoint(), worker_id, counters, error);
    REQUIRE_MESSAGE(link, error);
  }
  ~RawRig() { link.reset(); }

  bool pump(const std::function<bool()>& done) { return ::pump(*link, sink, done); }

  // Accepts the link's next connection and checks it opens with exactly our greeting + READY.
  void accept_handshake() {
    REQUIRE_MESSAGE(pump([&] { return peer.try_accept(); }), "the link never connected");
    REQUIRE_MESSAGE(pump([&] { return peer.has(handshake.size()); }), "the link's handshake did not arrive");
    CHECK(peer.take(handshake.size()) == handshake);
  }

  // The link lets go of the connection (the peer reads EOF), then connects again.
  void expect_dropped_and_back() {
    REQUIRE_MESSAGE(pump([&] { return peer.closed_by_link(); }), "the link kept a refused connection");
    peer.hang_up();
    accept_handshake();
  }
};

}  // namespace

// =============================================================================================
// Codec

TEST_CASE("zmtp codec: client_handshake is a 3.1 NULL greeting then READY(Socket-Type, Identity)") {
  auto hs = zmtp::handshake("DEALER", "w-test-1");
  REQUIRE(hs.size() > zmtp::greeting_size);
  CHECK(static_cast<unsigned char>(hs[0]) == 0xff);
  CHECK(hs.substr(1, 8) == std::string(8, '\0'));
  CHECK(static_cast<unsigned char>(hs[9]) == 0x7f);
  CHECK(hs[10] == 3);  // version 3.1
  CHECK(hs[11] == 1);
  CHECK(hs.substr(12, 20) == std::string("NULL") + std::string(16, '\0'));
  CHECK(hs[32] == 0);  // as-server: no
  CHECK(hs.substr(33, 31) == std::string(31, '\0'));

  // The rest is exactly one command frame (short: READY with two properties fits in 255).
  auto rest = std::string_view(hs).substr(zmtp::greeting_size);
  REQUIRE(rest.size() >= 2);
  CHECK(rest[0] == 0x04);  // COMMAND, not LONG, not MORE
  REQUIRE(static_cast<unsigned char>(rest[1]) == rest.size() - 2);
  zmtp::Command command;
  REQUIRE(zmtp::parse_command(rest.substr(2), command));
  CHECK(command.name == "READY");
  std::string_view value;
  REQUIRE(zmtp::find_property(command.data, "Socket-Type", value));
  CHECK(value == "DEALER");
  REQUIRE(zmtp::find_property(command.data, "Identity", value));
  CHECK(value == "w-test-1");
  CHECK_FALSE(zmtp::find_property(command.data, "Resource", value));

  // Our own decoder (it does not look at as-server) reads it back: a greeting, then READY.
  zmtp::Decoder decoder(1024);
  std::vector<Unit> units;
  CHECK(feed(decoder, hs, hs.size(), units) == zmtp::Decoder::Status::incomplete);
  REQUIRE(units.size() == 2);
  CHECK(units[0].kind == "greeting");
  CHECK(units[1].kind == "command");
  CHECK(units[1].body == std::string(rest.substr(2)));
  CHECK(decoder.buffered() == 0);
}

TEST_CASE("zmtp codec: append_frame, short and long, with and without MORE") {
  std::string out;
  zmtp::append_frame(out, "abc", true);
  CHECK(out == bytes({0x01, 3}) + "abc");
  out.clear();
  zmtp::append_frame(out, "abc", false);
  CHECK(out == bytes({0x00, 3}) + "abc");
  out.clear();
  zmtp::append_frame(out, "", false);
  CHECK(out == bytes({0x00, 0}));
  out.clear();
  zmtp::append_frame(out, "", true);
  CHECK(out == bytes({0x01, 0}));

  std::string b255(255, 'x');
  out.clear();
  zmtp::append_frame(out, b255, false);
  CHECK(out == bytes({0x00, 0xff}) + b255);  // 255 is the largest short frame

  std::string b256(256, 'y');
  out.clear();
  zmtp::append_frame(out, b256, false);
  CHECK(out == bytes({0x02, 0, 0, 0, 0, 0, 0, 1, 0}) + b256);  // LONG, 8-byte network order

  std::string b70000(70000, 'z');  // 0x011170
  out.clear();
  zmtp::append_frame(out, b70000, true);
  CHECK(out == bytes({0x03, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70}) + b70000);

  // Frames append: a message is its frames back to back.
  out.clear();
  zmtp::append_frame(out, "a", true);
  zmtp::append_frame(out, "bc", false);
  CHECK(out == bytes({0x01, 1}) + "a" + bytes({0x00, 2}) + "bc");
}

TEST_CASE("zmtp codec: append_command, short and long") {
  std::string out;
  zmtp::append_command(out, "PONG", "ctx");
  CHECK(out == bytes({0x04, 8, 4}) + "PONGctx");
  std::string data(300, 'd');
  out.clear();
  zmtp::append_command(out, "PONG", data);
  CHECK(out == bytes({0x06, 0, 0, 0, 0, 0, 0, 0x01, 0x31, 4}) + "PONG" + data);  // 305 = 0x131
}

TEST_CASE("zmtp codec: the decoder reads a greeting then frames, byte by byte or in one chunk") {
  std::string big(300, 'L');
  std::string huge(200000, 'H');
  std::string stream = greeting() + ready_frame("ROUTER") + frame("one", true) + frame("", true) + frame(big, false) +
                       frame(huge, false) + command_frame("PING", bytes({0, 10}) + "ctx");
  std::vector<Unit> expected = {
      {"greeting", "", false},
      {"command", ready_frame("ROUTER").substr(2), false},
      {"frame", "one", true},
      {"frame", "", true},
      {"frame", big, false},
      {"frame", huge, false},
      {"command", std::string(1, 4) + "PING" + bytes({0, 10}) + "ctx", false},
  };
  for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, stream.size()}) {
    CAPTURE(chunk);
    zmtp::Decoder decoder(1 << 20);
    std::vector<Unit> units;
    CHECK(feed(decoder, stream, chunk, units) == zmtp::Decoder::Status::incomplete);
    CHECK(units == expected);
    CHECK(decoder.buffered() == 0);
    CHECK(decoder.error().empty());
  }

  SUBCASE("nothing before the whole greeting, nothing before the whole frame") {
    zmtp::Decoder decoder(1024);
    std::vector<Unit> units;
    auto g = greeting();
    CHECK(feed(decoder, g.substr(0, 63), 63, units) == zmtp::Decoder::Status::incomplete);
    CHECK(units.empty());
    CHECK(feed(decoder, g.substr(63) + frame(big, false).substr(0, 8), 100, units) ==
          zmtp::Decoder::Status::incomplete);
    REQUIRE(units.size() == 1);  // the greeting, not yet the long frame (its header is 9 bytes)
    CHECK(feed(decoder, frame(big, false).substr(8), 1000, units) == zmtp::Decoder::Status::incomplete);
    REQUIRE(units.size() == 2);
    CHECK(units[1].body == big);
  }

  SUBCASE("reset expects a greeting again") {
    zmtp::Decoder decoder(1024);
    std::vector<Unit> units;
    feed(decoder, greeting() + frame("x", false).substr(0, 1), 100, units);
    REQUIRE(units.size() == 1);
    CHECK(decoder.buffered() == 1);
    decoder.reset();
    CHECK(decoder.buffered() == 0);
    units.clear();
    CHECK(feed(decoder, greeting() + frame("y", false), 100, units) == zmtp::Decoder::Status::incomplete);
    CHECK(units == std::vector<Unit>{{"greeting", "", false}, {"frame", "y", false}});
  }

  SUBCASE("a greeting 3.0 and libzmq's signature padding are fine") {
    auto g = greeting(3, 0);
    g[8] = 9;  // libzmq puts its routing id size + 1 in the padding (ZMTP 1.0 compatibility)
    zmtp::Decoder decoder(1024);
    std::vector<Unit> units;
    CHECK(feed(decoder, g, 1, units) == zmtp::Decoder::Status::incomplete);
    CHECK(units.size() == 1);
  }
}

TEST_CASE("zmtp codec: the decoder refuses what is not ZMTP 3 NULL, and says why") {
  auto refuse = [](const std::string& stream, std::size_t chunk, std::uint64_t max = 1024) {
    zmtp::Decoder decoder(max);
    std::vector<Unit> units;
    auto status = feed(decoder, stream, chunk, units);
    CHECK(status == zmtp::Decoder::Status::error);
    CHECK_FALSE(decoder.error().empty());
    zmtp::Frame f;
    CHECK(decoder.next(f) == zmtp::Decoder::Status::error);  // sticky
    return decoder.error();
  };

  SUBCASE("first byte not 0xff: refused at once") {
    zmtp::Decoder decoder(1024);
    std::vector<Unit> units;
    CHECK(feed(decoder, "G", 1, units) == zmtp::Decoder::Status::error);  // "GET / HTTP/1.1"
    CHECK(decoder.error().find("bad signature") != std::string::npos);
  }
  SUBCASE("signature's last byte without bit 0") {
    auto g = greeting();
    g[9] = 0x7e;
    CHECK(refuse(g, 1).find("bad signature") != std::string::npos);
  }
  SUBCASE("major version below 3: refused once byte 10 is in") {
    zmtp::Decoder decoder(1024);
    std::vector<Unit> units;
    auto g = greeting(2, 0);
    CHECK(feed(decoder, g.substr(0, 11), 1, units) == zmtp::Decoder::Status::error);
    CHECK(decoder.error().find("ZMTP 2.x") != std::string::npos);
    CHECK(refuse(greeting(1, 0), 64).find("ZMTP 1.x") != std::string::npos);
  }
  SUBCASE("a mechanism other than NULL") {
    CHECK(refuse(greeting(3, 1, "PLAIN"), 64).find("NULL") != std::string::npos);
    CHECK(refuse(greeting(3, 1, "CURVE"), 1).find("NULL") != std::string::npos);
    CHECK(refuse(greeting(3, 1, "NULLX"), 64).find("NULL") != std::string::npos);  // not a prefix match
  }
  SUBCASE("bad flag bits") {
    for (int flags : {0x08, 0x10, 0x80, 0xff}) {
      CAPTURE(flags);
      auto error = refuse(greeting() + bytes({flags, 1}) + "x", 100);
      CHECK(error.find("bad frame flags " + std::to_string(flags)) != std::string::npos);
    }
  }
  SUBCASE("a frame over the limit is refused from its header alone, naming the limit") {
    std::string header = bytes({0x02, 0, 0, 0, 0, 0, 0, 0x07, 0xd0});  // LONG, 2000 bytes, no body yet
    auto error = refuse(greeting() + header, 1, 1024);
    CHECK(error.find("2000") != std::string::npos);
    CHECK(error.find("1024") != std::string::npos);
    // The limit itself is fine; one more is not. Short frames count too.
    zmtp::Decoder at_limit(1024);
    std::vector<Unit> units;
    CHECK(feed(at_limit, greeting() + frame(std::string(1024, 'a'), false), 4096, units) ==
          zmtp::Decoder::Status::incomplete);
    CHECK(units.size() == 2);
    CHECK(refuse(greeting() + frame(std::string(1025, 'a'), false), 4096, 1024).find("1024") != std::string::npos);
    CHECK(refuse(greeting() + frame(std::string(200, 'a'), false), 4096, 100).find("100") != std::string::npos);
    // A command over the limit too (a READY with huge metadata must not make us allocate).
    CHECK(refuse(greeting() + command_frame("READY", std::string(2000, 'm')), 4096, 1024).find("1024") !=
          std::string::npos);
    // A size near 2^64 must not wrap around any arithmetic.
    CHECK(refuse(greeting() + bytes({0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), 100, 1024).find("1024") !=
          std::string::npos);
  }
}

TEST_CASE("zmtp codec: find_property is case-insensitive and strict about truncation") {
  std::string metadata = property("Socket-Type", "ROUTER") + property("Identity", "") + property("X-Extra", "v");
  std::string_view value;
  REQUIRE(zmtp::find_property(metadata, "socket-type", value));
  CHECK(value == "ROUTER");
  REQUIRE(zmtp::find_property(metadata, "SOCKET-TYPE", value));
  CHECK(value == "ROUTER");
  REQUIRE(zmtp::find_property(metadata, "identity", value));
  CHECK(value.empty());
  REQUIRE(zmtp::find_property(metadata, "x-extra", value));
  CHECK(value == "v");
  CHECK_FALSE(zmtp::find_property(metadata, "Socket-Typ", value));
  CHECK_FALSE(zmtp::find_property(metadata, "Resource", value));
  CHECK_FALSE(zmtp::find_property("", "Socket-Type", value));

  // Cut anywhere inside the first property: never found, never read past the end.
  auto first = property("Socket-Type", "ROUTER");
  for (std::size_t cut = 1; cut < first.size(); ++cut) {
    CAPTURE(cut);
    CHECK_FALSE(zmtp::find_property(std::string_view(first).substr(0, cut), "Socket-Type", value));
  }
  // A value size that claims more than is there, before the property we want.
  std::string lying = bytes({1}) + "A" + u32(1000) + "short" + property("Socket-Type", "ROUTER");
  CHECK_FALSE(zmtp::find_property(lying, "Socket-Type", value));
  // A name size that runs past the end.
  CHECK_FALSE(zmtp::find_property(bytes({200}) + "Socket-Type", "Socket-Type", value));
}

TEST_CASE("zmtp codec: parse_command rejects empty and truncated bodies") {
  zmtp::Command command;
  CHECK_FALSE(zmtp::parse_command("", command));
  CHECK_FALSE(zmtp::parse_command(bytes({0}), command));             // empty name
  CHECK_FALSE(zmtp::parse_command(bytes({0}) + "READY", command));   // empty name, then bytes
  CHECK_FALSE(zmtp::parse_command(bytes({5}) + "READ", command));    // name cut short
  CHECK_FALSE(zmtp::parse_command(bytes({255}) + "PING", command));  // name size past the end
  REQUIRE(zmtp::parse_command(bytes({5}) + "READY", command));
  CHECK(command.name == "READY");
  CHECK(command.data.empty());
  REQUIRE(zmtp::parse_command(bytes({4}) + "PING" + bytes({0, 10}) + "ctx", command));
  CHECK(command.name == "PING");
  CHECK(command.data == bytes({0, 10}) + "ctx");
}

// =============================================================================================
// The link against a real libzmq ROUTER

TEST_CASE("zmtp link: handshake with a libzmq ROUTER; sends are refused until it is done (ZMQ_IMMEDIATE)") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.make_link();
  CHECK(rig.counters.connects == 0);
  CHECK(rig.send({"too early"}) == PoolLink::Send::refused);
  // Every send before the handshake is refused; nothing queues for later.
  REQUIRE(rig.pump([&] {
    if (rig.counters.connects > 0) return true;
    CHECK(rig.send({"too early"}) == PoolLink::Send::refused);
    return false;
  }));
  CHECK(rig.counters.connects == 1);
  CHECK(rig.counters.disconnects == 0);
  CHECK(rig.link->deadline() == SteadyTime::max());
  REQUIRE(rig.send({"first"}) == PoolLink::Send::sent);
  // The first message the ROUTER sees is the first one sent after the handshake.
  CHECK(rig.router_receive() == std::vector<std::string>{worker_id, "first"});
  CHECK(rig.counters.receive_errors == 0);
}

TEST_CASE("zmtp link: a multipart message reaches the ROUTER as [routing id][frames] with MORE right") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.make_link();
  rig.wait_connects(1);
  std::string long_frame(300, 'L');
  REQUIRE(rig.send({long_frame, "", "tail"}) == PoolLink::Send::sent);
  std::vector<bool> more;
  auto frames = rig.router_receive(&more);
  CHECK(frames == std::vector<std::string>{worker_id, long_frame, "", "tail"});
  CHECK(more == std::vector<bool>{true, true, true, false});

  // One frame, and then frames larger than a socket buffer: partial writes resume on POLLOUT.
  REQUIRE(rig.send({"solo"}) == PoolLink::Send::sent);
  std::string big(3 << 20, 'B');
  REQUIRE(rig.send({big, "after-big"}) == PoolLink::Send::sent);
  CHECK(rig.router_receive(&more) == std::vector<std::string>{worker_id, "solo"});
  CHECK(more == std::vector<bool>{true, false});
  frames = rig.router_receive(&more);
  REQUIRE(frames.size() == 3);
  CHECK(frames[1] == big);
  CHECK(frames[2] == "after-big");
  CHECK(more == std::vector<bool>{true, true, false});
}

TEST_CASE("zmtp link: the ROUTER's multipart messages reach the sink body by body, counted per message") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.make_link();
  rig.wait_connects(1);
  rig.router_send({"one", "two", "three"});
  CHECK(rig.sink_receive(3) == std::vector<std::string>{"one", "two", "three"});
  CHECK(rig.counters.messages_received == 1);

  std::string long_frame(300, 'L');
  std::string big(2 << 20, 'B');  // over one read chunk: assembled across reads
  rig.router_send({"", long_frame});
  rig.router_send({"single"});
  rig.router_send({big});
  auto bodies = rig.sink_receive(4);
  REQUIRE(bodies.size() == 4);
  CHECK(bodies[0].empty());
  CHECK(bodies[1] == long_frame);
  CHECK(bodies[2] == "single");
  CHECK(bodies[3] == big);
  CHECK(rig.counters.messages_received == 4);
  CHECK(rig.counters.receive_errors == 0);
}

TEST_CASE("zmtp link: service delivers at most max_messages per call and says input is waiting") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.make_link();
  rig.wait_connects(1);
  rig.router_send({"warm-up"});  // the ROUTER knows us now: the next sends go straight out
  REQUIRE(rig.sink_receive(1) == std::vector<std::string>{"warm-up"});
  auto before = rig.counters.messages_received;

  for (int i = 0; i < 10; ++i) REQUIRE(rig.router->try_send(worker_id, {"m" + std::to_string(i)}));
  // Wait, without servicing, until all 10 (4 bytes each: flags, size, "mN") are in our socket.
  pollfd entry{};
  REQUIRE_FALSE(rig.link->prepare_wait(entry));
  REQUIRE(entry.fd >= 0);
  auto deadline = Clock::now() + wait_limit;
  while (true) {
    int queued = 0;
    REQUIRE(::ioctl(entry.fd, FIONREAD, &queued) == 0);
    if (queued >= 40) break;
    REQUIRE_MESSAGE(Clock::now() < deadline, "only ", queued, " of 40 bytes arrived");
    ::poll(nullptr, 0, 1);
  }

  std::vector<std::uint64_t> per_call;
  std::vector<bool> waiting_after;
  while (rig.counters.messages_received - before < 10) {
    REQUIRE(Clock::now() < deadline);
    auto got = rig.counters.messages_received;
    turn(*rig.link, rig.sink, 3, 5);
    per_call.push_back(rig.counters.messages_received - got);
    pollfd next{};
    waiting_after.push_back(rig.link->prepare_wait(next));
  }
  // Every byte was already there, so each call fills its batch of 3 until the last one.
  CHECK(per_call == std::vector<std::uint64_t>{3, 3, 3, 1});
  CHECK(waiting_after == std::vector<bool>{true, true, true, false});
  std::vector<std::string> expected;
  for (int i = 0; i < 10; ++i) expected.push_back("m" + std::to_string(i));
  CHECK(rig.sink.bodies == expected);
}

TEST_CASE("zmtp link: a ROUTER that goes away and comes back on the same endpoint is rejoined") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.make_link();
  rig.wait_connects(1);
  rig.round_trip("before");
  auto endpoint = rig.router->endpoint();

  rig.router->shut();  // linger 0; the context is terminated, so the connection is closed now
  REQUIRE_MESSAGE(rig.pump([&] { return rig.counters.disconnects >= 1; }), "the link did not notice");
  CHECK(rig.counters.disconnects == 1);
  CHECK(rig.counters.receive_errors == 0);           // a lost peer is not a protocol error
  CHECK(rig.link->deadline() != SteadyTime::max());  // a reconnect is planned
  // ZMQ_IMMEDIATE: nothing queues while the gateway is away.
  CHECK(rig.send({"while away"}) == PoolLink::Send::refused);
  // An attempt while nothing listens fails and plans the next one, still refusing sends.
  auto planned = rig.link->deadline();
  auto retried = [&] {
    CHECK(rig.send({"while away"}) == PoolLink::Send::refused);
    auto due = rig.link->deadline();
    return due != planned && due != SteadyTime::max();
  };
  REQUIRE_MESSAGE(rig.pump(retried), "no second attempt");
  CHECK(rig.counters.connects == 1);
  if (transport == Transport::ipc) {
    auto path = endpoint.substr(6);
    ::unlink(path.c_str());  // libzmq removes it on close; be sure no stale file answers
  }
  rig.router->reopen();
  REQUIRE(rig.router->endpoint() == endpoint);
  rig.wait_connects(2);
  CHECK(rig.counters.disconnects == 1);
  rig.round_trip("after");
  CHECK(rig.counters.lost_on_disconnect == 0);
}

TEST_CASE("zmtp link: a frame over max_pool_message_bytes drops the link, which reconnects") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.config.max_pool_message_bytes = 1024;
  rig.make_link();
  rig.wait_connects(1);
  rig.router_send({std::string(1024, 'k')});  // at the limit: fine
  CHECK(rig.sink_receive(1) == std::vector<std::string>{std::string(1024, 'k')});

  rig.router_send({"fine", std::string(2000, 'x')});  // the ROUTER has no limit of its own
  REQUIRE_MESSAGE(rig.pump([&] { return rig.counters.disconnects >= 1; }), "the oversized frame did not drop the link");
  CHECK(rig.counters.disconnects == 1);
  CHECK(rig.counters.receive_errors == 1);
  // The message is not counted (its first body may have reached the sink; the worker's
  // dispatcher treats bodies one by one, so that is no half-message).
  CHECK(rig.counters.messages_received == 1);
  rig.wait_connects(2);
  // The ROUTER may still hold the old pipe for a moment: let the link speak first, so the new
  // connection is the one the routing id names, then check both directions.
  REQUIRE(rig.send({"back"}) == PoolLink::Send::sent);
  CHECK(rig.router_receive() == std::vector<std::string>{worker_id, "back"});
  rig.sink.bodies.clear();
  rig.router_send({"small again"});
  CHECK(rig.sink_receive(1) == std::vector<std::string>{"small again"});
  CHECK(rig.counters.receive_errors == 1);
}

TEST_CASE("zmtp link: SNDHWM: a ROUTER that never reads makes sends refused, and nothing blocks") {
  EACH_TRANSPORT(transport);
  RouterOptions options;
  options.rcvhwm = 1;  // the ROUTER's I/O thread stops reading almost at once
  Rig rig(transport, options);
  rig.config.send_hwm = 1;
  rig.make_link();
  rig.wait_connects(1);

  std::string body(64 * 1024, 'h');
  int sent = 0;
  bool refused = false;
  auto slowest = Clock::duration::zero();
  for (int attempt = 0; attempt < 10000 && !refused; ++attempt) {
    auto start = Clock::now();
    auto result = rig.send({body});
    slowest = std::max(slowest, Clock::now() - start);
    if (result == PoolLink::Send::refused) {
      refused = true;
    } else {
      REQUIRE(result == PoolLink::Send::sent);
      ++sent;
    }
    turn(*rig.link, rig.sink, 256, 0);  // let POLLOUT resume writes; never wait
  }
  CAPTURE(sent);
  REQUIRE_MESSAGE(refused, "10000 sends of 64 KiB never hit the high-water mark");
  CHECK(sent >= 1);
  CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(slowest).count() < 500);
  CHECK(rig.counters.disconnects == 0);

  // Closing with linger 0 gives up the unsent message at once and counts it.
  auto start = Clock::now();
  rig.link->close(0);
  CHECK(Clock::now() - start < 500ms);
  CHECK(rig.counters.lost_on_disconnect == 1);
  CHECK(rig.send({body}) == PoolLink::Send::refused);
  CHECK(rig.link->deadline() == SteadyTime::max());  // closed for good: no reconnect
}

TEST_CASE("zmtp link: close(linger) flushes what the kernel has not taken yet") {
  EACH_TRANSPORT(transport);
  Rig rig(transport);
  rig.make_link();
  rig.wait_connects(1);
  // Larger than any socket buffer, so most of it is still ours when close() starts.
  std::string big(8 << 20, 'F');
  REQUIRE(rig.send({big, "end"}) == PoolLink::Send::sent);
  // The ROUTER's I/O thread reads on its own while close() lingers on this thread.
  rig.link->close(4000);
  CHECK(rig.counters.lost_on_disconnect == 0);
  std::vector<std::string> frames;
  std::vector<bool> more;
  auto deadline = Clock::now() + wait_limit;
  while (!rig.router->try_receive(frames, more)) {
    REQUIRE(Clock::now() < deadline);
    ::poll(nullptr, 0, 1);
  }
  REQUIRE(frames.size() == 3);
  CHECK(frames[1] == big);
  CHECK(frames[2] == "end");
}

TEST_CASE("zmtp link: a ROUTER's heartbeats (PING) are answered, so it keeps the connection") {
  EACH_TRANSPORT(transport);
  RouterOptions options;
  options.heartbeat_ivl_ms = 10;
  options.heartbeat_timeout_ms = 150;  // no PONG within 150 ms after a PING: libzmq hangs up
  Rig rig(transport, options);
  rig.make_link();
  rig.wait_connects(1);
  // Quiet for over twice the timeout: only PINGs and our PONGs on the wire. (Without the PONGs
  // libzmq hangs up at ~160 ms and the link counts a disconnect.)
  auto until = Clock::now() + 350ms;
  REQUIRE(rig.pump([&] { return Clock::now() >= until; }));
  CHECK(rig.counters.disconnects == 0);
  CHECK(rig.counters.connects == 1);
  CHECK(rig.counters.receive_errors == 0);
  rig.round_trip("after-heartbeats");
  CHECK(rig.counters.connects == 1);
}

// =============================================================================================
// The link against a raw peer: exact bytes and handshakes libzmq would not send

TEST_CASE("zmtp link (raw peer): greeting + READY on the wire, PING answered with PONG and its context") {
  RawRig rig;
  rig.accept_handshake();
  CHECK(rig.counters.connects == 0);
  // The server's greeting arrives in pieces, as libzmq sends it (signature, version, rest).
  auto g = greeting();
  rig.peer.write(g.substr(0, 10));
  turn(*rig.link, rig.sink);
  rig.peer.write(g.substr(10, 1));
  turn(*rig.link, rig.sink);
  rig.peer.write(g.substr(11) + ready_frame("ROUTER"));
  REQUIRE(rig.pump([&] { return rig.counters.connects == 1; }));

  rig.peer.write(command_frame("PING", bytes({0x00, 0x64}) + "hb-7"));
  auto pong = command_frame("PONG", "hb-7");
  REQUIRE_MESSAGE(rig.pump([&] { return rig.peer.has(pong.size()); }), "no PONG");
  CHECK(rig.peer.take(pong.size()) == pong);
  rig.peer.write(command_frame("PING", bytes({0x00, 0x64})));  // no context: an empty one back
  auto empty_pong = command_frame("PONG", "");
  REQUIRE(rig.pump([&] { return rig.peer.has(empty_pong.size()); }));
  CHECK(rig.peer.take(empty_pong.size()) == empty_pong);

  // Other commands (PONG, an unknown one, a PING too short for its TTL) are ignored; data flows.
  rig.peer.write(command_frame("PONG", "x") + command_frame("X-NEW", "") + command_frame("PING", "") +
                 frame("a", true) + frame("b", false));
  REQUIRE(rig.pump([&] { return rig.sink.bodies.size() == 2; }));
  CHECK(rig.sink.bodies == std::vector<std::string>{"a", "b"});
  CHECK(rig.counters.messages_received == 1);
  CHECK(rig.counters.disconnects == 0);

  std::string error;
  std::string body = "up";
  REQUIRE(rig.link->send(&body, 1, error) == PoolLink::Send::sent);
  auto up = frame("up", false);
  REQUIRE(rig.pump([&] { return rig.peer.has(up.size()); }));
  CHECK(rig.peer.take(up.size()) == up);  // no PONG or anything else in between
}

TEST_CASE("zmtp link (raw peer): a gateway that accepts but never answers is dropped after the handshake timeout") {
  RawRig rig(100);
  auto started = Clock::now();
  rig.accept_handshake();  // the peer reads our greeting + READY and says nothing
  rig.expect_dropped_and_back();
  CHECK(Clock::now() - started >= std::chrono::milliseconds(90));  // not before the timeout
  CHECK(rig.counters.receive_errors == 1);
  CHECK(rig.counters.connects == 0);
  // Answered this time: the link is up and stays up past the timeout.
  rig.peer.write(greeting() + ready_frame("ROUTER"));
  REQUIRE(rig.pump([&] { return rig.counters.connects == 1; }));
  auto up = Clock::now();
  REQUIRE(rig.pump([&] { return Clock::now() - up > std::chrono::milliseconds(200); }));
  CHECK(rig.counters.disconnects == 0);
}

TEST_CASE("zmtp link (raw peer): refused handshakes drop the connection and the link tries again") {
  RawRig rig;
  rig.accept_handshake();

  SUBCASE("a security mechanism") {
    rig.peer.write(greeting(3, 1, "CURVE"));
    rig.expect_dropped_and_back();
    CHECK(rig.counters.receive_errors == 1);
  }
  SUBCASE("ZMTP 2") {
    rig.peer.write(greeting(2, 0).substr(0, 11));
    rig.expect_dropped_and_back();
    CHECK(rig.counters.receive_errors == 1);
  }
  SUBCASE("not a ROUTER") {
    rig.peer.write(greeting() + ready_frame("PUB"));
    rig.expect_dropped_and_back();
    CHECK(rig.counters.receive_errors == 1);
  }
  SUBCASE("READY without Socket-Type") {
    rig.peer.write(greeting() + command_frame("READY", property("Identity", "")));
    rig.expect_dropped_and_back();
    CHECK(rig.counters.receive_errors == 1);
  }
  SUBCASE("ERROR instead of READY") {
    rig.peer.write(greeting() + command_frame("ERROR", bytes({6}) + "denied"));
    rig.expect_dropped_and_back();
    CHECK(rig.counters.receive_errors == 1);
  }
  SUBCASE("a message before READY") {
    rig.peer.write(greeting() + frame("early", false));
    rig.expect_dropped_and_back();
    CHECK(rig.counters.receive_errors == 1);
    CHECK(rig.sink.bodies.empty());
  }
  SUBCASE("a malformed command") {
    rig.peer.write(greeting() + ready_frame("ROUTER"));
    REQUIRE(rig.pump([&] { return rig.counters.connects == 1; }));
    rig.peer.write(bytes({0x04, 0x00}));  // a command frame with no name
    rig.expect_dropped_and_back();
    CHECK(rig.counters.disconnects == 1);
    CHECK(rig.counters.receive_errors == 1);
  }
  SUBCASE("the peer hangs up mid-handshake") {
    rig.peer.write(greeting().substr(0, 20));
    rig.peer.hang_up();
    REQUIRE(rig.pump([&] { return rig.peer.try_accept(); }));
    REQUIRE(rig.pump([&] { return rig.peer.has(rig.handshake.size()); }));
    CHECK(rig.peer.take(rig.handshake.size()) == rig.handshake);
    CHECK(rig.counters.receive_errors == 0);
  }
  // Refused before READY: never counted as a connection (nor, then, as a disconnect).
  CHECK(rig.counters.connects <= 1);
  CHECK(rig.counters.messages_received == 0);

  // The next attempt is a fresh handshake: a good one works.
  auto connects = rig.counters.connects;
  rig.peer.write(greeting() + ready_frame("ROUTER"));
  REQUIRE(rig.pump([&] { return rig.counters.connects == connects + 1; }));
  rig.peer.write(frame("ok", false));
  REQUIRE(rig.pump([&] { return rig.sink.bodies.size() == 1; }));
  CHECK(rig.sink.bodies[0] == "ok");
}

// =============================================================================================
// Endpoints and the choice of link

TEST_CASE("zmtp link: endpoints it cannot connect to are refused with a clear error") {
  BackendConfig config;
  ShellCounters counters;
  auto refused = [&](const std::string& endpoint) {
    CAPTURE(endpoint);
    std::string error;
    std::unique_ptr<PoolLink> link;
    CHECK_NOTHROW(link = make_zmtp_link(config, endpoint, worker_id, counters, error));
    CHECK(link == nullptr);
    CHECK_FALSE(error.empty());
    CHECK_MESSAGE(error.find(endpoint) != std::string::npos, error);
    return error;
  };
  CHECK(refused("tcp://host").find("tcp://HOST:PORT") != std::string::npos);
  CHECK(refused("tcp://host:").find("tcp://HOST:PORT") != std::string::npos);
  CHECK(refused("tcp://:5555").find("tcp://HOST:PORT") != std::string::npos);
  CHECK(refused("tcp://*:5555").find("'*'") != std::string::npos);
  CHECK(refused("tcp://h:0").find("1..65535") != std::string::npos);
  CHECK(refused("tcp://h:65536").find("1..65535") != std::string::npos);
  CHECK(refused("tcp://h:-1").find("1..65535") != std::string::npos);
  CHECK(refused("tcp://h:55x").find("1..65535") != std::string::npos);
  CHECK(refused("tcp://h:99999999999999999999").find("1..65535") != std::string::npos);  // not std::out_of_range
  CHECK(refused("tcp://eth0;h:5555").find("libzmq") != std::string::npos);
  CHECK(refused("ipc://").find("1..107") != std::string::npos);
  CHECK(refused("ipc:///" + std::string(107, 'p')).find("1..107") != std::string::npos);  // 108 characters

  // The longest path that fits, and an abstract one, are accepted (nothing listens: it retries).
  for (const std::string& endpoint : {"ipc:///" + std::string(106, 'p'), std::string("ipc://@sb-zmtp-test-nobody"),
                                      std::string("tcp://127.0.0.1:1"), std::string("tcp://[::1]:1")}) {
    CAPTURE(endpoint);
    std::string error;
    auto link = make_zmtp_link(config, endpoint, worker_id, counters, error);
    CHECK_MESSAGE(link != nullptr, error);
    if (link) {
      std::string body = "x";
      CHECK(link->send(&body, 1, error) == PoolLink::Send::refused);
    }
  }
  CHECK(counters.connects == 0);
}

TEST_CASE("zmtp link: an ipc:// gateway in Linux's abstract namespace") {
  BackendConfig config;
  config.reconnect_ms = 10;
  config.reconnect_max_ms = 20;
  ShellCounters counters;
  Sink sink;
  std::string name = "sb-zmtp-test-" + std::to_string(::getpid());
  Router router("ipc://@" + name);
  std::string error;
  auto link = make_zmtp_link(config, "ipc://@" + name, worker_id, counters, error);
  REQUIRE_MESSAGE(link, error);
  REQUIRE(pump(*link, sink, [&] { return counters.connects == 1; }));
  std::string body = "abstract";
  REQUIRE(link->send(&body, 1, error) == PoolLink::Send::sent);
  std::vector<std::string> frames;
  std::vector<bool> more;
  REQUIRE(pump(*link, sink, [&] { return router.try_receive(frames, more); }));
  CHECK(frames == std::vector<std::string>{worker_id, "abstract"});
}

TEST_CASE("make_pool_link: zmtp for tcp:// and ipc://, libzmq for inproc:// or when asked") {
  BackendConfig config;
  config.reconnect_ms = 10;
  config.reconnect_max_ms = 20;
  config.linger_ms = 0;
  void* shared = zmq_ctx_new();
  REQUIRE(shared);
  ContextGuard shared_guard{shared};  // terminated last, after every socket in it, even on failure

  // Round trip over a link: returns false if anything did not arrive in time.
  auto exercise = [&](PoolLink& link, Router& router, ShellCounters& counters) {
    Sink sink;
    std::string error;
    std::string hello = "hello";
    // libzmq with ZMQ_IMMEDIATE refuses until its connection is up, like ours: retry.
    REQUIRE(pump(link, sink, [&] { return link.send(&hello, 1, error) == PoolLink::Send::sent; }));
    std::vector<std::string> frames;
    std::vector<bool> more;
    REQUIRE(pump(link, sink, [&] { return router.try_receive(frames, more); }));
    CHECK(frames == std::vector<std::string>{worker_id, "hello"});
    REQUIRE(pump(link, sink, [&] { return router.try_send(worker_id, {"a", "b"}); }));
    REQUIRE(pump(link, sink, [&] { return sink.bodies.size() >= 2; }));
    CHECK(sink.bodies == std::vector<std::string>{"a", "b"});
    CHECK(counters.messages_received == 1);
  };

  SUBCASE("inproc:// is libzmq even when zmtp is asked for, in the caller's context") {
    config.pool_client = "zmtp";
    Router router("inproc://sb-zmtp-test-pool", {}, shared);
    ShellCounters counters;
    void* context = shared;
    std::string error;
    auto link = make_pool_link(config, "inproc://sb-zmtp-test-pool", worker_id, counters, context, error);
    REQUIRE_MESSAGE(link, error);
    CHECK(context == shared);  // used, not replaced
    exercise(*link, router, counters);
    CHECK(counters.connects == 0);  // only the zmtp link counts handshakes
    link.reset();
  }
  SUBCASE("pool_client libzmq on ipc://: a libzmq DEALER, context made on first use") {
    config.pool_client = "libzmq";
    TempDir dir;
    Router router("ipc://" + dir.path + "/gw.sock");
    ShellCounters counters;
    void* context = nullptr;
    ContextGuard guard{context};  // the caller terminates what make_pool_link made
    std::string error;
    auto link = make_pool_link(config, router.endpoint(), worker_id, counters, context, error);
    REQUIRE_MESSAGE(link, error);
    REQUIRE(context != nullptr);
    exercise(*link, router, counters);
    CHECK(counters.connects == 0);
  }
  SUBCASE("pool_client zmtp on tcp://: our own link, no context needed") {
    config.pool_client = "zmtp";
    Router router("tcp://127.0.0.1:*");
    ShellCounters counters;
    void* context = nullptr;
    std::string error;
    auto link = make_pool_link(config, router.endpoint(), worker_id, counters, context, error);
    REQUIRE_MESSAGE(link, error);
    CHECK(context == nullptr);
    exercise(*link, router, counters);
    CHECK(counters.connects == 1);
  }
  SUBCASE("a bad endpoint for libzmq fails with zmq's reason") {
    config.pool_client = "libzmq";
    ShellCounters counters;
    void* context = shared;
    std::string error;
    auto link = make_pool_link(config, "nonsense://x", worker_id, counters, context, error);
    CHECK(link == nullptr);
    CHECK(error.find("nonsense://x") != std::string::npos);
  }
}
