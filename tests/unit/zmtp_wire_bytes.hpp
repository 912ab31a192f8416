// Bytes a ZMTP peer sends, for the link and router tests: built with the codec where it has
// the piece, by hand where a test needs what the codec would never write; and a temp directory.
#pragma once
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <system_error>

#include "common/zmtp_codec.hpp"

namespace sb::zmtp::test_bytes {

// A greeting: signature, version, mechanism (zero-padded to 20), as-server, filler.
inline std::string greeting(unsigned char major = 3, unsigned char minor = 1, std::string_view mechanism = "NULL",
                            bool as_server = false) {
  std::string out(greeting_size, '\0');
  out[0] = static_cast<char>(0xff);
  out[9] = 0x7f;
  out[10] = static_cast<char>(major);
  out[11] = static_cast<char>(minor);
  std::memcpy(&out[12], mechanism.data(), std::min<std::size_t>(mechanism.size(), 20));
  out[32] = as_server ? 1 : 0;
  return out;
}

inline std::string u32(std::uint32_t v) {
  std::string out;
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
  return out;
}

inline std::string property(std::string_view name, std::string_view value) {
  return std::string(1, static_cast<char>(name.size())) + std::string(name) +
         u32(static_cast<std::uint32_t>(value.size())) + std::string(value);
}

inline std::string command_frame(std::string_view name, std::string_view data) {
  std::string out;
  append_command(out, name, data);
  return out;
}

inline std::string frame(std::string_view body, bool more = false) {
  std::string out;
  append_frame(out, body, more);
  return out;
}

inline std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

// A fresh directory for a test's ipc:// files, removed with everything in it.
struct TempDir {
  std::string path;
  explicit TempDir(const char* prefix = "sb-zmtp") {
    std::string pattern = (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::filesystem::filesystem_error("mkdtemp", std::error_code(errno, std::generic_category()));
    path = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

}  // namespace sb::zmtp::test_bytes
