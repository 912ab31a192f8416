#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>

#include "common/log.hpp"

// Code under test logs warnings for bad input on purpose; keep the output readable unless
// SB_TEST_LOG=debug|info|warn asks for it.
int main(int argc, char** argv) {
  sb::log::Level level = sb::log::Level::error;
  if (const char* wanted = std::getenv("SB_TEST_LOG")) sb::log::parse_level(wanted, level);
  sb::log::set_level(level);
  doctest::Context context(argc, argv);
  return context.run();
}
