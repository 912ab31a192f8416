// The chat app's browser protocol (design.md §4, seeds 001/003), as pure functions:
// validation of rooms, aliases and message text, parsing of client JSON and building of
// server JSON. No I/O, no store, no exceptions out of any function here.
//
// Client -> server:  {"User": alias}                     set the alias
//                    {"Message": base64(text), "Author": a}  send a message (Author ignored)
// Server -> client:  {"Type":"Status","WSID":w,"Worker":id}
//                    {"Type":"userlist","Users":[{"Name":alias},...]}
//                    {"Type":"Chat","Message":b64,"Author":a,"Sent":"YYYY-MM-DD HH:MM:SS",
//                     "Room":r,"WSID":w,"Id":n}
//                    {"Type":"Error","Reason":text}
#pragma once
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "backend/store/chat_store.hpp"

namespace sb::backend::chat {

inline constexpr std::string_view default_room = "default";
inline constexpr std::size_t max_room_bytes = 64;      // keeps topics and rows small
inline constexpr std::size_t max_alias_chars = 32;     // fits the online list
inline constexpr int history_limit = 50;               // messages replayed on join

// Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view text);
// Number of code points; only meaningful for valid UTF-8.
std::size_t utf8_length(std::string_view text);
// True if the (valid UTF-8) text holds C0 controls, DEL or C1 controls (U+0080..U+009F).
bool has_control_chars(std::string_view text);

// "?room=" value -> room name, or an error reason (the socket is then refused with 1008).
// Absent or empty means "default".
struct RoomResult {
  std::string room;
  std::string error;  // empty when valid
};
RoomResult check_room(std::string_view raw);

// Alias after trimming ASCII whitespace; error reason when it is not 1..32 characters of
// valid UTF-8 without control characters.
struct AliasResult {
  std::string alias;
  std::string error;
};
AliasResult check_alias(std::string_view raw);

// Default alias for a new member: "guest-" + the last 4 characters of the WSID.
std::string default_alias(std::string_view wsid);

// One client message, parsed and validated.
struct SetAlias {
  std::string alias;  // validated and trimmed
};
struct SendMessage {
  std::string base64;  // as the client sent it (validated canonical base64)
  std::string text;    // decoded, valid non-empty UTF-8
};
struct Invalid {
  std::string reason;  // sent back as {"Type":"Error","Reason":...}
};
using ClientRequest = std::variant<SetAlias, SendMessage, Invalid>;
ClientRequest parse_client(std::string_view data, bool binary);

// "YYYY-MM-DD HH:MM:SS" in UTC.
std::string format_sent(std::chrono::system_clock::time_point when);

// Server -> client JSON. Never throws on odd bytes: invalid UTF-8 is replaced, not fatal.
std::string status_json(std::string_view wsid, std::string_view worker_id);
std::string userlist_json(const std::vector<ChatMember>& members);
std::string chat_json(const ChatMessage& message);
std::string error_json(std::string_view reason);

// Topic the gateways use to fan a room out: "chat:<room>".
std::string room_topic(std::string_view room);

}  // namespace sb::backend::chat
