// RFC 4648 base64 (standard alphabet, padded). The chat protocol carries text as base64.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace sb {

std::string base64_encode(std::string_view bytes);
// nullopt for anything that is not canonical padded base64 (wrong length, bad chars).
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace sb
