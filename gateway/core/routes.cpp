#include "gateway/core/routes.hpp"

#include <cctype>

namespace sb::gateway {

bool valid_app_name(std::string_view name) {
  if (name.empty() || name.size() > 32) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

namespace {
void append_encoded(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  for (unsigned char c : text) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_' || c == '.' || c == '~';
    if (plain) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
}
}  // namespace

std::string encode_query(const std::vector<std::string>& decoded_args) {
  std::string out;
  for (const auto& arg : decoded_args) {
    if (!out.empty()) out += '&';
    auto eq = arg.find('=');
    append_encoded(out, std::string_view(arg).substr(0, eq));
    if (eq != std::string::npos) {
      out += '=';
      append_encoded(out, std::string_view(arg).substr(eq + 1));
    }
  }
  return out;
}

std::optional<std::string> app_for_path(std::string_view path) {
  if (path.size() < 2 || path.front() != '/') return std::nullopt;
  std::string_view rest = path.substr(1);
  if (rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') == std::string_view::npos) {
    if (!valid_app_name(rest)) return std::nullopt;
    return std::string(rest);
  }
  // /csp/<namespace>/<App>.Server.cls -> "app" (lower-cased), as IRIS maps a URL to a class.
  constexpr std::string_view csp = "csp/";
  constexpr std::string_view suffix = ".Server.cls";
  if (rest.substr(0, csp.size()) != csp) return std::nullopt;
  rest.remove_prefix(csp.size());
  auto slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  std::string_view cls = rest.substr(slash + 1);
  if (cls.size() <= suffix.size() || cls.substr(cls.size() - suffix.size()) != suffix) return std::nullopt;
  cls.remove_suffix(suffix.size());
  std::string app;
  for (char c : cls) app += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!valid_app_name(app)) return std::nullopt;
  return app;
}

}  // namespace sb::gateway
