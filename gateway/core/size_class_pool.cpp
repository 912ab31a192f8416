#include "gateway/core/size_class_pool.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace sb::gateway {

namespace {
std::uintptr_t arena_base(const void* block) {
  return reinterpret_cast<std::uintptr_t>(block) & ~(std::uintptr_t{SizeClassPool::arena_bytes} - 1);
}
}  // namespace

SizeClassPool::~SizeClassPool() {
  for (const auto& [base, size_class] : arena_class_) munmap(reinterpret_cast<void*>(base), arena_bytes);
}

bool SizeClassPool::owns(const void* block) const {
  return block && arena_class_.count(arena_base(block)) != 0;
}

std::size_t SizeClassPool::block_size(const void* block) const {
  auto it = arena_class_.find(arena_base(block));
  return it == arena_class_.end() ? 0 : std::size_t{it->second} * 8;
}

// An arena aligned to its size, so that a block's arena is its address rounded down. Pages
// are touched only as blocks are handed out.
bool SizeClassPool::add_arena(std::size_t size_class) {
  void* raw = mmap(nullptr, 2 * arena_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return false;
  auto start = reinterpret_cast<std::uintptr_t>(raw);
  auto aligned = (start + arena_bytes - 1) & ~(std::uintptr_t{arena_bytes} - 1);
  if (aligned > start) munmap(raw, aligned - start);
  std::uintptr_t tail = start + 2 * arena_bytes - (aligned + arena_bytes);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + arena_bytes), tail);
  arena_class_.emplace(aligned, static_cast<std::uint8_t>(size_class));
  SizeClass& c = classes_[size_class];
  c.bump = reinterpret_cast<char*>(aligned);
  c.bump_end = c.bump + arena_bytes - arena_bytes % (size_class * 8);
  return true;
}

void* SizeClassPool::allocate(std::size_t bytes) {
  std::size_t size_class = class_of(bytes);
  SizeClass& c = classes_[size_class];
  void* block;
  if (c.free) {
    block = c.free;
    c.free = c.free->next;
  } else {
    if (c.bump == c.bump_end && !add_arena(size_class)) return nullptr;
    block = c.bump;
    c.bump += size_class * 8;
  }
  ++in_use_.blocks_in_use;
  in_use_.bytes_in_use += size_class * 8;
  return block;
}

void SizeClassPool::release(void* block) {
  std::size_t size_class = block_size(block) / 8;
  auto* node = static_cast<FreeBlock*>(block);
  node->next = classes_[size_class].free;
  classes_[size_class].free = node;
  --in_use_.blocks_in_use;
  in_use_.bytes_in_use -= size_class * 8;
}

void* SizeClassPool::allocate_any(std::size_t bytes) {
  return bytes <= max_pooled ? allocate(bytes) : std::malloc(bytes);
}

void* SizeClassPool::reallocate(void* block, std::size_t bytes) {
  if (!block) return bytes == 0 ? nullptr : allocate_any(bytes);
  if (!owns(block)) {
    if (bytes == 0) {
      std::free(block);
      return nullptr;
    }
    return std::realloc(block, bytes);  // malloc's block stays malloc's
  }
  if (bytes == 0) {
    release(block);
    return nullptr;
  }
  std::size_t have = block_size(block);
  if (bytes <= max_pooled && class_of(bytes) * 8 == have) return block;
  void* moved = allocate_any(bytes);
  if (!moved) return nullptr;  // like realloc: the old block stays valid
  std::memcpy(moved, block, std::min(have, bytes));
  release(block);
  return moved;
}

}  // namespace sb::gateway
