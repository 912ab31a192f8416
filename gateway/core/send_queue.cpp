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
  while (!frames_.empty()) {
    const auto& frame = *frames_.front();
    if (taken > 0 && added + frame.size() > max_bytes) break;
    out.append(frame);
    added += frame.size();
    bytes_ -= frame.size();
    frames_.pop_front();
    ++taken;
  }
  return taken;
}

void SendQueue::clear() {
  frames_.clear();
  bytes_ = 0;
}

}  // namespace sb::gateway
