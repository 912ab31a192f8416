// Gateway pure parts: frames, routes, send queue, option parsing.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>

#include "gateway/core/gateway_config.hpp"
#include "gateway/core/routes.hpp"
#include "gateway/core/send_queue.hpp"
#include "gateway/core/unacked_events.hpp"
#include "gateway/core/ws_frame.hpp"

using namespace sb;
using namespace sb::gateway;

TEST_CASE("frame headers use the shortest length encoding") {
  auto f0 = make_frame("", false);
  CHECK(f0 == std::string("\x81\x00", 2));
  auto f125 = make_frame(std::string(125, 'a'), true);
  CHECK(static_cast<unsigned char>(f125[0]) == 0x82);
  CHECK(static_cast<unsigned char>(f125[1]) == 125);
  CHECK(f125.size() == 127);
  auto f126 = make_frame(std::string(126, 'a'), false);
  CHECK(static_cast<unsigned char>(f126[1]) == 126);
  CHECK(static_cast<unsigned char>(f126[2]) == 0);
  CHECK(static_cast<unsigned char>(f126[3]) == 126);
  CHECK(f126.size() == 130);
  auto f65535 = make_frame(std::string(65535, 'a'), false);
  CHECK(static_cast<unsigned char>(f65535[1]) == 126);
  CHECK(f65535.size() == 65535 + 4);
  auto f65536 = make_frame(std::string(65536, 'a'), false);
  CHECK(static_cast<unsigned char>(f65536[1]) == 127);
  CHECK(f65536.size() == 65536 + 10);
  CHECK(static_cast<unsigned char>(f65536[7]) == 1);  // 0x00010000 big-endian
  CHECK(static_cast<unsigned char>(f65536[8]) == 0);
}

TEST_CASE("paths name apps directly or IRIS-style") {
  CHECK(app_for_path("/chat") == "chat");
  CHECK(app_for_path("/chat/") == "chat");
  CHECK(app_for_path("/echo") == "echo");
  CHECK(app_for_path("/csp/user/Chat.Server.cls") == "chat");
  CHECK(app_for_path("/csp/samples/Echo.Server.cls") == "echo");
  CHECK_FALSE(app_for_path("/"));
  CHECK_FALSE(app_for_path(""));
  CHECK_FALSE(app_for_path("/a/b"));
  CHECK_FALSE(app_for_path("/csp/user/Chat.cls"));
  CHECK_FALSE(app_for_path("/csp//Chat.Server.cls"));
  CHECK_FALSE(app_for_path("/Chat"));  // app names are lower case
  CHECK_FALSE(app_for_path("/" + std::string(33, 'a')));
}

TEST_CASE("send queue is bounded in bytes and keeps order") {
  SendQueue q;
  auto frame = [](std::string s) { return std::make_shared<const std::string>(std::move(s)); };
  CHECK(q.push(frame("aaa"), 10));
  CHECK(q.push(frame("bbbb"), 10));
  CHECK_FALSE(q.push(frame("cccc"), 10));  // 11 > 10: refused, nothing queued
  CHECK(q.bytes() == 7);
  std::string out;
  CHECK(q.take(out, 5) == 1);
  CHECK(out == "aaa");
  CHECK(q.take(out, 100) == 1);
  CHECK(out == "aaabbbb");
  CHECK(q.empty());
  CHECK(q.bytes() == 0);
  CHECK(q.frames() == 0);
  CHECK(q.push(frame("dd"), 10));  // usable again once drained
  CHECK(q.frames() == 1);
  q.clear();
  CHECK(q.empty());
  // An empty queue is one pointer: every idle socket has one.
  CHECK(sizeof(SendQueue) == sizeof(void*));
}

TEST_CASE("unacknowledged events: an ACK forgets everything up to its seq, bytes follow") {
  UnackedEvents u;
  CHECK(u.empty());
  CHECK(u.begin() == u.end());
  u.push({0, "open"});
  u.push({1, "m1"});
  u.push({2, "m22"});
  CHECK(u.size() == 3);
  CHECK(u.bytes() == 9);
  u.acknowledge_through(1);
  CHECK(u.size() == 1);
  CHECK(u.front().seq == 2);
  CHECK(u.bytes() == 3);
  u.acknowledge_through(1);  // a repeated, older ACK changes nothing
  CHECK(u.size() == 1);
  u.acknowledge_through(5);
  CHECK(u.empty());
  CHECK(u.bytes() == 0);
  CHECK(sizeof(UnackedEvents) == sizeof(void*));
}

TEST_CASE("gateway options: defaults, CLI over environment over file, validation") {
  auto defaults = parse_gateway_options({}, {});
  REQUIRE(defaults.config);
  CHECK(defaults.config->listen == "127.0.0.1:8080");
  CHECK(defaults.config->pool == std::vector<std::string>{"tcp://127.0.0.1:5555"});
  CHECK(defaults.config->gateway_id == "gw-8080");
  CHECK(defaults.config->max_message_bytes == 65536);

  auto help = parse_gateway_options({"--help"}, {});
  CHECK_FALSE(help.config);
  CHECK(help.exit_code == 0);
  CHECK(help.message.find("--max-message-bytes") != std::string::npos);

  std::string path = "gateway_options_test.ini";
  {
    std::ofstream file(path);
    file << "max-message-bytes = 2048\nlisten = 127.0.0.1:9000\ngateway-id = fromfile\n";
  }
  auto layered = parse_gateway_options({"--config", path, "--gateway-id", "cli"},
                                       {{"SWITCHBOARD_LISTEN", "127.0.0.1:9001"}, {"SWITCHBOARD_GATEWAY_ID", "env"}});
  std::remove(path.c_str());
  REQUIRE(layered.config);
  CHECK(layered.config->gateway_id == "cli");            // CLI wins
  CHECK(layered.config->listen == "127.0.0.1:9001");     // environment over file
  CHECK(layered.config->max_message_bytes == 2048);      // file over default
  auto drain = parse_gateway_options({"--pool-drain-batch", "64"}, {});
  REQUIRE(drain.config);
  CHECK(drain.config->pool_drain_batch == 64);
  CHECK(drain.config->max_pending_handshakes == 256);  // the default
  CHECK(drain.config->rx_buffer_bytes == 128);         // the default
  auto rx = parse_gateway_options({"--rx-buffer-bytes", "4096"}, {});
  REQUIRE(rx.config);
  CHECK(rx.config->rx_buffer_bytes == 4096);
  CHECK(rx.config->socket_send_buffer_bytes == 128 * 1024);  // the default
  CHECK(rx.config->max_socket_writes_per_turn == 64);  // the default
  auto unbounded = parse_gateway_options({"--max-socket-writes-per-turn", "0"}, {});
  REQUIRE(unbounded.config);
  CHECK(unbounded.config->max_socket_writes_per_turn == 0);
  auto autotuned = parse_gateway_options({"--socket-send-buffer-bytes", "0"}, {});
  REQUIRE(autotuned.config);
  CHECK(autotuned.config->socket_send_buffer_bytes == 0);
  CHECK_FALSE(drain.config->reuse_port);
  auto shared = parse_gateway_options({"--reuse-port", "--gateway-id", "gw-a"}, {});
  REQUIRE(shared.config);
  CHECK(shared.config->reuse_port);
  auto from_env = parse_gateway_options({"--gateway-id", "gw-b"}, {{"SWITCHBOARD_REUSE_PORT", "true"}});
  REQUIRE(from_env.config);
  CHECK(from_env.config->reuse_port);

  // Workers anywhere over TCP and workers on this host over a Unix socket, one ROUTER.
  auto pools = parse_gateway_options({"--pool", "tcp://0.0.0.0:7001, ipc:///run/sb/pool", "--pool", "tcp://[::1]:7002"}, {});
  REQUIRE(pools.config);
  CHECK(pools.config->pool ==
        std::vector<std::string>{"tcp://0.0.0.0:7001", "ipc:///run/sb/pool", "tcp://[::1]:7002"});
  auto pool_env = parse_gateway_options({}, {{"SWITCHBOARD_POOL", "ipc:///tmp/a,tcp://127.0.0.1:1"}});
  REQUIRE(pool_env.config);
  CHECK(pool_env.config->pool == std::vector<std::string>{"ipc:///tmp/a", "tcp://127.0.0.1:1"});

  for (auto bad : std::vector<std::vector<std::string>>{{"--listen", "nope"},
                                                        {"--pool", "udp://127.0.0.1:1"},
                                                        {"--pool", "127.0.0.1:5555"},
                                                        {"--pool", "ipc://"},
                                                        {"--pool", "tcp://a:1,,tcp://b:1"},
                                                        {"--pool", "tcp://a:1,tcp://a:1"},
                                                        {"--gateway-id", "has.dot"},
                                                        {"--max-message-bytes", "10"},
                                                        {"--log-level", "loud"},
                                                        {"--pool-drain-batch", "0"},
                                                        {"--reuse-port"},  // without --gateway-id
                                                        {"--max-pending-handshakes", "70000"},
                                                        {"--rx-buffer-bytes", "124"},  // a close frame would not fit
                                                        {"--rx-buffer-bytes", "65537"},
                                                        {"--socket-send-buffer-bytes", "4095"},
                                                        {"--socket-send-buffer-bytes", "16777217"},
                                                        {"--heartbeat-ms", "1000", "--worker-dead-ms", "1500"},
                                                        {"--no-such-option"},
                                                        {"--config", "/nonexistent/file.ini"}}) {
    auto r = parse_gateway_options(bad, {});
    CHECK_FALSE(r.config);
    CHECK(r.exit_code == 2);
    CHECK_FALSE(r.message.empty());
  }
  auto typo = parse_gateway_options({}, {{"SWITCHBOARD_LISTN", "x"}});
  CHECK_FALSE(typo.config);
  CHECK(typo.message.find("SWITCHBOARD_LISTN") != std::string::npos);
}

TEST_CASE("decoded query arguments are re-encoded so '&' and '=' in values survive") {
  CHECK(encode_query({}) == "");
  CHECK(encode_query({"room=a&b"}) == "room=a%26b");
  CHECK(encode_query({"room=x=y", "flag"}) == "room=x%3Dy&flag");
  CHECK(encode_query({"room=Grüße 1"}) == "room=Gr%C3%BC%C3%9Fe%201");
}

TEST_CASE("close frames carry the code and a reason cut to fit on a character boundary") {
  std::string out;
  append_close_frame(out, 1008, "bad room");
  CHECK(out == std::string("\x88\x0a\x03\xf0" "bad room", 12));
  std::string long_reason;
  for (int i = 0; i < 70; ++i) long_reason += "é";  // 140 bytes of 2-byte characters
  std::string cut;
  append_close_frame(cut, 1000, long_reason);
  CHECK(static_cast<unsigned char>(cut[1]) == 2 + 122);  // 123 would split a character
  CHECK(cut.size() == 4 + 122);
}
