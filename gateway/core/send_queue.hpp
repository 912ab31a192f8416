// Per-socket queue of ready-made WebSocket frames, bounded in bytes. Frames are shared: a room
// message is framed once and every member's queue points at the same bytes.
#pragma once
#include <cstddef>
#include <vector>
#include <memory>
#include <string>

namespace sb::gateway {

using Frame = std::shared_ptr<const std::string>;

class SendQueue {
 public:
  // False (and nothing queued) when the frame would take the queue over `limit` bytes.
  bool push(Frame frame, std::size_t limit);
  // Appends whole frames to `out` until adding the next would pass `max_bytes` (always at
  // least one frame, so a single large frame still goes out). Returns the frames taken.
  std::size_t take(std::string& out, std::size_t max_bytes);
  bool empty() const { return head_ == frames_.size(); }
  std::size_t bytes() const { return bytes_; }
  std::size_t frames() const { return frames_.size() - head_; }
  void clear();

 private:
  // A vector with a read index, not a deque: an empty std::deque still holds ~600 bytes, and
  // most sockets' queues are empty most of the time.
  std::vector<Frame> frames_;
  std::size_t head_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace sb::gateway
