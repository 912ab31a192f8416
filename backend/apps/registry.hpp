// Builds the apps a worker serves from their names, plus what they need (the chat store).
// Called once per worker process, after fork: a SQLite connection must not cross a fork.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/app.hpp"
#include "backend/store/chat_store.hpp"

namespace sb::backend {

struct AppSet {
  // Declared before the apps so it is destroyed after them (apps hold a reference).
  std::unique_ptr<ChatStore> store;
  std::vector<std::unique_ptr<App>> apps;
  // To run on every WELCOME with (gateway id, epoch), e.g. the chat app's stale-epoch purge.
  std::vector<std::function<void(Pool&, const std::string&, std::uint64_t)>> welcome_listeners;
  // To run when a gateway is given up (dead past the lease), e.g. the chat app's gateway purge.
  std::vector<std::function<void(Pool&, const std::string&)>> gateway_lost_listeners;

  std::vector<App*> pointers() const;
};

// `names` are validated app names (chat, echo, broadcast); `store_path` is the SQLite file
// (its parent directory is created if missing), opened only when chat is among them.
// On failure returns nullopt and sets `error`.
std::optional<AppSet> build_apps(const std::vector<std::string>& names, const std::string& store_path,
                                 const std::string& worker_id, std::string& error);

}  // namespace sb::backend
