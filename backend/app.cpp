#include "backend/app.hpp"

#include "common/query.hpp"

namespace sb::backend {

std::string OpenRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers)
    if (key == name) return value;
  return {};
}

std::string OpenRequest::param(std::string_view name, std::string_view fallback) const {
  auto value = query_param(query, name);
  return value ? *value : std::string(fallback);
}

void ServerHandle::write(std::string_view data, bool binary, std::string_view dedupe_key) {
  pool_.write(wsid_, data, binary, dedupe_key);
}
void ServerHandle::end(std::uint16_t code, std::string_view reason) { pool_.end(wsid_, code, reason); }
void ServerHandle::is_open(std::function<void(bool)> done) { pool_.query(wsid_, std::move(done)); }

}  // namespace sb::backend
