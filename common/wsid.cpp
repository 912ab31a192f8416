#include "wsid.hpp"

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
  auto epoch = from_base36(wsid.substr(first + 1, second - first - 1));
  auto counter = from_base36(wsid.substr(second + 1));
  if (!epoch || !counter) return std::nullopt;
  return WsidParts{std::string(gateway), *epoch, *counter};
}

std::uint64_t new_epoch() {
  auto millis = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  std::random_device rd;
  return (millis << 16) | (rd() & 0xffffu);
}

}  // namespace sb
