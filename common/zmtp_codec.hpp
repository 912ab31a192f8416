// ZMTP 3.1 (rfc.zeromq.org/spec/37), ZeroMQ's wire protocol, with the NULL mechanism: the
// handshake, frames, commands and an incremental parser. The worker's DEALER link and the
// gateway's ROUTER both speak it on their own loops. Pure: no sockets, so every branch is
// tested with plain strings.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sb::zmtp {

constexpr std::size_t greeting_size = 64;

// Our greeting (version 3.1, NULL, not as-server) followed by the READY command that names our
// socket type and, unless empty, our routing id: everything a peer sends before its first message.
std::string handshake(std::string_view socket_type, std::string_view routing_id);

// Appends one frame (MORE set unless it is the message's last).
void append_frame(std::string& out, std::string_view body, bool more);
// Appends a command frame: name plus raw data (e.g. PONG's context).
void append_command(std::string& out, std::string_view name, std::string_view data);

struct Frame {
  bool more = false;
  bool command = false;
  std::string_view body;  // points into the Decoder's buffer until its next prepare()/consume
};

// A parsed command: its name and the rest of its body.
struct Command {
  std::string_view name;
  std::string_view data;
};
bool parse_command(std::string_view body, Command& out);
// The value of property `name` in READY's data (metadata), or false if absent or malformed.
bool find_property(std::string_view metadata, std::string_view name, std::string_view& value);

class Decoder {
 public:
  enum class Status { incomplete, greeting, frame, error };

  explicit Decoder(std::uint64_t max_frame_bytes) : max_frame_(max_frame_bytes) {}

  // Room for at least `n` more bytes at the end of the buffer; write there, then commit().
  char* prepare(std::size_t n);
  void commit(std::size_t n) { end_ += n; }

  // The next unit: first the peer's greeting (once), then frames. A Frame's body stays valid
  // until the next prepare(). After error, error() says why and the stream is unusable.
  Status next(Frame& out);
  const std::string& error() const { return error_; }
  std::size_t buffered() const { return end_ - start_; }
  void reset();

 private:
  std::string buffer_;
  std::size_t start_ = 0;  // first unparsed byte
  std::size_t end_ = 0;    // one past the last byte read
  bool greeted_ = false;
  std::uint64_t max_frame_;
  std::string error_;
};

}  // namespace sb::zmtp
