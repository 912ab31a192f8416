// Spare copies of a per-socket state that comes and goes every loop turn (a send queue's, the
// unacknowledged events'), kept with their vectors' capacity: with 1 000 busy sockets, each
// state's malloc/free plus its vector's regrowth every turn went past glibc's per-thread cache
// and cost ~6 % of the loop thread (S2 at half load). Bounded in count and in what each keeps,
// so a burst's memory goes back. Per thread: each loop thread owns its sessions' states.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

namespace sb::gateway {

// State needs reset() (empty it, keep capacity) and capacity() (elements its storage holds).
template <typename State, std::size_t max_spares = 1024, std::size_t max_kept_capacity = 32>
class SpareStates {
 public:
  static std::unique_ptr<State> take() {
    auto& spares = list();
    if (spares.empty()) return std::make_unique<State>();
    auto state = std::move(spares.back());
    spares.pop_back();
    return state;
  }
  static void give(std::unique_ptr<State> state) {
    auto& spares = list();
    if (!state || spares.size() >= max_spares || state->capacity() > max_kept_capacity) return;
    state->reset();
    spares.push_back(std::move(state));
  }
  static std::size_t spare_count() { return list().size(); }

 private:
  static std::vector<std::unique_ptr<State>>& list() {
    thread_local std::vector<std::unique_ptr<State>> spares;  // owned by the calling thread
    return spares;
  }
};

}  // namespace sb::gateway
