#include "log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>

namespace sb::log {
namespace {
Level current_level = Level::info;  // owned by the process' loop thread
std::string component = "switchboard";
}  // namespace

void set_level(Level l) { current_level = l; }
Level level() { return current_level; }
void set_component(std::string_view name) { component = name; }

bool parse_level(std::string_view text, Level& out) {
  if (text == "debug") out = Level::debug;
  else if (text == "info") out = Level::info;
  else if (text == "warn") out = Level::warn;
  else if (text == "error") out = Level::error;
  else return false;
  return true;
}

void write_line(Level l, std::string_view text) {
  static constexpr const char* names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::fprintf(stderr, "%s.%03dZ %s %s: %.*s\n", stamp, static_cast<int>(millis),
               names[static_cast<int>(l)], component.c_str(), static_cast<int>(text.size()), text.data());
}

}  // namespace sb::log
