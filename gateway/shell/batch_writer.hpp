// Sends to many sockets with one system call (io_uring). On this VM a send() costs ~5 us, of
// which ~2 are entering and leaving the kernel; 1 000 sends in one io_uring_enter cost ~3 us
// each. Sends carry MSG_DONTWAIT, so each completes during the submit: written, short, or
// -EAGAIN; none waits for the socket. Loop thread only.
#pragma once
#include <liburing.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sb::gateway {

class BatchWriter {
 public:
  BatchWriter() = default;
  BatchWriter(const BatchWriter&) = delete;
  BatchWriter& operator=(const BatchWriter&) = delete;
  ~BatchWriter();

  // False (with the reason in `error`) when the kernel refuses io_uring (too old, seccomp).
  bool start(unsigned entries, std::string& error);
  bool started() const { return started_; }
  unsigned capacity() const { return entries_; }

  // Queues a send of `size` bytes at `data` to `fd`; `data` must stay valid and unchanged until
  // flush() returns. At most capacity() sends between flushes.
  void add(int fd, const char* data, std::size_t size, std::uint64_t tag);

  // Submits what add() queued and calls done(tag, result) for each: bytes written, or -errno
  // (-EAGAIN: the socket's buffer was full; -ECANCELED: never submitted). If the kernel did not
  // take the whole batch, the writer stops (started() turns false): what it left in its queue
  // must never go out later, after the caller has sent those bytes another way.
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
  unsigned submit();  // how many of the queued sends the kernel took, in queue order

  io_uring ring_{};
  bool ring_open_ = false;
  bool started_ = false;
  unsigned entries_ = 0;
  std::vector<std::uint64_t> queued_tags_;  // in submission order
};

}  // namespace sb::gateway
