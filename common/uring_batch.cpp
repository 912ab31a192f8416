#include "common/uring_batch.hpp"

#include <sys/socket.h>

#include <cstring>

namespace sb {

UringBatch::~UringBatch() {
  if (ring_open_) io_uring_queue_exit(&ring_);
}

bool UringBatch::start(unsigned entries, std::string& error) {
  int rc = io_uring_queue_init(entries, &ring_, 0);
  if (rc < 0) {
    error = std::strerror(-rc);
    return false;
  }
  ring_open_ = started_ = true;
  entries_ = entries;
  queued_tags_.reserve(entries);
  return true;
}

io_uring_sqe* UringBatch::next_sqe(std::uint64_t tag) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (!sqe) return nullptr;  // only past capacity(), which callers do not reach
  queued_tags_.push_back(tag);
  return sqe;
}

void UringBatch::add_send(int fd, const char* data, std::size_t size, std::uint64_t tag) {
  if (io_uring_sqe* sqe = next_sqe(tag)) {
    io_uring_prep_send(sqe, fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
    sqe->user_data = tag;  // after prep, which may clear it
  }
}

void UringBatch::add_recvmsg(int fd, msghdr* message, std::uint64_t tag) {
  if (io_uring_sqe* sqe = next_sqe(tag)) {
    io_uring_prep_recvmsg(sqe, fd, message, MSG_DONTWAIT);
    sqe->user_data = tag;  // after prep, which may clear it
  }
}

unsigned UringBatch::submit() {
  auto expected = static_cast<unsigned>(queued_tags_.size());
  int rc;
  do {
    rc = io_uring_submit_and_wait(&ring_, expected);
  } while (rc == -EINTR);
  return rc < 0 ? 0 : static_cast<unsigned>(rc);
}

}  // namespace sb
