#include "gateway/core/send_queue.hpp"

namespace sb::gateway {

bool SendQueue::push(Frame frame, std::size_t limit) {
  if (bytes() + frame->size() > limit) return false;
  if (!state_) state_ = std::make_unique<State>();
  state_->bytes += frame->size();
  state_->frames.push_back(std::move(frame));
  return true;
}

std::size_t SendQueue::take(std::string& out, std::size_t max_bytes) {
  if (!state_) return 0;
  auto& s = *state_;
  std::size_t taken = 0, added = 0;
  while (s.head < s.frames.size()) {
    const auto& frame = *s.frames[s.head];
    if (taken > 0 && added + frame.size() > max_bytes) break;
    out.append(frame);
    added += frame.size();
    s.bytes -= frame.size();
    s.frames[s.head++].reset();
    ++taken;
  }
  if (s.head == s.frames.size()) clear();
  return taken;
}

}  // namespace sb::gateway
