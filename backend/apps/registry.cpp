#include "backend/apps/registry.hpp"

#include <filesystem>
#include <system_error>

#include "backend/apps/broadcast.hpp"
#include "backend/apps/chat.hpp"
#include "backend/apps/echo.hpp"
#include "backend/store/sqlite_chat_store.hpp"
#include "common/log.hpp"

namespace sb::backend {

std::vector<App*> AppSet::pointers() const {
  std::vector<App*> out;
  for (const auto& app : apps) out.push_back(app.get());
  return out;
}

namespace {

bool open_store(AppSet& set, const std::string& path, std::string& error) {
  if (path != ":memory:") {
    auto parent = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
      std::filesystem::create_directories(parent, ec);
      if (ec) {
        error = "cannot create directory " + parent.string() + " for the store: " + ec.message();
        return false;
      }
    }
  }
  std::string why;
  auto store = SqliteChatStore::open(path, why);
  if (!store) {
    error = "cannot open store " + path + ": " + why;
    return false;
  }
  set.store = std::move(store);
  return true;
}

}  // namespace

std::optional<AppSet> build_apps(const std::vector<std::string>& names, const std::string& store_path,
                                 const std::string& worker_id, std::string& error) {
  AppSet set;
  for (const auto& name : names) {
    if (name == "chat") {
      if (!set.store && !open_store(set, store_path, error)) return std::nullopt;
      auto chat = std::make_unique<ChatApp>(*set.store, worker_id);
      ChatApp* raw = chat.get();
      set.welcome_listeners.push_back([raw](Pool& pool, const std::string& gateway_id, std::uint64_t epoch) {
        raw->purge_stale_epochs(pool, gateway_id, epoch);
      });
      set.gateway_lost_listeners.push_back(
          [raw](Pool& pool, const std::string& gateway_id) { raw->purge_gateway(pool, gateway_id); });
      set.apps.push_back(std::move(chat));
    } else if (name == EchoApp::name) {
      set.apps.push_back(std::make_unique<EchoApp>());
    } else if (name == BroadcastApp::name) {
      set.apps.push_back(std::make_unique<BroadcastApp>());
    } else {
      error = "unknown app '" + name + "'";
      return std::nullopt;
    }
  }
  return set;
}

}  // namespace sb::backend
