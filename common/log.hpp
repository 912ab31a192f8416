// Minimal leveled logger: one line per event to stderr, "time level component: text".
// Each process has one loop thread, so no locking is needed.
#pragma once
#include <cstdint>
#include <sstream>
#include <string_view>

namespace sb::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level);
Level level();
bool parse_level(std::string_view text, Level& out);
void set_component(std::string_view name);  // e.g. "gateway", "worker-2"
void write_line(Level level, std::string_view text);

template <typename... Parts>
void emit(Level at, const Parts&... parts) {
  if (at < level()) return;
  std::ostringstream out;
  (out << ... << parts);
  write_line(at, out.str());
}
template <typename... Parts> void debug(const Parts&... p) { emit(Level::debug, p...); }
template <typename... Parts> void info(const Parts&... p) { emit(Level::info, p...); }
template <typename... Parts> void warn(const Parts&... p) { emit(Level::warn, p...); }
template <typename... Parts> void error(const Parts&... p) { emit(Level::error, p...); }

// Rate limit for a repeated warning: true for the 1st, 2nd, 4th, 8th... occurrence.
inline bool worth_logging(std::uint64_t count) { return (count & (count - 1)) == 0; }

}  // namespace sb::log
