#include "gateway/core/unacked_events.hpp"

#include <algorithm>

namespace sb::gateway {

void UnackedEvents::push(PendingEvent event) {
  if (!state_) state_ = std::make_unique<State>();
  state_->bytes += event.body.size();
  state_->events.push_back(std::move(event));
}

void UnackedEvents::acknowledge_through(std::uint64_t seq) {
  if (!state_) return;
  auto& events = state_->events;
  auto done = std::find_if(events.begin(), events.end(), [&](const PendingEvent& e) { return e.seq > seq; });
  for (auto it = events.begin(); it != done; ++it) state_->bytes -= it->body.size();
  events.erase(events.begin(), done);
  if (events.empty()) state_.reset();
}

}  // namespace sb::gateway
