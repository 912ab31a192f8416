#include "wsid.hpp"

#include <atomic>
#include <chrono>
#include <random>

namespace sb {

bool valid_gateway_id(std::string_view id) {
  if (id.empty() || id.size() > 32) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string to_base36(std::uint64_t value) {
  static constexpr char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  if (value == 0) return "0";
  std::string out;
  while (value != 0) {
    out.insert(out.begin(), digits[value % 36]);
    value /= 36;
  }
  return out;
}

std::optional<std::uint64_t> from_base36(std::string_view text) {
  if (text.empty() || text.size() > 13) return std::nullopt;  // 36^13 > 2^64
  unsigned __int128 value = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'z') digit = c - 'a' + 10;
    else return std::nullopt;
    value = value * 36 + static_cast<unsigned>(digit);
  }
  if (value > UINT64_MAX) return std::nullopt;
  return static_cast<std::uint64_t>(value);
}

std::string make_wsid(std::string_view gateway_id, std::uint64_t epoch, std::uint64_t counter) {
  std::string out(gateway_id);
  out += '.';
  out += to_base36(epoch);
  out += '.';
  out += to_base36(counter);
  return out;
}

std::optional<WsidParts> parse_wsid(std::string_view wsid) {
  auto first = wsid.find('.');
  if (first == std::string_view::npos) return std::nullopt;
  auto second = wsid.find('.', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  auto gateway = wsid.substr(0, first);
  if (!valid_gateway_id(gateway)) return std::nullopt;
  auto epoch_text = wsid.substr(first + 1, second - first - 1);
  auto counter_text = wsid.substr(second + 1);
  // Only the spelling make_wsid writes: with leading zeros "gw.01.1" would parse like
  // "gw.1.1" yet be a different map key everywhere WSIDs are compared as strings.
  auto canonical = [](std::string_view digits) { return digits.size() <= 1 || digits.front() != '0'; };
  if (!canonical(epoch_text) || !canonical(counter_text)) return std::nullopt;
  auto epoch = from_base36(epoch_text);
  auto counter = from_base36(counter_text);
  if (!epoch || !counter) return std::nullopt;
  return WsidParts{std::string(gateway), *epoch, *counter};
}

std::uint64_t new_epoch() {
  auto millis = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  std::random_device rd;
  std::uint64_t candidate = (millis << 16) | (rd() & 0xffffu);
  // Two calls in one millisecond would repeat with odds 1 in 65 536; within a process,
  // make epochs strictly increasing instead (also when the wall clock steps back).
  static std::atomic<std::uint64_t> last{0};
  std::uint64_t previous = last.load();
  std::uint64_t next;
  do {
    next = candidate > previous ? candidate : previous + 1;
  } while (!last.compare_exchange_weak(previous, next));
  return next;
}

}  // namespace sb
