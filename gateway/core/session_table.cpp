#include "gateway/core/session_table.hpp"

#include <cstdint>

namespace sb::gateway {

Session* SessionTable::add() {
  std::size_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
    // After 2^40 sessions in one slot its next counter would wrap: the slot retires.
    if (chunks_[slot / chunk_slots][slot % chunk_slots].counter > UINT64_MAX - max_slots) return add();
  } else {
    slot = capacity();
    if (slot >= max_slots) return nullptr;
    chunks_.push_back(std::make_unique<Session[]>(chunk_slots));
    // The new chunk's slots after the first wait in the free list, lowest taken first.
    for (std::size_t i = slot + chunk_slots - 1; i > slot; --i) free_slots_.push_back(static_cast<std::uint32_t>(i));
  }
  Session& s = chunks_[slot / chunk_slots][slot % chunk_slots];
  // A fresh slot's counter is 0: generation 1 then, so no counter is ever 0. A reused one
  // kept its last counter: the next generation.
  s.counter = (s.counter == 0 ? slot : s.counter) + max_slots;
  s.in_use = true;
  ++in_use_;
  return &s;
}

Session* SessionTable::find(std::uint64_t counter) {
  std::size_t slot = counter & (max_slots - 1);
  if (slot >= capacity()) return nullptr;
  Session* s = at(slot);
  return s && s->counter == counter ? s : nullptr;
}

void SessionTable::remove(Session& session) {
  std::uint64_t counter = session.counter;
  session = Session{};
  session.counter = counter;  // the slot's generation, for the next session there
  free_slots_.push_back(static_cast<std::uint32_t>(counter & (max_slots - 1)));
  --in_use_;
}

}  // namespace sb::gateway
