// The worker's ZeroMQ shell against a fake gateway (a ROUTER in the test thread) over inproc://:
// registration, ACKs, and the SIGTERM drain (BYE, keep serving, exit once released or timed out).
// Component tier: real ZeroMQ, one process, every wait bounded.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>
#include <zmq.h>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "backend/apps/echo.hpp"
#include "backend/runtime/worker.hpp"
#include "common/wsid.hpp"
#include "proto/codec.hpp"

using namespace sb;
using namespace sb::backend;
using namespace std::chrono_literals;

namespace {

// A gateway in miniature: one ROUTER, decoded messages in, encoded bodies out.
class FakeGateway {
 public:
  FakeGateway(void* context, const std::string& endpoint) {
    socket_ = zmq_socket(context, ZMQ_ROUTER);
    REQUIRE(socket_);
    int linger = 0;
    zmq_setsockopt(socket_, ZMQ_LINGER, &linger, sizeof linger);
    REQUIRE(zmq_bind(socket_, endpoint.c_str()) == 0);
  }
  ~FakeGateway() { zmq_close(socket_); }

  // The next body from the worker (a multipart message is split into bodies), or nullopt after `timeout`.
  std::optional<proto::Envelope> next(std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pending_.empty()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      zmq_pollitem_t item{socket_, 0, ZMQ_POLLIN, 0};
      if (zmq_poll(&item, 1, static_cast<long>(left.count())) <= 0) continue;
      receive();
    }
    auto out = std::move(pending_.front());
    pending_.erase(pending_.begin());
    return out;
  }
  // The next body of kind T, skipping heartbeats and anything else.
  template <typename T>
  std::optional<T> next_of(std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto e = next(left);
      if (!e) return std::nullopt;
      if (auto* m = std::get_if<T>(&*e)) return *m;
    }
  }
  void send(const proto::Envelope& envelope) {
    REQUIRE(!peer_.empty());
    auto body = proto::encode(envelope);
    REQUIRE(zmq_send(socket_, peer_.data(), peer_.size(), ZMQ_SNDMORE) >= 0);
    REQUIRE(zmq_send(socket_, body.data(), body.size(), 0) >= 0);
  }
  const std::string& peer() const { return peer_; }

 private:
  void receive() {
    std::vector<std::string> frames;
    while (true) {
      zmq_msg_t frame;
      zmq_msg_init(&frame);
      if (zmq_msg_recv(&frame, socket_, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&frame);
        break;
      }
      frames.emplace_back(static_cast<const char*>(zmq_msg_data(&frame)), zmq_msg_size(&frame));
      bool more = zmq_msg_more(&frame);
      zmq_msg_close(&frame);
      if (!more) break;
    }
    if (frames.empty()) return;
    peer_ = frames[0];
    for (std::size_t i = 1; i < frames.size(); ++i) {
      auto decoded = proto::decode(frames[i]);
      REQUIRE(decoded.ok());
      pending_.push_back(std::move(decoded.envelope()));
    }
  }

  void* socket_ = nullptr;
  std::string peer_;
  std::vector<proto::Envelope> pending_;
};

struct Pipe {
  int fds[2] = {-1, -1};
  Pipe() { REQUIRE(pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0); }
  ~Pipe() {
    close(fds[0]);
    close(fds[1]);
  }
  void signal() { REQUIRE(write(fds[1], "x", 1) == 1); }
};

struct Rig {
  void* context = zmq_ctx_new();
  std::string endpoint;
  std::optional<FakeGateway> gateway;
  EchoApp echo;
  BackendConfig config;
  std::optional<Worker> worker;
  Pipe stop;
  std::future<int> exit_code;
  std::chrono::steady_clock::time_point signalled{};

  explicit Rig(std::int64_t drain_timeout_ms) {
    static std::atomic<int> counter{0};
    endpoint = "inproc://sb-worker-test-" + std::to_string(counter++);
    gateway.emplace(context, endpoint);
    config.gateways = {endpoint};
    config.apps = {"echo"};
    config.heartbeat_ms = 100;
    config.gateway_dead_ms = 5000;  // the fake gateway never heartbeats: keep it "alive" throughout
    config.gateway_lease_ms = 10000;
    config.linger_ms = 0;
    config.drain_timeout_ms = drain_timeout_ms;
    worker.emplace(config, "w-test", std::vector<App*>{&echo}, context);
    std::string error;
    REQUIRE_MESSAGE(worker->open(error), error);
    exit_code = std::async(std::launch::async, [this] { return worker->run(stop.fds[0]); });
  }
  ~Rig() {
    // Never hang the suite: a stuck worker gets a second signal, which ends any drain.
    if (exit_code.valid() && exit_code.wait_for(0ms) != std::future_status::ready) {
      stop.signal();
      stop.signal();
      exit_code.wait_for(5s);
    }
    worker.reset();
    gateway.reset();
    zmq_ctx_term(context);
  }
  // HELLO in, WELCOME out: the worker is registered.
  void register_worker() {
    auto hello = gateway->next_of<proto::Hello>();
    REQUIRE(hello);
    CHECK(hello->worker_id == "w-test");
    CHECK(gateway->peer() == "w-test");
    gateway->send(proto::Welcome{proto::protocol_version, "gw", 42, 100});
  }
  void sigterm() {
    signalled = std::chrono::steady_clock::now();
    stop.signal();
  }
  // Exit code if the worker stopped within `timeout`.
  std::optional<int> stopped(std::chrono::milliseconds timeout) {
    if (exit_code.wait_for(timeout) != std::future_status::ready) return std::nullopt;
    return exit_code.get();
  }
};

proto::Open open_of(const std::string& wsid) {
  proto::Open o;
  o.wsid = wsid;
  o.app = "echo";
  o.path = "/echo";
  return o;
}

}  // namespace

TEST_CASE("worker shell: SIGTERM drains: BYE, keeps serving and ACKing, exits 0 once the gateway answers BYE") {
  Rig rig(5000);
  rig.register_worker();
  const auto wsid = make_wsid("gw", 42, 1);
  rig.gateway->send(open_of(wsid));
  rig.gateway->send(proto::Message{wsid, 1, false, "one"});
  auto echoed = rig.gateway->next_of<proto::Write>();
  REQUIRE(echoed);
  CHECK(echoed->payload == "one");
  auto ack = rig.gateway->next_of<proto::Ack>();
  REQUIRE(ack);
  CHECK(ack->seq == 1);

  rig.sigterm();
  REQUIRE(rig.gateway->next_of<proto::Bye>());
  // Still serving: an event that was in flight is processed and acknowledged.
  rig.gateway->send(proto::Message{wsid, 2, false, "two"});
  echoed = rig.gateway->next_of<proto::Write>();
  REQUIRE(echoed);
  CHECK(echoed->payload == "two");
  ack = rig.gateway->next_of<proto::Ack>();
  REQUIRE(ack);
  CHECK(ack->seq == 2);
  CHECK_FALSE(rig.stopped(50ms));  // waits for the gateway's BYE

  rig.gateway->send(proto::Bye{});
  auto code = rig.stopped(2000ms);
  REQUIRE(code);
  CHECK(*code == 0);
  CHECK(rig.worker->dispatcher().drained());
  CHECK(rig.worker->dispatcher().counters().closes == 0);  // moved, not closed
}

TEST_CASE("worker shell: a drain nobody answers ends after --drain-timeout-ms") {
  Rig rig(200);
  rig.register_worker();
  REQUIRE(rig.gateway->next_of<proto::Heartbeat>());  // the loop runs
  rig.sigterm();
  REQUIRE(rig.gateway->next_of<proto::Bye>());
  auto code = rig.stopped(3000ms);
  REQUIRE(code);
  CHECK(*code == 0);
  auto took = std::chrono::steady_clock::now() - rig.signalled;
  CHECK(took >= 190ms);
  CHECK(took < 2000ms);
  CHECK_FALSE(rig.worker->dispatcher().drained());
}

TEST_CASE("worker shell: a second signal ends the drain at once") {
  Rig rig(60000);
  rig.register_worker();
  REQUIRE(rig.gateway->next_of<proto::Heartbeat>());  // welcomed (it would say HELLO otherwise)
  rig.sigterm();
  REQUIRE(rig.gateway->next_of<proto::Bye>());
  CHECK_FALSE(rig.stopped(100ms));
  rig.stop.signal();
  auto code = rig.stopped(2000ms);
  REQUIRE(code);
  CHECK(*code == 0);
}

TEST_CASE("worker shell: with no gateway welcoming us, a drain ends at once") {
  Rig rig(60000);
  REQUIRE(rig.gateway->next_of<proto::Hello>());  // never answered
  rig.sigterm();
  auto code = rig.stopped(2000ms);
  REQUIRE(code);
  CHECK(*code == 0);
}
