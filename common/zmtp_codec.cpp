#include "common/zmtp_codec.hpp"

#include <algorithm>
#include <cstring>

namespace sb::zmtp {
namespace {

constexpr unsigned char flag_more = 0x01;
constexpr unsigned char flag_long = 0x02;
constexpr unsigned char flag_command = 0x04;

void append_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

void append_header(std::string& out, unsigned char flags, std::size_t size) {
  if (size <= 255) {
    out.push_back(static_cast<char>(flags));
    out.push_back(static_cast<char>(size));
    return;
  }
  out.push_back(static_cast<char>(flags | flag_long));
  auto v = static_cast<std::uint64_t>(size);
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

}  // namespace

std::string handshake(std::string_view socket_type, std::string_view routing_id) {
  std::string out(greeting_size, '\0');
  out[0] = static_cast<char>(0xff);  // signature: 0xff, 8 bytes of padding, 0x7f
  out[9] = 0x7f;
  out[10] = 3;  // version 3.1
  out[11] = 1;
  std::memcpy(&out[12], "NULL", 4);  // mechanism, zero-padded to 20 bytes; as-server 0; filler
  std::string ready;
  ready.push_back(5);
  ready += "READY";
  auto property = [&](std::string_view name, std::string_view value) {
    ready.push_back(static_cast<char>(name.size()));
    ready += name;
    append_u32(ready, static_cast<std::uint32_t>(value.size()));
    ready += value;
  };
  property("Socket-Type", socket_type);
  if (!routing_id.empty()) property("Identity", routing_id);  // a ROUTER addresses us by this, across reconnects
  append_header(out, flag_command, ready.size());
  out += ready;
  return out;
}

void append_frame(std::string& out, std::string_view body, bool more) {
  append_header(out, more ? flag_more : 0, body.size());
  out += body;
}

void append_command(std::string& out, std::string_view name, std::string_view data) {
  append_header(out, flag_command, 1 + name.size() + data.size());
  out.push_back(static_cast<char>(name.size()));
  out += name;
  out += data;
}

bool parse_command(std::string_view body, Command& out) {
  if (body.empty()) return false;
  auto name_size = static_cast<unsigned char>(body[0]);
  if (name_size == 0 || body.size() < 1u + name_size) return false;
  out.name = body.substr(1, name_size);
  out.data = body.substr(1 + name_size);
  return true;
}

bool find_property(std::string_view metadata, std::string_view name, std::string_view& value) {
  while (!metadata.empty()) {
    auto name_size = static_cast<unsigned char>(metadata[0]);
    if (metadata.size() < 1u + name_size + 4) return false;
    auto this_name = metadata.substr(1, name_size);
    std::uint32_t value_size = 0;
    for (std::size_t i = 0; i < 4; ++i)
      value_size = (value_size << 8) | static_cast<unsigned char>(metadata[1 + name_size + i]);
    auto rest = metadata.substr(1 + name_size + 4);
    if (rest.size() < value_size) return false;
    if (iequals(this_name, name)) {  // property names are case-insensitive (ZMTP 3.1)
      value = rest.substr(0, value_size);
      return true;
    }
    metadata = rest.substr(value_size);
  }
  return false;
}

char* Decoder::prepare(std::size_t n) {
  // Move the unparsed tail to the front once it is no longer small, so the buffer stays bounded
  // by one frame plus one read instead of growing with the stream.
  if (start_ > 0 && (start_ == end_ || start_ >= buffer_.size() / 2)) {
    std::memmove(buffer_.data(), buffer_.data() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  if (buffer_.size() < end_ + n) buffer_.resize(std::max(end_ + n, buffer_.size() * 2));
  return buffer_.data() + end_;
}

void Decoder::reset() {
  start_ = end_ = 0;
  greeted_ = false;
  error_.clear();
  if (buffer_.capacity() > (1u << 20)) std::string().swap(buffer_);  // give back a large frame's room
}

Decoder::Status Decoder::next(Frame& out) {
  if (!error_.empty()) return Status::error;
  const auto* data = reinterpret_cast<const unsigned char*>(buffer_.data() + start_);
  std::size_t available = end_ - start_;
  if (!greeted_) {
    // Check the signature as soon as it is here, so a non-ZMTP peer fails fast.
    if (available >= 1 && data[0] != 0xff) return error_ = "peer is not ZMTP (bad signature)", Status::error;
    if (available >= 10 && (data[9] & 1) == 0) return error_ = "peer is not ZMTP (bad signature)", Status::error;
    if (available >= 11 && data[10] < 3)
      return error_ = "peer speaks ZMTP " + std::to_string(data[10]) + ".x, need 3", Status::error;
    if (available < greeting_size) return Status::incomplete;
    std::string_view mechanism(reinterpret_cast<const char*>(data + 12), 20);
    if (mechanism != std::string_view("NULL\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20))
      return error_ = "peer wants a security mechanism other than NULL", Status::error;
    greeted_ = true;
    start_ += greeting_size;
    return Status::greeting;
  }
  if (available < 2) return Status::incomplete;
  unsigned char flags = data[0];
  if (flags & ~(flag_more | flag_long | flag_command))
    return error_ = "bad frame flags " + std::to_string(flags), Status::error;
  std::size_t header = (flags & flag_long) ? 9 : 2;
  if (available < header) return Status::incomplete;
  std::uint64_t size = 0;
  if (flags & flag_long) {
    for (std::size_t i = 1; i < 9; ++i) size = (size << 8) | data[i];
  } else {
    size = data[1];
  }
  if (size > max_frame_)
    return error_ = "frame of " + std::to_string(size) + " bytes, over the limit of " + std::to_string(max_frame_),
           Status::error;
  if (available - header < size) return Status::incomplete;
  out.more = (flags & flag_more) != 0;
  out.command = (flags & flag_command) != 0;
  out.body = std::string_view(buffer_.data() + start_ + header, static_cast<std::size_t>(size));
  start_ += header + static_cast<std::size_t>(size);
  return Status::frame;
}

}  // namespace sb::zmtp
