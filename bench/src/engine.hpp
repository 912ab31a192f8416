// One-thread epoll WebSocket client engine: non-blocking connects spread over several
// loopback source addresses, the upgrade handshake, masked frames out (coalesced per socket
// into one write per loop turn), server frames in. Scenarios drive it through callbacks.
#pragma once
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench/src/ws_wire.hpp"
#include "common/uring_batch.hpp"

namespace sb::bench {

std::int64_t now_ns();

enum class ConnState : std::uint8_t { connecting, handshaking, open, closing, closed };

struct Conn {
  int fd = -1;
  std::uint32_t id = 0;
  ConnState state = ConnState::connecting;
  bool dirty = false;      // has bytes to write this turn
  bool want_out = false;   // EPOLLOUT registered
  bool reading = true;     // false: we stopped reading (slow consumer)
  bool close_sent = false;
  std::uint16_t close_code = 0;  // from the server's close frame; 1006 if the TCP just ended
  std::string expected_accept;
  std::string rx;   // unparsed input left over (handshake head or a partial frame)
  std::string msg;  // a fragmented message being reassembled
  bool msg_text = true;
  std::string tx;
  std::size_t tx_off = 0;
  std::int64_t t_connect = 0, t_open = 0, t_first_message = 0;
  std::string error;
  // Free for the scenario.
  std::uint32_t group = 0;
  std::uint32_t seq = 0;
  std::int64_t user = 0;
  bool flag = false;
};

struct EngineStats {
  std::uint64_t connect_failures = 0, handshake_failures = 0, protocol_errors = 0, closed_by_server = 0;
  std::uint64_t rx_timestamp_failures = 0;  // SO_TIMESTAMPING refused: that socket's times are the loop's
  std::uint64_t messages_in = 0, messages_out = 0, bytes_in = 0, bytes_out = 0, writes = 0;
};

class Engine {
 public:
  // sources > 1 spreads connections over 127.0.0.1 .. 127.0.0.<sources> (loopback targets only).
  // batched_io: a turn's readable sockets are read with one io_uring submission, and its
  // queued output written with another (falls back to one recv / send each when the kernel
  // refuses io_uring).
  // kernel_rx_time: a message's arrival time is when its bytes reached the socket (the kernel's
  // receive timestamp, SO_TIMESTAMPING), not when this one thread got round to reading them:
  // with 1 000 sockets and millions of frames a second, a loop turn takes a millisecond, and
  // that wait is the load generator's, not the server's.
  Engine(int sources, bool batched_io, bool kernel_rx_time);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  std::function<void(Conn&)> on_open;
  // `now`: the arrival time (kernel receive time when kernel_rx_time, else the read's time).
  std::function<void(Conn&, std::string_view payload, bool text, std::int64_t now)> on_message;
  std::function<void(Conn&)> on_closed;  // after open, or a failure before it (error set)
  std::function<void(std::int64_t now)> on_tick;  // every loop turn, before writes go out

  // Starts a connection; it reports through on_open or on_closed. Never null.
  Conn& connect(const WsUrl& url, int rcvbuf = 0);  // rcvbuf > 0: a small receive buffer (slow clients)
  void send_text(Conn& c, std::string_view payload);
  void send_close(Conn& c, std::uint16_t code);
  void pause_reading(Conn& c);
  void resume_reading(Conn& c);
  void drop(Conn& c);    // closes the descriptor now, no close frame (the server sees 1006)
  void drop_all();       // and forgets every connection
  void set_wakeup(std::int64_t at_ns);  // next on_tick no later than this (0: none)

  // Runs the loop until done() or the deadline; returns done().
  bool run_until(const std::function<bool()>& done, std::int64_t deadline_ns);

  std::vector<std::unique_ptr<Conn>>& conns() { return conns_; }
  std::size_t open_count() const { return open_; }
  std::size_t pending_count() const { return pending_; }  // connecting or handshaking
  EngineStats& stats() { return stats_; }
  bool batched_reads() const { return read_batch_.started(); }
  bool batched_writes() const { return write_batch_.started(); }
  bool kernel_rx_time() const { return kernel_rx_time_; }
  // When the read being parsed was made (steady clock): inside on_message, for the time a
  // message waited for the loop.
  std::int64_t read_time() const { return read_time_; }
  std::size_t max_message_bytes = 1 << 20;

 private:
  void handle_event(Conn& c, std::uint32_t events);
  void on_readable(Conn& c);
  // One read's result; `arrival` its kernel receive time (0: none); false: stop reading c.
  bool take_input(Conn& c, char* data, ssize_t n, std::int64_t arrival);
  std::int64_t arrival_time(const msghdr& message) const;  // 0 when it carries no timestamp
  static constexpr std::size_t control_bytes = 64;  // room for one SCM_TIMESTAMPING
  // Points `message` at `buffer`, and at `control` when timestamps are on.
  void prepare_read(msghdr& message, iovec& buffer, char (&control)[control_bytes]) const;
  void read_batched();
  void flush_dirty();
  void write_batched(std::size_t first, std::size_t end);
  void on_writable(Conn& c);
  bool process_input(Conn& c, char* data, std::size_t size, std::size_t& consumed, std::int64_t arrival);
  void flush(Conn& c);
  void update_interest(Conn& c);
  void fail(Conn& c, std::string why, bool handshake);
  void finish(Conn& c);
  void mark_dirty(Conn& c);
  std::uint32_t next_mask();

  int epoll_fd_ = -1;
  int sources_ = 1;
  std::int64_t wakeup_ns_ = 0;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> dirty_;
  std::string read_buffer_;
  UringBatch read_batch_;
  UringBatch write_batch_;  // a turn's sends (started with read_batch_)
  std::vector<Conn*> to_read_;  // this turn's readable sockets, for read_batched()
  std::string read_slots_;      // one slot per batched read
  // Per batched read: its header, buffer and room for the timestamp (loop thread only).
  struct ReadSlotHeader {
    msghdr message{};
    iovec buffer{};
    alignas(cmsghdr) char control[control_bytes];
  };
  std::vector<ReadSlotHeader> read_headers_;
  alignas(cmsghdr) char control_[control_bytes];  // on_readable's recvmsg
  bool kernel_rx_time_ = false;
  std::int64_t realtime_to_steady_ = 0;  // steady - realtime, taken each loop turn
  std::int64_t read_time_ = 0;
  std::size_t open_ = 0, pending_ = 0;
  std::uint64_t rng_ = 0x9E3779B97F4A7C15ull;
  std::uint32_t next_id_ = 0;
  EngineStats stats_;
};

}  // namespace sb::bench
