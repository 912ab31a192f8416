#include "gateway/core/unacked_events.hpp"

#include <algorithm>

#include "gateway/core/spare_states.hpp"

namespace sb::gateway {

void UnackedEvents::push(PendingEvent event) {
  if (!state_) state_ = SpareStates<State, 1024, 8>::take();
  state_->bytes += event.body.size();
  state_->events.push_back(std::move(event));
}

void UnackedEvents::acknowledge_through(std::uint64_t seq) {
  if (!state_) return;
  auto& events = state_->events;
  auto done = std::find_if(events.begin(), events.end(), [&](const PendingEvent& e) { return e.seq > seq; });
  for (auto it = events.begin(); it != done; ++it) state_->bytes -= it->body.size();
  events.erase(events.begin(), done);
  if (events.empty()) SpareStates<State, 1024, 8>::give(std::move(state_));
}

UnackedEvents::~UnackedEvents() { SpareStates<State, 1024, 8>::give(std::move(state_)); }

UnackedEvents& UnackedEvents::operator=(UnackedEvents&& other) noexcept {
  if (this != &other) {
    SpareStates<State, 1024, 8>::give(std::move(state_));
    state_ = std::move(other.state_);
  }
  return *this;
}

}  // namespace sb::gateway
