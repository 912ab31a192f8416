// The socket-level pieces both ends of the ZMTP pool share: where an endpoint points, and the
// bytes queued for one connection. No event loop here; each end drives them from its own.
#pragma once
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>

namespace sb::zmtp {

// tcp://HOST:PORT (HOST may be [IPv6]) or ipc://PATH (a leading '@': Linux's abstract namespace).
struct StreamEndpoint {
  bool unix_socket = false;
  std::string path;  // ipc://
  std::string host;  // tcp://, brackets removed
  std::string port;  // tcp://, as written
};

// Splits `endpoint`; on failure `error` says why ("expected tcp://HOST:PORT", "the path must
// have 1..107 characters", "only tcp:// and ipc://"). Ports and hosts are the caller's to judge.
bool parse_stream_endpoint(const std::string& endpoint, StreamEndpoint& out, std::string& error);

// The address of an ipc:// path; returns its length for bind/connect.
socklen_t unix_address(const std::string& path, sockaddr_un& out);

// getaddrinfo hints' family: IPv4 unless the host is an IPv6 literal, as libzmq without
// ZMQ_IPV6, so a name that resolves to ::1 first still meets a peer on 0.0.0.0.
int address_family(const std::string& host);

// Bytes queued for one connection, with where each message ends, so a high-water mark can
// count messages. Writes go straight to the socket; what the kernel refuses stays queued.
class SendBuffer {
 public:
  enum class Write { done, blocked, failed };  // blocked: EAGAIN, wait for writability

  // One message: a frame per body, MORE on all but the last.
  void append_message(const std::string* bodies, std::size_t count);
  // Bytes that are not a message (handshake, commands): not counted against the mark.
  void append_raw(std::string_view bytes);
  void append_command(std::string_view name, std::string_view data);

  // Writes until everything is out or the kernel refuses more. On failed, errno says why (0:
  // the socket took zero bytes).
  Write write_to(int fd);

  std::size_t messages() const { return message_ends_.size(); }  // not yet fully written
  std::size_t unwritten() const { return bytes_.size() - start_; }
  void clear();

 private:
  std::string bytes_;
  std::size_t start_ = 0;                 // first byte not yet written
  std::deque<std::size_t> message_ends_;  // end offset in bytes_ of each queued message
};

}  // namespace sb::zmtp
