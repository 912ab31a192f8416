// WebSocket ids: "<gateway-id>.<epoch>.<counter>" (epoch and counter in base 36).
// The gateway id says which gateway holds the socket; the epoch changes on every gateway
// start, so ids never repeat across restarts and workers can purge a dead epoch's sockets.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sb {

struct WsidParts {
  std::string gateway_id;
  std::uint64_t epoch = 0;
  std::uint64_t counter = 0;
};

// Gateway ids are 1-32 chars of [A-Za-z0-9_-], so '.' separates the parts unambiguously.
bool valid_gateway_id(std::string_view id);
std::string make_wsid(std::string_view gateway_id, std::uint64_t epoch, std::uint64_t counter);
std::optional<WsidParts> parse_wsid(std::string_view wsid);

// A fresh epoch: milliseconds since 1970 in the high bits, randomness in the low 16, so two
// gateways started in the same millisecond with the same id still differ.
std::uint64_t new_epoch();

std::string to_base36(std::uint64_t value);
std::optional<std::uint64_t> from_base36(std::string_view text);

}  // namespace sb
