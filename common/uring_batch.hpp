// Many socket sends or receives in one system call (io_uring). On this VM a send() costs ~5 us,
// of which ~2 are entering and leaving the kernel; 1 000 sends in one io_uring_enter cost ~3 us
// each. Every operation carries MSG_DONTWAIT, so it completes during the submit (done, short,
// or -EAGAIN); none waits for its socket. Used by the gateway's loop (sends) and the bench
// (receives); one thread per instance.
#pragma once
#include <liburing.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sb {

class UringBatch {
 public:
  UringBatch() = default;
  UringBatch(const UringBatch&) = delete;
  UringBatch& operator=(const UringBatch&) = delete;
  ~UringBatch();

  // False (with the reason in `error`) when the kernel refuses io_uring (too old, seccomp).
  bool start(unsigned entries, std::string& error);
  bool started() const { return started_; }
  unsigned capacity() const { return entries_; }

  // Queue a send of `size` bytes at `data` to `fd` / a receive into the buffers `message`
  // describes (with room for ancillary data such as kernel timestamps). What they point to must
  // stay valid (and, for a send, unchanged) until flush() returns. At most capacity() operations
  // between flushes.
  void add_send(int fd, const char* data, std::size_t size, std::uint64_t tag);
  void add_recvmsg(int fd, msghdr* message, std::uint64_t tag);

  // Submits what was queued and calls done(tag, result) for each: bytes moved (0 on a receive:
  // the peer closed), or -errno (-EAGAIN: nothing to do now; -ECANCELED: never submitted). If the
  // kernel did not take the whole batch, the instance stops (started() turns false): what it left
  // in its queue must never run later, after the caller has done it another way.
  template <typename Done>
  void flush(Done&& done) {
    if (queued_tags_.empty()) return;
    unsigned submitted = submit();
    for (unsigned got = 0; got < submitted;) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe(&ring_, &cqe) != 0 || !cqe) continue;  // EINTR: wait again
      done(static_cast<std::uint64_t>(cqe->user_data), cqe->res);
      io_uring_cqe_seen(&ring_, cqe);
      ++got;
    }
    for (std::size_t i = submitted; i < queued_tags_.size(); ++i) done(queued_tags_[i], -ECANCELED);
    if (submitted < queued_tags_.size()) started_ = false;
    queued_tags_.clear();
  }

 private:
  io_uring_sqe* next_sqe(std::uint64_t tag);  // records the tag; the caller preps and tags it
  unsigned submit();  // how many of the queued operations the kernel took, in queue order

  io_uring ring_{};
  bool ring_open_ = false;
  bool started_ = false;
  unsigned entries_ = 0;
  std::vector<std::uint64_t> queued_tags_;  // in submission order
};

}  // namespace sb
