#include "backend/apps/chat_protocol.hpp"

#include <ctime>

#include <nlohmann/json.hpp>

#include "common/base64.hpp"

namespace sb::backend::chat {
namespace {

// Insertion-ordered so the wire shows "Type" first, as the seeds do.
using ojson = nlohmann::ordered_json;

std::string dump(const ojson& value) {
  // `replace` instead of the default `strict`: a stray invalid byte must not throw.
  return value.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

// Decodes one code point at text[i]; returns its length, or 0 if the sequence is invalid.
std::size_t decode_one(std::string_view text, std::size_t i, char32_t& cp) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char b0 = byte(i);
  std::size_t len;
  char32_t min;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > text.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    unsigned char b = byte(i + k);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

}  // namespace

bool valid_utf8(std::string_view text) {
  char32_t cp;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = decode_one(text, i, cp);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::size_t utf8_length(std::string_view text) {
  std::size_t count = 0;
  for (unsigned char c : text)
    if ((c & 0xC0) != 0x80) ++count;
  return count;
}

bool has_control_chars(std::string_view text) {
  char32_t cp;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = decode_one(text, i, cp);
    if (len == 0) return true;  // callers validate first; treat garbage as unsafe
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) return true;
    i += len;
  }
  return false;
}

RoomResult check_room(std::string_view raw) {
  if (raw.empty()) return {std::string(default_room), {}};
  if (raw.size() > max_room_bytes) return {{}, "room name longer than 64 bytes"};
  // UTF-8 is checked too: the room is echoed in JSON and used as a topic name.
  if (!valid_utf8(raw)) return {{}, "room name is not valid UTF-8"};
  if (has_control_chars(raw)) return {{}, "room name contains control characters"};
  return {std::string(raw), {}};
}

AliasResult check_alias(std::string_view raw) {
  while (!raw.empty() && is_ascii_space(raw.front())) raw.remove_prefix(1);
  while (!raw.empty() && is_ascii_space(raw.back())) raw.remove_suffix(1);
  if (raw.empty()) return {{}, "alias must not be empty"};
  if (!valid_utf8(raw)) return {{}, "alias is not valid UTF-8"};
  if (utf8_length(raw) > max_alias_chars) return {{}, "alias must be at most 32 characters"};
  if (has_control_chars(raw)) return {{}, "alias must not contain control characters"};
  return {std::string(raw), {}};
}

std::string default_alias(std::string_view wsid) {
  // WSIDs are ASCII, so the last 4 bytes are the last 4 characters.
  return "guest-" + std::string(wsid.size() > 4 ? wsid.substr(wsid.size() - 4) : wsid);
}

ClientRequest parse_client(std::string_view data, bool binary) {
  if (binary) return Invalid{"binary frames are not supported; send JSON text"};
  // Exceptions off: a parse failure yields a "discarded" value instead of throwing.
  auto parsed = nlohmann::json::parse(data, nullptr, false);
  if (parsed.is_discarded()) return Invalid{"message is not valid JSON"};
  if (!parsed.is_object()) return Invalid{"message must be a JSON object"};

  auto user = parsed.find("User");
  auto message = parsed.find("Message");
  bool has_user = user != parsed.end();
  bool has_message = message != parsed.end();
  if (has_user && has_message) return Invalid{"send either User or Message, not both"};
  if (!has_user && !has_message) return Invalid{"expected a User or Message field"};

  if (has_user) {
    if (!user->is_string()) return Invalid{"User must be a string"};
    auto checked = check_alias(user->get_ref<const std::string&>());
    if (!checked.error.empty()) return Invalid{std::move(checked.error)};
    return SetAlias{std::move(checked.alias)};
  }

  // "Author" is deliberately not read: the server shows the sender's stored alias, so a
  // client cannot post under someone else's name.
  if (!message->is_string()) return Invalid{"Message must be a string"};
  const auto& encoded = message->get_ref<const std::string&>();
  if (encoded.empty()) return Invalid{"Message is empty"};
  auto text = base64_decode(encoded);
  if (!text) return Invalid{"Message is not valid base64"};
  if (text->empty()) return Invalid{"Message is empty"};
  if (!valid_utf8(*text)) return Invalid{"Message is not UTF-8 text"};
  return SendMessage{encoded, std::move(*text)};
}

std::string format_sent(std::chrono::system_clock::time_point when) {
  auto secs = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%d %H:%M:%S", &tm);
  return out;
}

std::string status_json(std::string_view wsid, std::string_view worker_id) {
  ojson j;
  j["Type"] = "Status";
  j["WSID"] = wsid;
  j["Worker"] = worker_id;
  return dump(j);
}

std::string userlist_json(const std::vector<ChatMember>& members) {
  ojson users = ojson::array();
  for (const auto& m : members) users.push_back(ojson{{"Name", m.alias}});
  ojson j;
  j["Type"] = "userlist";
  j["Users"] = std::move(users);
  return dump(j);
}

std::string chat_json(const ChatMessage& message) {
  ojson j;
  j["Type"] = "Chat";
  j["Message"] = message.message;
  j["Author"] = message.author;
  j["Sent"] = message.sent;
  j["Room"] = message.room;
  j["WSID"] = message.wsid;
  j["Id"] = message.id;
  return dump(j);
}

std::string error_json(std::string_view reason) {
  ojson j;
  j["Type"] = "Error";
  j["Reason"] = reason;
  return dump(j);
}

std::string room_topic(std::string_view room) { return "chat:" + std::string(room); }

}  // namespace sb::backend::chat
