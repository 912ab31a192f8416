// common/getpid_cache.cpp: getpid() answers from a cache that must stay right across fork().
#include <doctest/doctest.h>

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

TEST_CASE("getpid cache: the real pid, in the parent and in a forked child") {
  const auto real = [] { return static_cast<pid_t>(::syscall(SYS_getpid)); };
  REQUIRE(getpid() == real());

  pid_t parent = getpid();
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Exit codes say what went wrong; no doctest in the child.
    int code = 0;
    if (getpid() != real()) code = 1;
    else if (getpid() == parent) code = 2;
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK_MESSAGE(WEXITSTATUS(status) == 0, "1: child's getpid() is not its pid; 2: it is the parent's");
  CHECK(getpid() == parent);
}
