// Every session of the gateway, open or closed-pending, in fixed slots allocated a chunk at a
// time: an idle socket costs sizeof(Session) and nothing else (no map node, no hash bucket, no
// malloc header). A session's counter names its slot and that slot's generation,
// (generation << slot_bits) | slot, so a WSID is never issued twice in an epoch and finding
// one is an index and a compare. Sessions never move (lws holds their addresses).
// Loop thread only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "gateway/core/session.hpp"

namespace sb::gateway {

class SessionTable {
 public:
  static constexpr unsigned slot_bits = 24;
  static constexpr std::size_t max_slots = std::size_t{1} << slot_bits;  // far above any fd limit
  static constexpr std::size_t chunk_slots = 512;                          // ~76 KiB per chunk

  // A default session in a free slot with a counter no session of this table had before.
  // nullptr when all max_slots hold sessions.
  Session* add();
  // The session `counter` names, while its slot still holds it.
  Session* find(std::uint64_t counter);
  // Resets the session and frees its slot (reused first, with the next generation).
  void remove(Session& session);

  std::size_t size() const { return in_use_; }
  // Slots so far (the high-water mark, rounded up to a chunk): valid indexes for at().
  std::size_t capacity() const { return chunks_.size() * chunk_slots; }
  // The session in slot `slot`, or nullptr when the slot is free.
  Session* at(std::size_t slot) {
    Session& s = chunks_[slot / chunk_slots][slot % chunk_slots];
    return s.in_use ? &s : nullptr;
  }
  // Visits every session; `visit` may not add or remove sessions.
  template <class Visit>
  void for_each(Visit&& visit) {
    for (std::size_t slot = 0; slot < capacity(); ++slot)
      if (Session* s = at(slot)) visit(*s);
  }

 private:
  std::vector<std::unique_ptr<Session[]>> chunks_;
  std::vector<std::uint32_t> free_slots_;  // freed slots, most recent last
  std::size_t in_use_ = 0;
};

}  // namespace sb::gateway
