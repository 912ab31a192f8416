// A session's events (OPEN, MESSAGE, CLOSE) sent to its worker and not yet acknowledged,
// oldest first, with their total size: kept for re-sending when the session moves to another
// worker. Usually 0-2 entries.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sb::gateway {

struct PendingEvent {
  std::uint64_t seq;
  std::string body;  // encoded OPEN, MESSAGE or CLOSE
};

class UnackedEvents {
 public:
  void push(PendingEvent event);
  // Forgets the events with seq <= `seq` (a worker's ACK covers everything up to it).
  void acknowledge_through(std::uint64_t seq);
  bool empty() const { return !state_; }
  std::size_t size() const { return state_ ? state_->events.size() : 0; }
  std::size_t bytes() const { return state_ ? state_->bytes : 0; }
  const PendingEvent& front() const { return state_->events.front(); }  // not when empty()
  const PendingEvent* begin() const { return state_ ? state_->events.data() : nullptr; }
  const PendingEvent* end() const { return state_ ? state_->events.data() + state_->events.size() : nullptr; }

 private:
  // Allocated while events wait, freed by the ACK of the last: an idle socket pays one pointer.
  struct State {
    std::vector<PendingEvent> events;
    std::size_t bytes = 0;
  };
  std::unique_ptr<State> state_;
};

}  // namespace sb::gateway
