// The workers this gateway knows, keyed by their ZeroMQ routing id, with liveness and load.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "proto/link.hpp"

namespace sb::gateway {

struct WorkerEntry {
  std::string routing_id;
  std::vector<proto::AppInfo> apps;
  std::int64_t last_heard_ms = 0;  // any traffic counts (Paranoid Pirate)
  std::size_t sockets = 0;         // sessions bound to this worker
  bool draining = false;           // sent BYE: no new sockets
  bool serves(std::string_view app) const;
};

class WorkerRegistry {
 public:
  WorkerEntry& register_worker(const std::string& routing_id, std::vector<proto::AppInfo> apps, std::int64_t now_ms);
  WorkerEntry* find(const std::string& routing_id);
  void heard(const std::string& routing_id, std::int64_t now_ms);
  // The least-loaded live, non-draining worker serving `app`, or nullptr.
  WorkerEntry* pick(std::string_view app);
  // The app's declared settings (from any worker serving it), or nullptr if nobody serves it.
  const proto::AppInfo* app_info(std::string_view app) const;
  // Removes workers silent for longer than dead_after_ms; returns them.
  std::vector<WorkerEntry> expire(std::int64_t now_ms, std::int64_t dead_after_ms);
  void remove(const std::string& routing_id);
  std::size_t size() const { return workers_.size(); }
  const std::unordered_map<std::string, WorkerEntry>& all() const { return workers_; }

 private:
  std::unordered_map<std::string, WorkerEntry> workers_;
};

}  // namespace sb::gateway
