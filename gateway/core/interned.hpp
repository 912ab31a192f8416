// A string the core keeps once (an app name, a worker's routing id) and sessions point at:
// 8 bytes per session instead of a 32-byte std::string plus its heap copy. Empty = none.
#pragma once
#include <string>
#include <string_view>

namespace sb::gateway {

class Interned {
 public:
  Interned() = default;
  explicit Interned(const std::string& kept) : text_(&kept) {}  // `kept` must outlive every copy
  const std::string& str() const { return text_ ? *text_ : empty_string(); }
  operator const std::string&() const { return str(); }
  bool empty() const { return text_ == nullptr; }
  void clear() { text_ = nullptr; }
  friend bool operator==(const Interned& a, const Interned& b) { return a.str() == b.str(); }
  friend bool operator==(const Interned& a, std::string_view b) { return a.str() == b; }

 private:
  static const std::string& empty_string() {
    static const std::string none;
    return none;
  }
  const std::string* text_ = nullptr;
};

}  // namespace sb::gateway
