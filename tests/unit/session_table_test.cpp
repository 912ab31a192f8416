// Session slots: counters name a slot and its generation; addresses never move.
#include <doctest/doctest.h>

#include <set>
#include <vector>

#include "gateway/core/session_table.hpp"

using sb::gateway::Session;
using sb::gateway::SessionTable;

TEST_CASE("sessions get distinct non-zero counters and are found by them") {
  SessionTable table;
  std::vector<Session*> sessions;
  std::set<std::uint64_t> counters;
  for (std::size_t i = 0; i < SessionTable::chunk_slots + 10; ++i) {  // into a second chunk
    Session* s = table.add();
    REQUIRE(s);
    CHECK(bool(s->in_use));
    CHECK(s->counter != 0);
    counters.insert(s->counter);
    sessions.push_back(s);
  }
  CHECK(counters.size() == sessions.size());
  CHECK(table.size() == sessions.size());
  CHECK(table.capacity() == 2 * SessionTable::chunk_slots);
  for (Session* s : sessions) CHECK(table.find(s->counter) == s);
  CHECK(table.find(0) == nullptr);
  CHECK(table.find(sessions.back()->counter + 1) == nullptr);  // a slot never used
  CHECK(table.find(sessions[0]->counter + SessionTable::max_slots) == nullptr);  // a later generation
  CHECK(table.find(5 * SessionTable::chunk_slots) == nullptr);  // beyond the chunks
  std::size_t visited = 0;
  table.for_each([&](Session&) { ++visited; });
  CHECK(visited == sessions.size());
}

TEST_CASE("a removed session's counter is dead; its slot comes back with the next generation") {
  SessionTable table;
  Session* a = table.add();
  Session* b = table.add();
  a->topics.push_back("room");
  a->closed = true;
  std::uint64_t old = a->counter;
  table.remove(*a);
  CHECK(table.size() == 1);
  CHECK(table.find(old) == nullptr);
  CHECK(table.find(b->counter) == b);
  std::size_t visited = 0;
  table.for_each([&](Session& s) {
    ++visited;
    CHECK(&s == b);
  });
  CHECK(visited == 1);
  Session* again = table.add();
  CHECK(again == a);  // the freed slot first, same address
  CHECK(again->counter == old + SessionTable::max_slots);
  CHECK(again->topics.empty());  // reset to a fresh session
  CHECK_FALSE(bool(again->closed));
  CHECK(table.find(again->counter) == again);
  CHECK(table.find(old) == nullptr);
}

TEST_CASE("sessions stay where they are while the table grows") {
  SessionTable table;
  Session* first = table.add();
  std::uint64_t counter = first->counter;
  for (std::size_t i = 0; i < 4 * SessionTable::chunk_slots; ++i) REQUIRE(table.add());
  CHECK(table.find(counter) == first);
  CHECK(first->counter == counter);
}
