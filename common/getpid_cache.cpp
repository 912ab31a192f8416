// getpid() without a system call, for the two server binaries.
//
// Why: libzmq checks getpid() on every mailbox operation to notice a fork (HAVE_FORK), and
// since glibc 2.25 getpid() is a real system call. Here that is 10-20 calls per message per
// process, and a system call on this VM costs about a microsecond: the one-connection round
// trip fell from ~170 to ~122 us with the cache (bench/README.md). This is the cache glibc
// itself kept before 2.25: set at start, refreshed in the child of every fork() through
// pthread_atfork. Nothing here calls clone() directly, the case that made glibc drop it.
//
// Linked into switchboard-gateway and switchboard-backend only (an object, not part of a
// library, so it is always linked); the executable's definition then takes the place of
// libc's for libzmq and libsqlite3 too. tests/unit/getpid_cache_test.cpp checks the value in
// a parent and a forked child.
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace {

std::atomic<pid_t> cached_pid{0};

void refresh() { cached_pid.store(static_cast<pid_t>(::syscall(SYS_getpid)), std::memory_order_relaxed); }

// Runs before main (and before any thread exists): the cache is never read unset.
[[maybe_unused]] const bool installed = [] {
  refresh();
  ::pthread_atfork(nullptr, nullptr, refresh);
  return true;
}();

}  // namespace

extern "C" pid_t getpid() noexcept {
  pid_t pid = cached_pid.load(std::memory_order_relaxed);
  return pid != 0 ? pid : static_cast<pid_t>(::syscall(SYS_getpid));
}
