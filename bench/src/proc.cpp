#include "bench/src/proc.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace sb::bench {

std::int64_t process_cpu_us(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return -1;
  // The command name may contain spaces: fields are counted after its closing parenthesis.
  auto close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  long long utime = 0, stime = 0;
  // After ')' come state(3) ... utime is field 14, stime 15 (1-based, pid is 1).
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoll(field);
    if (i == 15) stime = std::stoll(field);
  }
  static const long ticks = sysconf(_SC_CLK_TCK);
  return (utime + stime) * 1'000'000LL / ticks;
}

std::int64_t process_rss_kib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream s(line.substr(6));
      long long kib = -1;
      s >> kib;
      return kib;
    }
  }
  return -1;
}

std::vector<int> with_descendants(const std::vector<int>& pids) {
  std::vector<int> out;
  std::vector<int> todo = pids;
  while (!todo.empty()) {
    int pid = todo.back();
    todo.pop_back();
    if (std::find(out.begin(), out.end(), pid) != out.end()) continue;
    out.push_back(pid);
    std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
    DIR* dir = opendir(task_dir.c_str());
    if (!dir) continue;
    while (auto* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      std::ifstream in(task_dir + "/" + entry->d_name + "/children");
      int child;
      while (in >> child) todo.push_back(child);
    }
    closedir(dir);
  }
  return out;
}

std::int64_t total_cpu_us(const std::vector<int>& pids) {
  std::int64_t sum = 0;
  for (int pid : pids) {
    auto v = process_cpu_us(pid);
    if (v > 0) sum += v;
  }
  return sum;
}

std::int64_t total_rss_kib(const std::vector<int>& pids) {
  std::int64_t sum = 0;
  for (int pid : pids) {
    auto v = process_rss_kib(pid);
    if (v > 0) sum += v;
  }
  return sum;
}

std::int64_t self_cpu_us() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000LL + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
}

std::vector<int> parse_pid_list(const std::string& text) {
  std::vector<int> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    try {
      if (!item.empty()) out.push_back(std::stoi(item));
    } catch (...) {
    }
  }
  return out;
}

}  // namespace sb::bench
