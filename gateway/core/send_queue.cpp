#include "gateway/core/send_queue.hpp"

namespace sb::gateway {

bool SendQueue::push(Frame frame, std::size_t limit) {
  if (bytes_ + frame->size() > limit) return false;
  bytes_ += frame->size();
  frames_.push_back(std::move(frame));
  return true;
}

std::size_t SendQueue::take(std::string& out, std::size_t max_bytes) {
  std::size_t taken = 0, added = 0;
  while (head_ < frames_.size()) {
    const auto& frame = *frames_[head_];
    if (taken > 0 && added + frame.size() > max_bytes) break;
    out.append(frame);
    added += frame.size();
    bytes_ -= frame.size();
    frames_[head_++].reset();
    ++taken;
  }
  if (head_ == frames_.size()) clear();
  return taken;
}

void SendQueue::clear() {
  // Release the storage too: a burst should not pin memory on an idle socket.
  std::vector<Frame>().swap(frames_);
  head_ = 0;
  bytes_ = 0;
}

}  // namespace sb::gateway
