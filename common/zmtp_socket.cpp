#include "common/zmtp_socket.hpp"

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "common/zmtp_codec.hpp"

namespace sb::zmtp {

bool parse_stream_endpoint(const std::string& endpoint, StreamEndpoint& out, std::string& error) {
  if (endpoint.rfind("ipc://", 0) == 0) {
    out.unix_socket = true;
    out.path = endpoint.substr(6);
    if (out.path.empty() || out.path.size() >= sizeof(sockaddr_un::sun_path)) {
      error = "the path must have 1.." + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " characters";
      return false;
    }
    return true;
  }
  if (endpoint.rfind("tcp://", 0) != 0) {
    error = "only tcp:// and ipc://";
    return false;
  }
  std::string rest = endpoint.substr(6);
  auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) {
    error = "expected tcp://HOST:PORT";
    return false;
  }
  out.host = rest.substr(0, colon);
  out.port = rest.substr(colon + 1);
  if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']')
    out.host = out.host.substr(1, out.host.size() - 2);
  return true;
}

socklen_t unix_address(const std::string& path, sockaddr_un& out) {
  out = {};
  out.sun_family = AF_UNIX;
  std::memcpy(out.sun_path, path.data(), path.size());
  if (!path.empty() && path[0] == '@') {
    out.sun_path[0] = '\0';  // abstract: the name is exactly these bytes, no terminator
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  }
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
}

int address_family(const std::string& host) { return host.find(':') != std::string::npos ? AF_INET6 : AF_INET; }

void SendBuffer::append_message(const std::string* bodies, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) append_frame(bytes_, bodies[i], i + 1 < count);
  message_ends_.push_back(bytes_.size());
}

void SendBuffer::append_raw(std::string_view bytes) { bytes_ += bytes; }

void SendBuffer::append_command(std::string_view name, std::string_view data) {
  zmtp::append_command(bytes_, name, data);
}

SendBuffer::Write SendBuffer::write_to(int fd) {
  Write result = Write::done;
  while (unwritten() > 0) {
    ssize_t n = ::send(fd, bytes_.data() + start_, unwritten(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      start_ += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      result = Write::blocked;
      break;
    }
    if (n == 0) errno = 0;
    return Write::failed;
  }
  while (!message_ends_.empty() && message_ends_.front() <= start_) message_ends_.pop_front();
  if (unwritten() == 0) {
    clear();
  } else if (start_ > bytes_.size() / 2) {  // keep the buffer bounded by what is unwritten
    bytes_.erase(0, start_);
    for (auto& end : message_ends_) end -= start_;
    start_ = 0;
  }
  return result;
}

void SendBuffer::clear() {
  bytes_.clear();
  start_ = 0;
  message_ends_.clear();
}

}  // namespace sb::zmtp
