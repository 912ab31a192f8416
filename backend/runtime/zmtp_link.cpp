// The pool link speaking ZMTP 3.1 on the worker's loop thread: connect, handshake, frames in
// and out with plain non-blocking reads and writes. It keeps libzmq's contract as the worker
// configured it: DEALER with our routing id, ZMQ_IMMEDIATE (sends refused unless the handshake
// is done), SNDHWM (messages waiting in our buffer), MAXMSGSIZE (a larger frame drops the
// connection), reconnect backoff with libzmq's jitter, linger on close.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>

#include "backend/runtime/pool_link.hpp"
#include "common/zmtp_codec.hpp"
#include "common/zmtp_socket.hpp"
#include "common/log.hpp"

namespace sb::backend {
namespace {

using std::chrono::milliseconds;

constexpr std::size_t read_chunk = 64 * 1024;

// tcp:// and ipc:// as a worker may use them; tcp:// hosts are resolved at each attempt (a
// container's name may not resolve until it is up).
bool parse_target(const std::string& endpoint, zmtp::StreamEndpoint& out, std::string& error) {
  std::string why;
  if (!zmtp::parse_stream_endpoint(endpoint, out, why)) {
    error = "bad " + endpoint.substr(0, 6) + " endpoint '" + endpoint + "': " + why;
    return false;
  }
  if (out.unix_socket) return true;
  if (endpoint.find(';') != std::string::npos) {
    error = "tcp:// endpoint '" + endpoint + "' names a source address; use --pool-client libzmq for that";
    return false;
  }
  if (out.host == "*") {
    error = "bad tcp:// endpoint '" + endpoint + "': a worker connects, '*' is for binding";
    return false;
  }
  // At most 5 digits before converting: std::stol throws std::out_of_range on a longer number
  // ("tcp://h:99999999999999999999" passes the option parser and would escape Worker::open).
  if (out.port.size() > 5 ||
      !std::all_of(out.port.begin(), out.port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stol(out.port) < 1 || std::stol(out.port) > 65535) {
    error = "bad tcp:// endpoint '" + endpoint + "': port must be 1..65535";
    return false;
  }
  return true;
}

class ZmtpLink final : public PoolLink {
 public:
  ZmtpLink(const BackendConfig& config, std::string endpoint, zmtp::StreamEndpoint target, const std::string& worker_id,
           ShellCounters& counters)
      : endpoint_(std::move(endpoint)),
        target_(std::move(target)),
        handshake_(zmtp::handshake("DEALER", worker_id)),
        counters_(counters),
        decoder_(static_cast<std::uint64_t>(config.max_pool_message_bytes)),
        send_hwm_(static_cast<std::size_t>(config.send_hwm)),
        reconnect_ivl_(config.reconnect_ms),
        reconnect_max_(config.reconnect_max_ms),
        current_ivl_(config.reconnect_ms),
        handshake_timeout_(config.handshake_timeout_ms),
        jitter_(std::random_device{}()) {}

  ~ZmtpLink() override {
    if (fd_ >= 0) ::close(fd_);
  }

  void start(SteadyTime now) { connect(now); }

  bool prepare_wait(pollfd& entry) override {
    entry = {fd_, 0, 0};
    if (fd_ < 0) return false;
    entry.events = state_ == State::connecting ? POLLOUT : static_cast<short>(POLLIN | (out_.unwritten() ? POLLOUT : 0));
    return pending_;
  }

  void service(short revents, std::int64_t max_messages, BodySink& sink, SteadyTime now) override {
    if (fd_ < 0) {
      if (now >= reconnect_at_) connect(now);
      return;
    }
    if (state_ != State::ready && now >= handshake_deadline_) {
      drop(now, "no ZMTP handshake within " + std::to_string(handshake_timeout_.count()) + " ms", true);
      return;
    }
    if (state_ == State::connecting) {
      if (revents & (POLLOUT | POLLERR | POLLHUP)) finish_connect(now);
      return;
    }
    if (revents & (POLLERR | POLLHUP) && !(revents & POLLIN)) {
      drop(now, "connection reset", false);
      return;
    }
    if ((revents & POLLOUT) && !write_out(now)) return;
    if (pending_ || (revents & POLLIN)) read_in(max_messages, sink, now);
  }

  SteadyTime deadline() const override {
    if (fd_ < 0) return reconnect_at_;
    return state_ == State::ready ? SteadyTime::max() : handshake_deadline_;
  }

  Send send(const std::string* bodies, std::size_t count, std::string&) override {
    if (state_ != State::ready || out_.messages() >= send_hwm_) return Send::refused;
    out_.append_message(bodies, count);
    // Straight to the kernel: this is the hop libzmq would give to its I/O thread.
    if (!write_blocked_) write_out(std::chrono::steady_clock::now());
    return Send::sent;
  }

  void close(std::int64_t linger_ms) override {
    if (fd_ < 0) return;
    auto deadline = std::chrono::steady_clock::now() + milliseconds(linger_ms);
    while (state_ == State::ready && out_.unwritten()) {
      auto left = std::chrono::ceil<milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) break;
      pollfd entry{fd_, POLLOUT, 0};
      if (::poll(&entry, 1, static_cast<int>(left)) <= 0 || !write_out(std::chrono::steady_clock::now())) break;
    }
    if (fd_ >= 0 && out_.unwritten()) {
      counters_.lost_on_disconnect += out_.messages();
      log::warn("closing the link to ", endpoint_, " with ", out_.messages(), " messages unsent (linger ",
                linger_ms, " ms)");
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    state_ = State::idle;
    reconnect_at_ = SteadyTime::max();
  }

 private:
  enum class State { idle, connecting, handshaking, ready };

  void connect(SteadyTime now) {
    sockaddr_storage address{};
    socklen_t address_size = 0;
    int family = AF_UNIX;
    if (target_.unix_socket) {
      address_size = zmtp::unix_address(target_.path, *reinterpret_cast<sockaddr_un*>(&address));
    } else {
      addrinfo hints{};
      hints.ai_family = zmtp::address_family(target_.host);
      hints.ai_socktype = SOCK_STREAM;
      addrinfo* found = nullptr;
      int rc = ::getaddrinfo(target_.host.c_str(), target_.port.c_str(), &hints, &found);
      if (rc != 0 || !found) {
        log::warn("cannot resolve gateway ", endpoint_, ": ", gai_strerror(rc), "; retrying");
        schedule_reconnect(now);
        return;
      }
      std::memcpy(&address, found->ai_addr, found->ai_addrlen);
      address_size = found->ai_addrlen;
      family = found->ai_family;
      ::freeaddrinfo(found);
    }
    fd_ = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    handshake_deadline_ = now + handshake_timeout_;
    if (fd_ < 0) {
      log::error("socket() for gateway ", endpoint_, ": ", std::strerror(errno), "; retrying");
      schedule_reconnect(now);
      return;
    }
    if (!target_.unix_socket) {
      int one = 1;  // small messages must not wait for Nagle (libzmq sets it too)
      ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), address_size) == 0) {
      begin_handshake();
      return;
    }
    if (errno == EINPROGRESS) {
      state_ = State::connecting;
      return;
    }
    // EAGAIN here is a Unix socket's full backlog: another attempt later, like a refusal.
    fail_attempt(now, std::strerror(errno));
  }

  void finish_connect(SteadyTime now) {
    int err = 0;
    socklen_t size = sizeof err;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &size) != 0) err = errno;
    if (err != 0) {
      fail_attempt(now, std::strerror(err));
      return;
    }
    begin_handshake();
  }

  // A connection attempt that did not connect: normal while a gateway is down or restarting.
  void fail_attempt(SteadyTime now, const char* why) {
    log::debug("gateway ", endpoint_, " not reachable (", why, ")");
    ::close(fd_);
    fd_ = -1;
    state_ = State::idle;
    schedule_reconnect(now);
  }

  void begin_handshake() {
    state_ = State::handshaking;
    out_.clear();
    out_.append_raw(handshake_);
    write_blocked_ = false;
    write_out(std::chrono::steady_clock::now());
  }

  // libzmq's schedule: the interval plus up to one interval of jitter, the interval doubling to
  // the maximum while attempts fail, back to the start after a handshake.
  void schedule_reconnect(SteadyTime now) {
    auto jitter = std::uniform_int_distribution<std::int64_t>(0, std::max<std::int64_t>(0, reconnect_ivl_ - 1))(jitter_);
    reconnect_at_ = now + milliseconds(current_ivl_ + jitter);
    if (reconnect_max_ > reconnect_ivl_) current_ivl_ = std::min(current_ivl_ * 2, reconnect_max_);
  }

  // Drops the connection and plans the next attempt; what was queued is lost and counted.
  void drop(SteadyTime now, const std::string& why, bool protocol_error) {
    if (state_ == State::ready) {
      ++counters_.disconnects;
      counters_.lost_on_disconnect += out_.messages();
    }
    if (protocol_error) {
      ++counters_.receive_errors;
      log::warn("dropping the link to gateway ", endpoint_, ": ", why);
    }
    else
      log::info("link to gateway ", endpoint_, " lost: ", why, "; reconnecting");
    ::close(fd_);
    fd_ = -1;
    state_ = State::idle;
    out_.clear();
    write_blocked_ = false;
    pending_ = false;
    decoder_.reset();
    schedule_reconnect(now);
  }

  // Writes what is queued; false if the connection was dropped.
  bool write_out(SteadyTime now) {
    auto result = out_.write_to(fd_);
    if (result == zmtp::SendBuffer::Write::failed) {
      drop(now, errno ? std::strerror(errno) : "write returned 0", false);
      return false;
    }
    write_blocked_ = result == zmtp::SendBuffer::Write::blocked;  // POLLOUT resumes
    return true;
  }

  // Reads and parses until EAGAIN or `max_messages` messages; leaves pending_ set if more may
  // be buffered or waiting.
  void read_in(std::int64_t max_messages, BodySink& sink, SteadyTime now) {
    std::int64_t messages = 0;
    pending_ = false;
    while (true) {
      zmtp::Frame frame;
      auto status = decoder_.next(frame);
      if (status == zmtp::Decoder::Status::error) {
        drop(now, decoder_.error(), true);
        return;
      }
      if (status == zmtp::Decoder::Status::greeting) continue;
      if (status == zmtp::Decoder::Status::frame) {
        if (frame.command) {
          if (!on_command(frame.body, now)) return;
          continue;
        }
        if (state_ != State::ready) {
          drop(now, "a message before the handshake finished", true);
          return;
        }
        sink.body(frame.body);
        if (frame.more) continue;
        ++counters_.messages_received;
        if (++messages >= max_messages) {
          pending_ = true;  // the rest next turn, after the outboxes flush
          return;
        }
        continue;
      }
      // Incomplete: read more.
      ssize_t n = ::recv(fd_, decoder_.prepare(read_chunk), read_chunk, MSG_DONTWAIT);
      if (n > 0) {
        decoder_.commit(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      drop(now, n == 0 ? "the gateway closed it" : std::strerror(errno), false);
      return;
    }
  }

  // False if the link was dropped.
  bool on_command(std::string_view body, SteadyTime now) {
    zmtp::Command command;
    if (!zmtp::parse_command(body, command)) {
      drop(now, "malformed command frame", true);
      return false;
    }
    if (state_ == State::handshaking) {
      if (command.name == "ERROR") {
        std::string reason(command.data.empty() ? std::string_view() : command.data.substr(1));
        drop(now, "the gateway refused the handshake: " + reason, true);
        return false;
      }
      std::string_view type;
      if (command.name != "READY" || !zmtp::find_property(command.data, "Socket-Type", type)) {
        drop(now, "expected READY with a Socket-Type, got " + std::string(command.name), true);
        return false;
      }
      if (type != "ROUTER" && type != "DEALER") {
        drop(now, "the peer is a " + std::string(type) + " socket, a DEALER needs a ROUTER", true);
        return false;
      }
      state_ = State::ready;
      current_ivl_ = reconnect_ivl_;
      ++counters_.connects;
      log::info("linked to gateway ", endpoint_, " (ZMTP, own loop)");
      return true;
    }
    if (command.name == "PING" && command.data.size() >= 2) {
      // ZMTP 3.1 heartbeat: answer with the context the peer sent after its TTL.
      out_.append_command("PONG", command.data.substr(2));
      if (!write_blocked_) return write_out(now);
    }
    return true;  // other commands (PONG, ...) carry nothing for a DEALER
  }

  std::string endpoint_;
  zmtp::StreamEndpoint target_;
  const std::string handshake_;
  ShellCounters& counters_;
  zmtp::Decoder decoder_;
  std::size_t send_hwm_;
  std::int64_t reconnect_ivl_;
  std::int64_t reconnect_max_;
  std::int64_t current_ivl_;
  milliseconds handshake_timeout_;
  std::mt19937 jitter_;

  int fd_ = -1;
  State state_ = State::idle;
  SteadyTime reconnect_at_ = SteadyTime::max();
  SteadyTime handshake_deadline_ = SteadyTime::max();  // while connecting or handshaking
  zmtp::SendBuffer out_;
  bool write_blocked_ = false;            // the kernel said EAGAIN; POLLOUT resumes
  bool pending_ = false;                  // parsed input left after the batch limit
};

}  // namespace

std::unique_ptr<PoolLink> make_zmtp_link(const BackendConfig& config, const std::string& endpoint,
                                         const std::string& worker_id, ShellCounters& counters, std::string& error) {
  zmtp::StreamEndpoint target;
  if (!parse_target(endpoint, target, error)) return nullptr;
  auto link = std::make_unique<ZmtpLink>(config, endpoint, std::move(target), worker_id, counters);
  link->start(std::chrono::steady_clock::now());
  return link;
}

}  // namespace sb::backend
