// The allocator the gateway gives libwebsockets (lws_set_allocator). Every idle socket holds
// three lws blocks (952, 224 and 148 bytes with Debian's build). glibc puts an 8-byte header on
// each and rounds to 16 (224 -> 240, 148 -> 160), and interleaves them with the 5 KiB handshake
// buffers freed after each upgrade. Here small blocks sit in 8-byte size classes packed in
// aligned arenas: no header, no rounding past 8, no holes between idle sockets' blocks.
// Loop thread only: lws runs on the gateway's one loop thread.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <unordered_map>

namespace sb::gateway {

class SizeClassPool {
 public:
  static constexpr std::size_t max_pooled = 1024;        // larger blocks go to malloc
  static constexpr std::size_t arena_bytes = 256 * 1024;  // one size class per arena

  SizeClassPool() = default;
  SizeClassPool(const SizeClassPool&) = delete;
  SizeClassPool& operator=(const SizeClassPool&) = delete;
  ~SizeClassPool();

  // lws' contract (one function for all three): (nullptr, n) allocates, (p, 0) frees,
  // (p, n) resizes keeping the contents. Blocks of at most max_pooled bytes come from the
  // pool, others from malloc; a pointer malloc gave is freed or resized by malloc. nullptr
  // when memory is exhausted (and for (nullptr, 0)).
  void* reallocate(void* block, std::size_t bytes);

  bool owns(const void* block) const;
  // The usable size of a block this pool gave (its size class).
  std::size_t block_size(const void* block) const;

  struct Stats {
    std::size_t arenas = 0;
    std::size_t blocks_in_use = 0;
    std::size_t bytes_in_use = 0;  // by size class
  };
  Stats stats() const {
    Stats s = in_use_;
    s.arenas = arena_class_.size();
    return s;
  }

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  struct SizeClass {
    FreeBlock* free = nullptr;  // released blocks, reused last-in first-out
    char* bump = nullptr;       // the unused tail of the newest arena
    char* bump_end = nullptr;
  };
  // 1..128; every block can hold the free-list link.
  static std::size_t class_of(std::size_t bytes) { return (std::max(bytes, sizeof(FreeBlock)) + 7) / 8; }
  void* allocate(std::size_t bytes);     // from the pool; bytes <= max_pooled
  void* allocate_any(std::size_t bytes);  // from the pool or, when larger, from malloc
  void release(void* block);
  bool add_arena(std::size_t size_class);

  SizeClass classes_[max_pooled / 8 + 1];
  std::unordered_map<std::uintptr_t, std::uint8_t> arena_class_;  // arena base -> size class
  Stats in_use_;  // blocks and bytes; arenas are counted from arena_class_
};

}  // namespace sb::gateway
