// WebSocket close codes used by Switchboard, in one place (RFC 6455 §7.4, IANA registry).
#pragma once
#include <cstdint>
#include <string_view>

namespace sb::close_code {

inline constexpr std::uint16_t normal = 1000;           // the peer is done
inline constexpr std::uint16_t going_away = 1001;       // gateway shutting down
inline constexpr std::uint16_t protocol_error = 1002;   // malformed WebSocket framing
inline constexpr std::uint16_t unsupported_data = 1003; // e.g. binary to a text-only app
inline constexpr std::uint16_t no_status = 1005;        // never sent: "no code in the close frame"
inline constexpr std::uint16_t abnormal = 1006;         // never sent: "TCP dropped without a close"
inline constexpr std::uint16_t invalid_payload = 1007;  // text frame that is not UTF-8
inline constexpr std::uint16_t policy_violation = 1008; // refused by the app (on_open said no)
inline constexpr std::uint16_t message_too_big = 1009;  // announced length over --max-message-bytes
inline constexpr std::uint16_t internal_error = 1011;   // a bug or resource failure on our side
inline constexpr std::uint16_t service_restart = 1012;  // dedicated worker lost
inline constexpr std::uint16_t try_again_later = 1013;  // no worker serves this app right now

// Application codes. 4000-4499: the client may retry; 4500-4999: it should not.
inline constexpr std::uint16_t slow_consumer = 4008;    // send queue over --max-queue-bytes
inline constexpr std::uint16_t ping_timeout = 4009;     // a keep-alive ping stayed unanswered: peer presumably gone
inline constexpr std::uint16_t unknown_app = 4504;      // path names no app

// True for codes a server may put on the wire (1005/1006/1015 are reserved for reporting).
constexpr bool sendable(std::uint16_t code) {
  if (code == 1000 || code == 1001 || code == 1002 || code == 1003) return true;
  if (code >= 1007 && code <= 1014) return true;
  return code >= 3000 && code <= 4999;
}

std::string_view describe(std::uint16_t code);

}  // namespace sb::close_code
