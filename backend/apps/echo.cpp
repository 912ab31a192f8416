#include "backend/apps/echo.hpp"

namespace sb::backend {

proto::AppInfo EchoApp::info() const { return {name, proto::AppMode::shared, 0}; }

void EchoApp::on_message(Pool& pool, const Wsid& wsid, std::string_view data, bool binary) {
  pool.write(wsid, data, binary);
}

}  // namespace sb::backend
