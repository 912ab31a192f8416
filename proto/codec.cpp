#include "proto/codec.hpp"

#include <msgpack.hpp>

#include <limits>
#include <type_traits>

namespace sb::proto {
namespace {

struct StringSink {
  std::string& out;
  void write(const char* data, std::size_t size) { out.append(data, size); }
};
using Packer = msgpack::packer<StringSink>;

void pack_str(Packer& p, const std::string& s) {
  p.pack_str(static_cast<std::uint32_t>(s.size()));
  p.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}
void pack_bin(Packer& p, const std::string& s) {
  p.pack_bin(static_cast<std::uint32_t>(s.size()));
  p.pack_bin_body(s.data(), static_cast<std::uint32_t>(s.size()));
}
void begin(Packer& p, Kind kind, std::uint32_t fields) {
  p.pack_array(fields + 1);
  p.pack(static_cast<std::uint8_t>(kind));
}

struct Encoder {
  Packer& p;
  void operator()(const Hello& m) {
    begin(p, Kind::hello, 3);
    p.pack(m.version);
    pack_str(p, m.worker_id);
    p.pack_array(static_cast<std::uint32_t>(m.apps.size()));
    for (const auto& app : m.apps) {
      p.pack_array(3);
      pack_str(p, app.name);
      p.pack(static_cast<std::uint8_t>(app.mode));
      p.pack(app.idle_timeout_ms);
    }
  }
  void operator()(const Welcome& m) {
    begin(p, Kind::welcome, 5);
    p.pack(m.version);
    pack_str(p, m.gateway_id);
    p.pack(m.epoch);
    p.pack(m.heartbeat_ms);
    p.pack(m.registered);
  }
  void operator()(const Heartbeat&) { begin(p, Kind::heartbeat, 0); }
  void operator()(const Bye&) { begin(p, Kind::bye, 0); }
  void operator()(const Open& m) {
    begin(p, Kind::open, 9);
    pack_str(p, m.wsid);
    pack_str(p, m.app);
    pack_str(p, m.path);
    pack_str(p, m.query);
    p.pack_map(static_cast<std::uint32_t>(m.headers.size()));
    for (const auto& [name, value] : m.headers) {
      pack_str(p, name);
      pack_str(p, value);
    }
    pack_str(p, m.session_id);
    pack_str(p, m.remote_address);
    p.pack(m.resume);
    p.pack(m.acked_seq);
  }
  void operator()(const Message& m) {
    begin(p, Kind::message, 4);
    pack_str(p, m.wsid);
    p.pack(m.seq);
    p.pack(m.binary);
    pack_bin(p, m.payload);
  }
  void operator()(const Close& m) {
    begin(p, Kind::close, 3);
    pack_str(p, m.wsid);
    p.pack(m.code);
    pack_str(p, m.reason);
  }
  void operator()(const Idle& m) {
    begin(p, Kind::idle, 1);
    pack_str(p, m.wsid);
  }
  void operator()(const Write& m) {
    begin(p, Kind::write, 4);
    p.pack_array(static_cast<std::uint32_t>(m.targets.size()));
    for (const auto& t : m.targets) pack_str(p, t);
    p.pack(m.binary);
    pack_bin(p, m.payload);
    pack_str(p, m.dedupe_key);
  }
  void operator()(const End& m) {
    begin(p, Kind::end, 3);
    pack_str(p, m.wsid);
    p.pack(m.code);
    pack_str(p, m.reason);
  }
  void operator()(const Subscribe& m) {
    begin(p, Kind::subscribe, 2);
    pack_str(p, m.wsid);
    pack_str(p, m.topic);
  }
  void operator()(const Unsubscribe& m) {
    begin(p, Kind::unsubscribe, 2);
    pack_str(p, m.wsid);
    pack_str(p, m.topic);
  }
  void operator()(const Publish& m) {
    begin(p, Kind::publish, 7);
    pack_str(p, m.topic);
    p.pack(m.binary);
    pack_bin(p, m.payload);
    pack_str(p, m.except_wsid);
    pack_str(p, m.dedupe_key);
    pack_str(p, m.order_key);
    p.pack(m.order_version);
  }
  void operator()(const Query& m) {
    begin(p, Kind::query, 1);
    pack_str(p, m.wsid);
  }
  void operator()(const Gone& m) {
    begin(p, Kind::gone, 1);
    pack_str(p, m.wsid);
  }
  void operator()(const Ack& m) {
    begin(p, Kind::ack, 2);
    pack_str(p, m.wsid);
    p.pack(m.seq);
  }
  void operator()(const Status& m) {
    begin(p, Kind::status, 2);
    pack_str(p, m.wsid);
    p.pack(m.open);
  }
};

// Reads the fields of one message array in order, recording the first problem.
class FieldReader {
 public:
  FieldReader(const msgpack::object_array& array, Kind kind) : array_(array), kind_(kind) {}

  bool str(std::string& out, const char* field) {
    const msgpack::object* o = next(field);
    if (!o) return false;
    if (o->type != msgpack::type::STR) return fail(field, "a string");
    out.assign(o->via.str.ptr, o->via.str.size);
    return true;
  }
  // Payloads: bin preferred, str accepted (some msgpack writers cannot emit bin).
  bool bytes(std::string& out, const char* field) {
    const msgpack::object* o = next(field);
    if (!o) return false;
    if (o->type == msgpack::type::BIN) out.assign(o->via.bin.ptr, o->via.bin.size);
    else if (o->type == msgpack::type::STR) out.assign(o->via.str.ptr, o->via.str.size);
    else return fail(field, "bytes");
    return true;
  }
  template <typename T>
  bool uint(T& out, const char* field) {
    const msgpack::object* o = next(field);
    if (!o) return false;
    if (o->type != msgpack::type::POSITIVE_INTEGER) return fail(field, "an unsigned integer");
    if (o->via.u64 > std::numeric_limits<T>::max()) return fail(field, "a smaller integer");
    out = static_cast<T>(o->via.u64);
    return true;
  }
  bool boolean(bool& out, const char* field) {
    const msgpack::object* o = next(field);
    if (!o) return false;
    if (o->type != msgpack::type::BOOLEAN) return fail(field, "a boolean");
    out = o->via.boolean;
    return true;
  }
  const msgpack::object* array(const char* field) {
    const msgpack::object* o = next(field);
    if (!o) return nullptr;
    if (o->type != msgpack::type::ARRAY) {
      fail(field, "an array");
      return nullptr;
    }
    return o;
  }
  const msgpack::object* map(const char* field) {
    const msgpack::object* o = next(field);
    if (!o) return nullptr;
    if (o->type != msgpack::type::MAP) {
      fail(field, "a map");
      return nullptr;
    }
    return o;
  }
  bool fail(const char* field, const char* expected) {
    if (error_.empty()) error_ = std::string(kind_name(kind_)) + "." + field + ": expected " + expected;
    return false;
  }
  const std::string& error() const { return error_; }
  // Fields added after version 1 shipped are optional: absent means the default.
  bool has_more() const { return index_ < array_.size; }

 private:
  const msgpack::object* next(const char* field) {
    if (index_ >= array_.size) {
      if (error_.empty()) error_ = std::string(kind_name(kind_)) + ": missing field " + field;
      return nullptr;
    }
    return &array_.ptr[index_++];
  }

  const msgpack::object_array& array_;
  Kind kind_;
  std::uint32_t index_ = 1;  // element 0 is the kind
  std::string error_;
};

bool read_str_list(FieldReader& r, const msgpack::object* list, std::vector<std::string>& out, const char* field) {
  if (!list) return false;
  out.reserve(list->via.array.size);
  for (std::uint32_t i = 0; i < list->via.array.size; ++i) {
    const auto& item = list->via.array.ptr[i];
    if (item.type != msgpack::type::STR) return r.fail(field, "strings");
    out.emplace_back(item.via.str.ptr, item.via.str.size);
  }
  return true;
}

bool read_apps(FieldReader& r, const msgpack::object* list, std::vector<AppInfo>& out) {
  if (!list) return false;
  for (std::uint32_t i = 0; i < list->via.array.size; ++i) {
    const auto& item = list->via.array.ptr[i];
    if (item.type != msgpack::type::ARRAY || item.via.array.size < 3) return r.fail("apps", "[name, mode, idle_ms]");
    const auto* f = item.via.array.ptr;
    if (f[0].type != msgpack::type::STR || f[1].type != msgpack::type::POSITIVE_INTEGER ||
        f[2].type != msgpack::type::POSITIVE_INTEGER || f[1].via.u64 > 1 || f[2].via.u64 > UINT32_MAX)
      return r.fail("apps", "[name, mode 0|1, idle_ms]");
    AppInfo app;
    app.name.assign(f[0].via.str.ptr, f[0].via.str.size);
    app.mode = static_cast<AppMode>(f[1].via.u64);
    app.idle_timeout_ms = static_cast<std::uint32_t>(f[2].via.u64);
    out.push_back(std::move(app));
  }
  return true;
}

bool read_headers(FieldReader& r, const msgpack::object* map,
                  std::vector<std::pair<std::string, std::string>>& out) {
  if (!map) return false;
  for (std::uint32_t i = 0; i < map->via.map.size; ++i) {
    const auto& kv = map->via.map.ptr[i];
    if (kv.key.type != msgpack::type::STR || kv.val.type != msgpack::type::STR)
      return r.fail("headers", "string keys and values");
    out.emplace_back(std::string(kv.key.via.str.ptr, kv.key.via.str.size),
                     std::string(kv.val.via.str.ptr, kv.val.via.str.size));
  }
  return true;
}

template <typename T>
Decoded finish(FieldReader& r, T&& value, bool ok) {
  if (!ok || !r.error().empty()) return Decoded{r.error().empty() ? std::string("malformed") : r.error()};
  return Decoded{Envelope(std::forward<T>(value))};
}

Decoded decode_object(const msgpack::object& root) {
  if (root.type != msgpack::type::ARRAY || root.via.array.size == 0)
    return Decoded{std::string("body is not a non-empty array")};
  const auto& array = root.via.array;
  if (array.ptr[0].type != msgpack::type::POSITIVE_INTEGER || array.ptr[0].via.u64 > 255)
    return Decoded{std::string("first element is not a message kind")};
  auto kind = static_cast<Kind>(array.ptr[0].via.u64);
  FieldReader r(array, kind);
  switch (kind) {
    case Kind::hello: {
      Hello m;
      bool ok = r.uint(m.version, "version") && r.str(m.worker_id, "worker_id") &&
                read_apps(r, r.array("apps"), m.apps);
      return finish(r, std::move(m), ok);
    }
    case Kind::welcome: {
      Welcome m;
      bool ok = r.uint(m.version, "version") && r.str(m.gateway_id, "gateway_id") && r.uint(m.epoch, "epoch") &&
                r.uint(m.heartbeat_ms, "heartbeat_ms");
      if (ok && r.has_more()) ok = r.boolean(m.registered, "registered");
      return finish(r, std::move(m), ok);
    }
    case Kind::heartbeat: return Decoded{Envelope(Heartbeat{})};
    case Kind::bye: return Decoded{Envelope(Bye{})};
    case Kind::open: {
      Open m;
      bool ok = r.str(m.wsid, "wsid") && r.str(m.app, "app") && r.str(m.path, "path") && r.str(m.query, "query") &&
                read_headers(r, r.map("headers"), m.headers) && r.str(m.session_id, "session_id") &&
                r.str(m.remote_address, "remote_address");
      if (ok && r.has_more()) ok = r.boolean(m.resume, "resume") && r.uint(m.acked_seq, "acked_seq");
      return finish(r, std::move(m), ok);
    }
    case Kind::message: {
      Message m;
      bool ok = r.str(m.wsid, "wsid") && r.uint(m.seq, "seq") && r.boolean(m.binary, "binary") &&
                r.bytes(m.payload, "payload");
      return finish(r, std::move(m), ok);
    }
    case Kind::close: {
      Close m;
      bool ok = r.str(m.wsid, "wsid") && r.uint(m.code, "code") && r.str(m.reason, "reason");
      return finish(r, std::move(m), ok);
    }
    case Kind::idle: {
      Idle m;
      bool ok = r.str(m.wsid, "wsid");
      return finish(r, std::move(m), ok);
    }
    case Kind::write: {
      Write m;
      bool ok = read_str_list(r, r.array("targets"), m.targets, "targets") && r.boolean(m.binary, "binary") &&
                r.bytes(m.payload, "payload");
      if (ok && r.has_more()) ok = r.str(m.dedupe_key, "dedupe_key");
      return finish(r, std::move(m), ok);
    }
    case Kind::end: {
      End m;
      bool ok = r.str(m.wsid, "wsid") && r.uint(m.code, "code") && r.str(m.reason, "reason");
      return finish(r, std::move(m), ok);
    }
    case Kind::subscribe: {
      Subscribe m;
      bool ok = r.str(m.wsid, "wsid") && r.str(m.topic, "topic");
      return finish(r, std::move(m), ok);
    }
    case Kind::unsubscribe: {
      Unsubscribe m;
      bool ok = r.str(m.wsid, "wsid") && r.str(m.topic, "topic");
      return finish(r, std::move(m), ok);
    }
    case Kind::publish: {
      Publish m;
      bool ok = r.str(m.topic, "topic") && r.boolean(m.binary, "binary") && r.bytes(m.payload, "payload") &&
                r.str(m.except_wsid, "except_wsid");
      if (ok && r.has_more()) ok = r.str(m.dedupe_key, "dedupe_key");
      if (ok && r.has_more()) ok = r.str(m.order_key, "order_key") && r.uint(m.order_version, "order_version");
      return finish(r, std::move(m), ok);
    }
    case Kind::query: {
      Query m;
      bool ok = r.str(m.wsid, "wsid");
      return finish(r, std::move(m), ok);
    }
    case Kind::gone: {
      Gone m;
      bool ok = r.str(m.wsid, "wsid");
      return finish(r, std::move(m), ok);
    }
    case Kind::ack: {
      Ack m;
      bool ok = r.str(m.wsid, "wsid") && r.uint(m.seq, "seq");
      return finish(r, std::move(m), ok);
    }
    case Kind::status: {
      Status m;
      bool ok = r.str(m.wsid, "wsid") && r.boolean(m.open, "open");
      return finish(r, std::move(m), ok);
    }
  }
  return Decoded{"unknown message kind " + std::to_string(array.ptr[0].via.u64)};
}

}  // namespace

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::hello: return "HELLO";
    case Kind::welcome: return "WELCOME";
    case Kind::heartbeat: return "HEARTBEAT";
    case Kind::bye: return "BYE";
    case Kind::open: return "OPEN";
    case Kind::message: return "MESSAGE";
    case Kind::close: return "CLOSE";
    case Kind::idle: return "IDLE";
    case Kind::write: return "WRITE";
    case Kind::end: return "END";
    case Kind::subscribe: return "SUBSCRIBE";
    case Kind::unsubscribe: return "UNSUBSCRIBE";
    case Kind::publish: return "PUBLISH";
    case Kind::query: return "QUERY";
    case Kind::gone: return "GONE";
    case Kind::ack: return "ACK";
    case Kind::status: return "STATUS";
  }
  return "UNKNOWN";
}

Kind kind_of(const Envelope& envelope) {
  static constexpr Kind kinds[] = {Kind::hello,  Kind::welcome,   Kind::heartbeat,   Kind::bye,     Kind::open,
                                   Kind::message, Kind::close,    Kind::idle,        Kind::write,   Kind::end,
                                   Kind::subscribe, Kind::unsubscribe, Kind::publish, Kind::query, Kind::gone,
                                   Kind::ack,    Kind::status};
  static_assert(std::variant_size_v<Envelope> == std::size(kinds));
  return kinds[envelope.index()];
}

// Roughly the encoded size of the common messages (headers and small fields under 48 bytes):
// reserved up front, the body is one allocation instead of a string doubling from 15 bytes.
std::size_t size_hint(const Envelope& envelope) {
  return std::visit(
      [](const auto& m) {
        std::size_t n = 48;
        if constexpr (requires { m.payload; }) n += m.payload.size();
        if constexpr (requires { m.wsid; }) n += m.wsid.size();
        if constexpr (requires { m.targets; })
          for (const auto& t : m.targets) n += t.size() + 2;
        return n;
      },
      envelope);
}

void encode_into(const Envelope& envelope, std::string& out) {
  out.reserve(out.size() + size_hint(envelope));
  StringSink sink{out};
  Packer packer(sink);
  std::visit(Encoder{packer}, envelope);
}

std::string encode(const Envelope& envelope) {
  std::string out;
  encode_into(envelope, out);
  return out;
}

Decoded decode(std::string_view bytes, const DecodeLimits& limits) {
  if (bytes.empty()) return Decoded{std::string("empty body")};
  if (bytes.size() > limits.max_bytes)
    return Decoded{"body of " + std::to_string(bytes.size()) + " bytes exceeds limit " +
                   std::to_string(limits.max_bytes)};
  // One zone per thread, emptied after every message: a fresh zone per message would malloc
  // and free an 8 KiB chunk each time (glibc then consolidates its fast bins on every call).
  // clear() keeps the first chunk and frees any a large message added, so memory stays bounded.
  thread_local msgpack::zone zone;
  struct ClearAfter {
    msgpack::zone& z;
    ~ClearAfter() { z.clear(); }
  } clear_after{zone};
  // Strings and bins point into `bytes` instead of being copied into the zone: decode_object
  // copies each into its field once, and `bytes` outlives this call.
  auto reference_all = [](msgpack::type::object_type, std::size_t, void*) { return true; };
  try {
    std::size_t offset = 0;
    msgpack::unpack_limit unpack_limits(limits.max_array, limits.max_map, limits.max_string, limits.max_string,
                                        limits.max_string, limits.max_depth);
    msgpack::object object =
        msgpack::unpack(zone, bytes.data(), bytes.size(), offset, reference_all, nullptr, unpack_limits);
    if (offset != bytes.size())
      return Decoded{std::to_string(bytes.size() - offset) + " trailing bytes after the message"};
    return decode_object(object);
  } catch (const msgpack::insufficient_bytes&) {
    return Decoded{std::string("truncated msgpack")};
  } catch (const msgpack::depth_size_overflow&) {
    return Decoded{std::string("nesting deeper than limit")};
  } catch (const msgpack::size_overflow& e) {
    return Decoded{std::string("element count or size over limit: ") + e.what()};
  } catch (const std::exception& e) {
    return Decoded{std::string("malformed msgpack: ") + e.what()};
  }
}

}  // namespace sb::proto
