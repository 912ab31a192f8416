// Per-socket queue of ready-made WebSocket frames, bounded in bytes. Frames are shared: a room
// message is framed once and every member's queue points at the same bytes.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace sb::gateway {

using Frame = std::shared_ptr<const std::string>;

class SendQueue {
 public:
  // False (and nothing queued) when the frame would take the queue over `limit` bytes.
  bool push(Frame frame, std::size_t limit);
  // Appends whole frames to `out` until adding the next would pass `max_bytes` (always at
  // least one frame, so a single large frame still goes out). Returns the frames taken.
  std::size_t take(std::string& out, std::size_t max_bytes);
  bool empty() const { return !state_; }
  std::size_t bytes() const { return state_ ? state_->bytes : 0; }
  std::size_t frames() const { return state_ ? state_->frames.size() - state_->head : 0; }
  void clear() { state_.reset(); }

 private:
  // Allocated while frames wait, freed when the last is taken: most sockets' queues are empty
  // most of the time, and an empty queue is then one pointer. A vector with a read index, not
  // a deque (an empty std::deque holds ~600 bytes).
  struct State {
    std::vector<Frame> frames;
    std::size_t head = 0;
    std::size_t bytes = 0;
  };
  std::unique_ptr<State> state_;
};

}  // namespace sb::gateway
