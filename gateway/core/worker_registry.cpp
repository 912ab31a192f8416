#include "gateway/core/worker_registry.hpp"

namespace sb::gateway {

bool WorkerEntry::serves(std::string_view app) const {
  for (const auto& a : apps)
    if (a.name == app) return true;
  return false;
}

WorkerEntry& WorkerRegistry::register_worker(const std::string& routing_id, std::vector<proto::AppInfo> apps,
                                             std::int64_t now_ms) {
  auto& entry = workers_[routing_id];
  entry.routing_id = routing_id;
  entry.apps = std::move(apps);
  entry.last_heard_ms = now_ms;
  entry.draining = false;
  return entry;
}

WorkerEntry* WorkerRegistry::find(const std::string& routing_id) {
  auto it = workers_.find(routing_id);
  return it == workers_.end() ? nullptr : &it->second;
}

void WorkerRegistry::heard(const std::string& routing_id, std::int64_t now_ms) {
  if (auto* w = find(routing_id)) w->last_heard_ms = now_ms;
}

WorkerEntry* WorkerRegistry::pick(std::string_view app) {
  WorkerEntry* best = nullptr;
  for (auto& [id, w] : workers_) {
    if (w.draining || !w.serves(app)) continue;
    // Ties go to the smaller routing id so the choice does not depend on hash order.
    if (!best || w.sockets < best->sockets || (w.sockets == best->sockets && w.routing_id < best->routing_id))
      best = &w;
  }
  return best;
}

const proto::AppInfo* WorkerRegistry::app_info(std::string_view app) const {
  for (const auto& [id, w] : workers_)
    for (const auto& a : w.apps)
      if (a.name == app) return &a;
  return nullptr;
}

std::vector<WorkerEntry> WorkerRegistry::expire(std::int64_t now_ms, std::int64_t dead_after_ms) {
  std::vector<WorkerEntry> dead;
  for (const auto& [id, w] : workers_)
    if (now_ms - w.last_heard_ms > dead_after_ms) dead.push_back(w);
  for (const auto& w : dead) workers_.erase(w.routing_id);
  return dead;
}

void WorkerRegistry::remove(const std::string& routing_id) { workers_.erase(routing_id); }

}  // namespace sb::gateway
