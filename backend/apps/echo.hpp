// "echo": every message goes back to its sender, text stays text and binary stays binary.
// Stateless, so any worker can serve any socket; useful to measure the pool round trip.
#pragma once
#include "backend/app.hpp"

namespace sb::backend {

class EchoApp final : public App {
 public:
  using App::on_message;
  static constexpr const char* name = "echo";
  proto::AppInfo info() const override;
  void on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary) override;
};

}  // namespace sb::backend
