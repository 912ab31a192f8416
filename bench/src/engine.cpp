#include "bench/src/engine.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

namespace sb::bench {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {
constexpr std::size_t read_chunk = 256 * 1024;
constexpr int reads_per_event = 4;  // bounded per socket per turn, so one busy socket cannot starve the rest
constexpr unsigned max_events = 512;          // per epoll_wait, and so per read batch
constexpr std::size_t read_slot = 16 * 1024;  // a batched read; a full one is followed by recv()s
}  // namespace

Engine::Engine(int sources, bool batched_io, bool kernel_rx_time)
    : sources_(sources < 1 ? 1 : sources > 250 ? 250 : sources), kernel_rx_time_(kernel_rx_time) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) throw std::runtime_error("epoll: " + std::string(strerror(errno)));
  // Open-loop senders wake on epoll_pwait2's timeout: without this, Linux may let a timed
  // sleep run up to 50 us late, and that lateness would count as the target's latency.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  read_buffer_.resize(read_chunk);
  std::string why;
  if (batched_io && read_batch_.start(max_events, why)) {
    read_slots_.resize(max_events * read_slot);
    read_headers_.resize(max_events);
    to_read_.reserve(max_events);
    write_batch_.start(max_events, why);  // if refused: one send() each, as before
  }
}

Engine::~Engine() {
  drop_all();
  close(epoll_fd_);
}

std::uint32_t Engine::next_mask() {
  // xorshift64: masks only need to be unpredictable to proxies, not cryptographic.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return static_cast<std::uint32_t>(rng_ >> 16);
}

Conn& Engine::connect(const WsUrl& url, int rcvbuf) {
  auto owned = std::make_unique<Conn>();
  Conn& c = *owned;
  c.id = next_id_++;
  conns_.push_back(std::move(owned));
  c.t_connect = now_ns();
  ++pending_;

  sockaddr_in dest{};
  dest.sin_family = AF_INET;
  dest.sin_port = htons(url.port);
  std::string host = url.host == "localhost" ? "127.0.0.1" : url.host;
  if (inet_pton(AF_INET, host.c_str(), &dest.sin_addr) != 1) {
    fail(c, "host must be an IPv4 address: " + url.host, false);
    return c;
  }
  c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    fail(c, std::string("socket: ") + strerror(errno), false);
    return c;
  }
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (rcvbuf > 0) setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (kernel_rx_time_) {
    int flags = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;
    if (setsockopt(c.fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) != 0) ++stats_.rx_timestamp_failures;
  }
  bool loopback = (ntohl(dest.sin_addr.s_addr) >> 24) == 127;
  if (sources_ > 1 && loopback) {
    // Distinct source addresses multiply the ephemeral ports available toward one server port.
    setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl((127u << 24) | (1u + c.id % static_cast<unsigned>(sources_)));
    if (bind(c.fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      fail(c, std::string("bind: ") + strerror(errno), false);
      return c;
    }
  }
  if (::connect(c.fd, reinterpret_cast<sockaddr*>(&dest), sizeof dest) != 0 && errno != EINPROGRESS) {
    fail(c, std::string("connect: ") + strerror(errno), false);
    return c;
  }
  char key_bytes[16];
  for (int i = 0; i < 4; ++i) {
    std::uint32_t m = next_mask();
    std::memcpy(key_bytes + 4 * i, &m, 4);
  }
  std::string key = base64_encode(std::string_view(key_bytes, 16));
  c.expected_accept = websocket_accept(key);
  c.tx = handshake_request(url.host + ":" + std::to_string(url.port), url.target, key);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.ptr = &c;
  c.want_out = true;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, c.fd, &ev) != 0) {
    fail(c, std::string("epoll_ctl: ") + strerror(errno), false);
    return c;
  }
  return c;
}

void Engine::mark_dirty(Conn& c) {
  if (!c.dirty) {
    c.dirty = true;
    dirty_.push_back(&c);
  }
}

void Engine::send_text(Conn& c, std::string_view payload) {
  if (c.state != ConnState::open) return;
  append_client_frame(c.tx, Opcode::text, payload, next_mask());
  ++stats_.messages_out;
  mark_dirty(c);
}

void Engine::send_close(Conn& c, std::uint16_t code) {
  if (c.state != ConnState::open && c.state != ConnState::closing) return;
  if (c.close_sent) return;
  char body[2] = {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
  append_client_frame(c.tx, Opcode::close, std::string_view(body, 2), next_mask());
  c.close_sent = true;
  c.state = ConnState::closing;
  mark_dirty(c);
}

void Engine::update_interest(Conn& c) {
  if (c.fd < 0) return;
  epoll_event ev{};
  ev.events = (c.reading ? EPOLLIN : 0u) | (c.want_out ? EPOLLOUT : 0u);
  ev.data.ptr = &c;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void Engine::pause_reading(Conn& c) {
  if (!c.reading) return;
  c.reading = false;
  update_interest(c);
}

void Engine::resume_reading(Conn& c) {
  if (c.reading) return;
  c.reading = true;
  update_interest(c);
}

void Engine::finish(Conn& c) {
  if (c.fd >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.fd = -1;
  }
  if (c.state == ConnState::connecting || c.state == ConnState::handshaking) --pending_;
  else if (c.state == ConnState::open || c.state == ConnState::closing) --open_;
  c.state = ConnState::closed;
  c.tx.clear();
  c.tx.shrink_to_fit();
  c.rx.clear();
  c.rx.shrink_to_fit();
  c.tx_off = 0;
}

void Engine::fail(Conn& c, std::string why, bool handshake) {
  if (c.state == ConnState::closed) return;
  bool before_open = c.state == ConnState::connecting || c.state == ConnState::handshaking;
  if (before_open) {
    if (handshake) ++stats_.handshake_failures;
    else ++stats_.connect_failures;
  }
  c.error = std::move(why);
  finish(c);
  if (on_closed) on_closed(c);
}

void Engine::drop(Conn& c) {
  if (c.state == ConnState::closed) return;
  finish(c);
}

void Engine::drop_all() {
  for (auto& c : conns_) drop(*c);
  conns_.clear();
  dirty_.clear();
  next_id_ = 0;
  open_ = pending_ = 0;
}

void Engine::set_wakeup(std::int64_t at_ns) { wakeup_ns_ = at_ns; }

void Engine::flush(Conn& c) {
  c.dirty = false;
  if (c.fd < 0 || c.state == ConnState::connecting) return;  // a closed one has fd -1
  while (c.tx_off < c.tx.size()) {
    ssize_t n = ::send(c.fd, c.tx.data() + c.tx_off, c.tx.size() - c.tx_off, MSG_NOSIGNAL);
    if (n > 0) {
      ++stats_.writes;
      stats_.bytes_out += static_cast<std::uint64_t>(n);
      c.tx_off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    fail(c, std::string("send: ") + strerror(errno), c.state == ConnState::handshaking);
    return;
  }
  if (c.tx_off == c.tx.size()) {
    c.tx.clear();
    c.tx_off = 0;
    if (c.want_out) {
      c.want_out = false;
      update_interest(c);
    }
  } else {
    if (c.tx_off > (1u << 16) && c.tx_off * 2 > c.tx.size()) {
      c.tx.erase(0, c.tx_off);
      c.tx_off = 0;
    }
    if (!c.want_out) {
      c.want_out = true;
      update_interest(c);
    }
  }
}

void Engine::on_writable(Conn& c) {
  if (c.state == ConnState::connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      fail(c, std::string("connect: ") + strerror(err), false);
      return;
    }
    c.state = ConnState::handshaking;
  }
  flush(c);
}

// Parses what we can from data; returns false if the connection was closed meanwhile.
bool Engine::process_input(Conn& c, char* data, std::size_t size, std::size_t& consumed, std::int64_t arrival) {
  consumed = 0;
  if (c.state == ConnState::handshaking) {
    auto reply = check_handshake_reply(std::string_view(data, size), c.expected_accept);
    if (reply.status == HandshakeReply::Status::incomplete) return true;
    if (reply.status == HandshakeReply::Status::bad) {
      fail(c, reply.error, true);
      return false;
    }
    consumed = reply.header_bytes;
    c.state = ConnState::open;
    --pending_;
    ++open_;
    c.t_open = now_ns();
    if (on_open) on_open(c);
    if (c.state == ConnState::closed) return false;
  }
  // Every frame of one read gets the time of its last segment (the kernel stamps the newest):
  // frames that came earlier in the same read are, if anything, counted late.
  const std::int64_t now = arrival ? arrival : read_time_;
  while (consumed < size) {
    Frame f{};
    std::size_t used = 0;
    std::string why;
    auto st = parse_frame(data + consumed, size - consumed, max_message_bytes, f, used, &why);
    if (st == ParseStatus::need_more) break;
    if (st == ParseStatus::error) {
      ++stats_.protocol_errors;
      fail(c, "protocol error: " + why, false);
      return false;
    }
    consumed += used;
    switch (f.opcode) {
      case Opcode::text:
      case Opcode::binary:
      case Opcode::continuation: {
        std::string_view payload = f.payload;
        bool text = f.opcode == Opcode::text;
        if (f.opcode == Opcode::continuation) {
          c.msg.append(f.payload);
          if (!f.fin) break;
          payload = c.msg;
          text = c.msg_text;
        } else if (!f.fin) {
          c.msg.assign(f.payload);
          c.msg_text = text;
          break;
        }
        if (c.msg.size() > max_message_bytes) {
          fail(c, "message longer than the limit", false);
          return false;
        }
        if (c.t_first_message == 0) c.t_first_message = now;
        ++stats_.messages_in;
        if (on_message) on_message(c, payload, text, now);
        if (f.opcode == Opcode::continuation) c.msg.clear();
        if (c.state == ConnState::closed) return false;
        break;
      }
      case Opcode::ping:
        if (c.state == ConnState::open) {
          append_client_frame(c.tx, Opcode::pong, f.payload, next_mask());
          mark_dirty(c);
        }
        break;
      case Opcode::pong: break;
      case Opcode::close:
        c.close_code = f.payload.size() >= 2
                           ? static_cast<std::uint16_t>(static_cast<std::uint8_t>(f.payload[0]) << 8 |
                                                        static_cast<std::uint8_t>(f.payload[1]))
                           : 1005;
        ++stats_.closed_by_server;
        if (!c.close_sent) send_close(c, c.close_code == 1005 ? 1000 : c.close_code);
        c.state = ConnState::closing;
        break;
    }
  }
  return true;
}

void Engine::prepare_read(msghdr& message, iovec& buffer, char (&control)[control_bytes]) const {
  message.msg_iov = &buffer;
  message.msg_iovlen = 1;
  if (kernel_rx_time_) {
    std::memset(control, 0, control_bytes);  // arrival_time() stops at the first zeroed header
    message.msg_control = control;
    message.msg_controllen = control_bytes;
  }
}

std::int64_t Engine::arrival_time(const msghdr& message) const {
  if (!kernel_rx_time_) return 0;
  for (const cmsghdr* cmsg = CMSG_FIRSTHDR(&message); cmsg; cmsg = CMSG_NXTHDR(const_cast<msghdr*>(&message), const_cast<cmsghdr*>(cmsg))) {
    if (cmsg->cmsg_len < sizeof(cmsghdr)) break;  // the zeroed rest of the buffer
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_TIMESTAMPING) continue;
    scm_timestamping stamps;
    std::memcpy(&stamps, CMSG_DATA(cmsg), sizeof stamps);
    const timespec& software = stamps.ts[0];
    if (software.tv_sec == 0 && software.tv_nsec == 0) return 0;
    return static_cast<std::int64_t>(software.tv_sec) * 1'000'000'000 + software.tv_nsec + realtime_to_steady_;
  }
  return 0;
}

void Engine::on_readable(Conn& c) {
  for (int round = 0; round < reads_per_event && c.fd >= 0 && c.reading; ++round) {
    iovec buffer{read_buffer_.data(), read_buffer_.size()};
    msghdr message{};
    prepare_read(message, buffer, control_);
    ssize_t n = ::recvmsg(c.fd, &message, 0);
    if (n < 0 && errno == EINTR) continue;
    if (!take_input(c, read_buffer_.data(), n < 0 ? -errno : n, n > 0 ? arrival_time(message) : 0)) return;
    if (static_cast<std::size_t>(n) < read_buffer_.size()) return;  // drained
  }
}

bool Engine::take_input(Conn& c, char* data, ssize_t n, std::int64_t arrival) {
  if (n < 0) {
    if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR) return false;
    fail(c, std::string("recv: ") + strerror(static_cast<int>(-n)), c.state == ConnState::handshaking);
    return false;
  }
  if (n == 0) {
    if (c.close_code == 0) c.close_code = 1006;
    bool was_open = c.state == ConnState::open || c.state == ConnState::closing;
    if (!was_open) {
      fail(c, "connection closed before the handshake finished", c.state == ConnState::handshaking);
      return false;
    }
    finish(c);
    if (on_closed) on_closed(c);
    return false;
  }
  stats_.bytes_in += static_cast<std::uint64_t>(n);
  read_time_ = now_ns();
  std::size_t consumed = 0;
  if (c.rx.empty()) {
    // Fast path: parse in the read buffer, keep only a partial tail.
    if (!process_input(c, data, static_cast<std::size_t>(n), consumed, arrival)) return false;
    if (consumed < static_cast<std::size_t>(n)) c.rx.assign(data + consumed, n - consumed);
  } else {
    c.rx.append(data, static_cast<std::size_t>(n));
    if (!process_input(c, c.rx.data(), c.rx.size(), consumed, arrival)) return false;
    c.rx.erase(0, consumed);
  }
  if (c.rx.capacity() > (1u << 20) && c.rx.size() < (1u << 16)) c.rx.shrink_to_fit();
  return c.fd >= 0 && c.reading;
}

// One io_uring submission reads every socket epoll reported readable this turn (a recv() costs
// ~2 us here in entering and leaving the kernel alone). All reads complete before any input is
// parsed, so a callback that drops or opens sockets cannot race a read in flight.
void Engine::read_batched() {
  for (std::size_t i = 0; i < to_read_.size(); ++i) {
    ReadSlotHeader& h = read_headers_[i];
    h.buffer = {read_slots_.data() + i * read_slot, read_slot};
    h.message = msghdr{};
    prepare_read(h.message, h.buffer, h.control);
    read_batch_.add_recvmsg(to_read_[i]->fd, &h.message, i);
  }
  read_batch_.flush([&](std::uint64_t i, int result) {
    Conn& c = *to_read_[i];
    // Bytes already taken from the kernel are parsed even if a callback paused c meanwhile.
    if (c.fd < 0 || c.state == ConnState::closed) return;
    if (result == -ECANCELED) {
      on_readable(c);  // never submitted
      return;
    }
    std::int64_t arrival = result > 0 ? arrival_time(read_headers_[i].message) : 0;
    if (take_input(c, read_slots_.data() + i * read_slot, result, arrival) && static_cast<std::size_t>(result) == read_slot)
      on_readable(c);  // filled the slot: there may be more
  });
  to_read_.clear();
}

void Engine::handle_event(Conn& c, std::uint32_t events) {
  if (events & (EPOLLERR | EPOLLHUP)) {
    if (c.state == ConnState::connecting) {
      on_writable(c);  // reports the connect error
      return;
    }
    if (c.reading) on_readable(c);  // take what is left, then the end
    // A paused socket would report the hang-up on every epoll_wait: end it now.
    if (c.fd >= 0 && !c.reading) {
      if (c.close_code == 0) c.close_code = 1006;
      finish(c);
      if (on_closed) on_closed(c);
      return;
    }
    if (c.fd >= 0 && (events & EPOLLERR)) {
      fail(c, "socket error", c.state == ConnState::handshaking);
      return;
    }
  }
  if ((events & EPOLLOUT) && c.fd >= 0) on_writable(c);
  if ((events & EPOLLIN) && c.fd >= 0) on_readable(c);
}

bool Engine::run_until(const std::function<bool()>& done, std::int64_t deadline_ns) {
  epoll_event events[max_events];
  while (true) {
    if (done()) return true;
    std::int64_t now = now_ns();
    if (now >= deadline_ns) return done();
    std::int64_t wake = deadline_ns;
    if (wakeup_ns_ > 0 && wakeup_ns_ < wake) wake = wakeup_ns_;
    // A nanosecond timeout that arms a kernel timer only if the call does sleep. (A timerfd
    // re-armed per open-loop send cost ~7 us a time here, a tenth of the load generator's CPU
    // at S2's half load: reprogramming the timer exits to the hypervisor.)
    std::int64_t wait_ns = std::clamp<std::int64_t>(wake - now, 0, 200 * 1'000'000);
    timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000), static_cast<long>(wait_ns % 1'000'000'000)};
    int n = epoll_pwait2(epoll_fd_, events, static_cast<int>(max_events), &timeout, nullptr);
    if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("epoll_pwait2: ") + strerror(errno));
    if (kernel_rx_time_ && n > 0) {
      // Kernel timestamps are CLOCK_REALTIME; payload stamps and the loop use the steady clock.
      timespec real{};
      clock_gettime(CLOCK_REALTIME, &real);
      realtime_to_steady_ = now_ns() - (static_cast<std::int64_t>(real.tv_sec) * 1'000'000'000 + real.tv_nsec);
    }
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<Conn*>(events[i].data.ptr);
      if (c->state == ConnState::closed) continue;
      std::uint32_t ev = events[i].events;
      if (read_batch_.started() && (ev & EPOLLIN) && !(ev & (EPOLLERR | EPOLLHUP)) && c->reading &&
          (c->state == ConnState::open || c->state == ConnState::closing)) {
        if (ev & EPOLLOUT) on_writable(*c);
        if (c->fd >= 0 && c->reading) to_read_.push_back(c);
        continue;
      }
      handle_event(*c, ev);
    }
    if (!to_read_.empty()) read_batched();
    if (on_tick) on_tick(now_ns());
    flush_dirty();
  }
}

// Everything queued this turn goes out now: one write per socket, however many frames, and with
// io_uring one system call for all of them (a send() costs ~2 us here in entering and leaving
// the kernel alone, and that CPU is taken from the target sharing the machine).
void Engine::flush_dirty() {
  std::size_t i = 0;
  while (i < dirty_.size()) {
    const std::size_t end = dirty_.size();  // a failure's callback may mark more dirty
    if (write_batch_.started() && end - i > 1) {
      write_batched(i, end);
    } else {
      for (std::size_t k = i; k < end && k < dirty_.size(); ++k) flush(*dirty_[k]);
    }
    i = end;
  }
  dirty_.clear();
}

// Sends dirty_[first, end) in batches of at most the ring's size; whatever a send leaves
// (short, -EAGAIN, an error, or never submitted) flush() then handles as for a plain send().
void Engine::write_batched(std::size_t first, std::size_t end) {
  for (std::size_t from = first; from < end && from < dirty_.size();) {
    std::size_t queued = 0, k = from;
    for (; k < end && k < dirty_.size() && queued < write_batch_.capacity(); ++k) {
      Conn* c = dirty_[k];
      if (c->fd < 0 || c->state == ConnState::connecting || c->tx_off == c->tx.size()) {
        flush(*c);  // closed, not connected yet, or nothing to send
      } else {
        write_batch_.add_send(c->fd, c->tx.data() + c->tx_off, c->tx.size() - c->tx_off, k);
        ++queued;
      }
    }
    // Every completion comes in before any is handled (see UringBatch::flush), so a callback
    // that appends to a buffer or ends a connection cannot touch a send in flight.
    write_batch_.flush([&](std::uint64_t index, int result) {
      if (index >= dirty_.size()) return;  // the connections were dropped meanwhile
      Conn& c = *dirty_[index];
      if (result > 0 && c.fd >= 0) {
        ++stats_.writes;
        stats_.bytes_out += static_cast<std::uint64_t>(result);
        c.tx_off += static_cast<std::size_t>(result);
      }
      flush(c);  // the rest, the error, or the buffer's reset
    });
    from = k;
  }
}

}  // namespace sb::bench
