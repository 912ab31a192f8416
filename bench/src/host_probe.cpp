#include "bench/src/host_probe.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <stdexcept>
#include <thread>

#include "bench/src/engine.hpp"  // now_ns(): steady_clock, i.e. CLOCK_MONOTONIC, which the sleeps use too

namespace sb::bench {
namespace {

// A probe's run: from now, for `seconds`.
struct Span {
  explicit Span(double seconds) : start(now_ns()), end(start + static_cast<std::int64_t>(seconds * 1e9)) {}
  double elapsed_s() const { return static_cast<double>(now_ns() - start) / 1e9; }
  std::int64_t start, end;
};

void sleep_until(std::int64_t due) {
  timespec ts{static_cast<time_t>(due / 1'000'000'000), static_cast<long>(due % 1'000'000'000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) != 0) {
  }  // EINTR: sleep on to the same deadline
}

}  // namespace

HandoffProbe probe_handoff(double seconds, std::int64_t period_ns) {
  HandoffProbe p;
  p.period_ns = period_ns;
  int fd = eventfd(0, EFD_CLOEXEC);  // blocking: the woken thread sleeps in read()
  if (fd < 0) throw std::runtime_error("eventfd failed");
  std::atomic<std::int64_t> written_at{0};  // set by the waker before each write, read by the woken
  std::thread woken([&] {
    for (;;) {
      std::uint64_t count = 0;
      if (read(fd, &count, sizeof count) != sizeof count) continue;
      std::int64_t now = now_ns();
      std::int64_t at = written_at.load(std::memory_order_acquire);
      if (at < 0) return;  // the waker's last write: done
      if (count > 1) ++p.coalesced;
      p.wake.record(now - at);
    }
  });
  Span span(seconds);
  std::uint64_t one = 1;
  for (std::int64_t due = span.start + period_ns; due <= span.end; due += period_ns) {
    sleep_until(due);
    written_at.store(now_ns(), std::memory_order_release);
    if (write(fd, &one, sizeof one) != sizeof one) break;
  }
  written_at.store(-1, std::memory_order_release);
  while (write(fd, &one, sizeof one) != sizeof one) {
  }
  woken.join();  // p is written by `woken` until here
  close(fd);
  p.seconds = span.elapsed_s();
  return p;
}

SleepProbe probe_sleep(double seconds, std::int64_t period_ns) {
  SleepProbe p;
  p.period_ns = period_ns;
  Span span(seconds);
  for (std::int64_t now = span.start; now < span.end;) {
    // Absolute deadline: lateness is measured against it, not against the call's own cost.
    std::int64_t due = now + period_ns;
    sleep_until(due);
    now = now_ns();
    std::int64_t late = now - due;
    p.late.record(late);
    if (late > 500'000) ++p.late_over_500us;
    if (late > 1'000'000) ++p.late_over_1ms;
  }
  p.seconds = span.elapsed_s();
  return p;
}

SpinProbe probe_spin(double seconds, std::int64_t threshold_ns) {
  SpinProbe p;
  p.threshold_ns = threshold_ns;
  Span span(seconds);
  for (std::int64_t last = span.start, now = span.start; now < span.end; last = now) {
    now = now_ns();
    std::int64_t gap = now - last;
    if (gap <= threshold_ns) continue;
    ++p.gaps;
    if (gap > 500'000) ++p.gaps_over_500us;
    p.lost_ns += gap;
    if (gap > p.worst_gap_ns) p.worst_gap_ns = gap;
  }
  p.seconds = span.elapsed_s();
  return p;
}

}  // namespace sb::bench
