// How promptly this machine runs a thread, measured with no target running: the floor under
// every tail latency the scenarios report. Two probes, one after the other:
// - sleep: a thread sleeps 1 ms, again and again, and records how late each wake-up comes
//   (a vCPU that went idle has to be woken, here by the hypervisor);
// - spin: a thread that never sleeps reads the clock in a loop and records the gaps in its
//   run (the CPU was taken from it: hypervisor, interrupts, other threads).
// A round trip through Switchboard wakes a sleeping thread up to eight times (Node's: twice),
// each wake-up another draw from the first distribution.
#pragma once
#include <cstdint>

#include "bench/src/stats.hpp"

namespace sb::bench {

struct HandoffProbe {
  std::int64_t period_ns = 0;
  Histogram wake;  // ns from the eventfd write to the woken thread running
  std::uint64_t coalesced = 0;  // wake-ups that found more than one write (the waker lapped it)
  double seconds = 0;
};

struct SleepProbe {
  std::int64_t period_ns = 0;
  Histogram late;  // ns past the requested wake-up time, one sample per sleep
  std::uint64_t late_over_500us = 0;
  std::uint64_t late_over_1ms = 0;
  double seconds = 0;
};

struct SpinProbe {
  std::int64_t threshold_ns = 0;
  std::uint64_t gaps = 0;  // gaps between consecutive clock reads longer than threshold_ns
  std::uint64_t gaps_over_500us = 0;
  std::int64_t lost_ns = 0;  // summed length of those gaps
  std::int64_t worst_gap_ns = 0;
  double seconds = 0;
};

// Each runs on the calling thread for about `seconds`.
HandoffProbe probe_handoff(double seconds, std::int64_t period_ns);
SleepProbe probe_sleep(double seconds, std::int64_t period_ns);
SpinProbe probe_spin(double seconds, std::int64_t threshold_ns);

}  // namespace sb::bench
