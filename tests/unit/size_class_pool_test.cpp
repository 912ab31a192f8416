// The allocator lws gets: size classes, reuse, resizing across pool and malloc.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <vector>

#include "gateway/core/size_class_pool.hpp"

using sb::gateway::SizeClassPool;

TEST_CASE("lws' per-socket blocks get exact 8-byte classes, packed, no two overlapping") {
  SizeClassPool pool;
  std::vector<char*> blocks;
  std::set<std::uintptr_t> starts;
  for (int i = 0; i < 600; ++i) {  // more than one arena of 952-byte blocks
    for (std::size_t size : {952u, 224u, 148u}) {
      auto* b = static_cast<char*>(pool.reallocate(nullptr, size));
      REQUIRE(b);
      CHECK(pool.owns(b));
      CHECK(reinterpret_cast<std::uintptr_t>(b) % 8 == 0);
      CHECK(pool.block_size(b) == (size + 7) / 8 * 8);
      std::memset(b, i & 0xff, size);  // writable to its last byte
      starts.insert(reinterpret_cast<std::uintptr_t>(b));
      blocks.push_back(b);
    }
  }
  CHECK(starts.size() == blocks.size());
  // Neighbours in one class are exactly one class apart: no headers, no rounding to 16.
  auto* a = static_cast<char*>(pool.reallocate(nullptr, 224));
  auto* b = static_cast<char*>(pool.reallocate(nullptr, 224));
  CHECK(b - a == 224);
  CHECK(pool.stats().blocks_in_use == blocks.size() + 2);
  CHECK(pool.stats().bytes_in_use == 600 * (952 + 224 + 152) + 448);
  CHECK(pool.stats().arenas == 5);  // 275 blocks of 952 fit one arena: 3 arenas, and 1 each for 224, 152
  for (char* p : blocks) CHECK(pool.reallocate(p, 0) == nullptr);
  pool.reallocate(a, 0);
  pool.reallocate(b, 0);
  CHECK(pool.stats().blocks_in_use == 0);
  CHECK(pool.stats().bytes_in_use == 0);
}

TEST_CASE("a released block is the next one handed out in its class") {
  SizeClassPool pool;
  void* first = pool.reallocate(nullptr, 148);
  void* second = pool.reallocate(nullptr, 150);  // same class (152)
  pool.reallocate(first, 0);
  CHECK(pool.reallocate(nullptr, 145) == first);
  CHECK(pool.reallocate(nullptr, 152) != second);  // still in use
  auto arenas = pool.stats().arenas;
  for (int i = 0; i < 100; ++i) pool.reallocate(pool.reallocate(nullptr, 976), 0);
  CHECK(pool.stats().arenas == arenas + 1);  // a freed handshake block is reused, not piled up
}

TEST_CASE("large blocks and zero sizes follow malloc's rules") {
  SizeClassPool pool;
  CHECK(pool.reallocate(nullptr, 0) == nullptr);
  void* big = pool.reallocate(nullptr, SizeClassPool::max_pooled + 1);
  REQUIRE(big);
  CHECK_FALSE(pool.owns(big));
  CHECK(pool.reallocate(big, 0) == nullptr);  // freed by free(): ASan/valgrind would object otherwise
  void* tiny = pool.reallocate(nullptr, 1);
  CHECK(pool.owns(tiny));
  CHECK(pool.block_size(tiny) == 8);  // room for the free-list link
  pool.reallocate(tiny, 0);
  // A block malloc gave before the pool was installed is freed by malloc.
  void* foreign = std::malloc(100);
  CHECK_FALSE(pool.owns(foreign));
  CHECK(pool.reallocate(foreign, 0) == nullptr);
}

TEST_CASE("resizing keeps the contents, between classes and to and from malloc") {
  SizeClassPool pool;
  auto* p = static_cast<char*>(pool.reallocate(nullptr, 20));
  std::memcpy(p, "0123456789abcdefghi", 20);
  CHECK(pool.reallocate(p, 24) == p);  // same class: stays
  auto* q = static_cast<char*>(pool.reallocate(p, 500));
  REQUIRE(q);
  CHECK(pool.owns(q));
  CHECK(std::memcmp(q, "0123456789abcdefghi", 20) == 0);
  CHECK(pool.stats().blocks_in_use == 1);
  auto* big = static_cast<char*>(pool.reallocate(q, 5000));
  REQUIRE(big);
  CHECK_FALSE(pool.owns(big));
  CHECK(std::memcmp(big, "0123456789abcdefghi", 20) == 0);
  CHECK(pool.stats().blocks_in_use == 0);
  auto* smaller = static_cast<char*>(pool.reallocate(big, 10));  // malloc's block stays malloc's
  REQUIRE(smaller);
  CHECK(std::memcmp(smaller, "0123456789", 10) == 0);
  auto* shrunk = static_cast<char*>(pool.reallocate(pool.reallocate(nullptr, 300), 16));
  CHECK(pool.block_size(shrunk) == 16);
  pool.reallocate(smaller, 0);
  pool.reallocate(shrunk, 0);
}
