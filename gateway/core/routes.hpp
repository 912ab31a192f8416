// Which app a WebSocket path reaches. "/<app>" and the IRIS-style "/csp/<namespace>/<App>.Server.cls"
// both name an app; the app exists when some live worker declared it.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sb::gateway {

// App name for a WebSocket request path, or nullopt when the path cannot name an app.
std::optional<std::string> app_for_path(std::string_view path);

bool valid_app_name(std::string_view name);  // [a-z0-9_-]{1,32}

// lws hands over query arguments already percent-decoded, one "name=value" per fragment.
// Workers get the standard encoded form back, so a value containing '&' or '=' survives.
std::string encode_query(const std::vector<std::string>& decoded_args);

}  // namespace sb::gateway
