// URL query strings: "room=a%20b&x=1" -> value of one parameter, percent-decoded.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace sb {

// nullopt if the parameter is absent or its encoding is broken ("%zz").
std::optional<std::string> query_param(std::string_view query, std::string_view name);
std::optional<std::string> percent_decode(std::string_view text);

}  // namespace sb
