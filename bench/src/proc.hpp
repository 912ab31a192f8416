// Reads the system under test from /proc: CPU time and resident memory of given processes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sb::bench {

// utime + stime of one process in microseconds, or -1 if it is gone.
std::int64_t process_cpu_us(int pid);
// VmRSS in KiB, or -1.
std::int64_t process_rss_kib(int pid);
// The pids plus all their descendants (children of any thread), each once.
std::vector<int> with_descendants(const std::vector<int>& pids);

std::int64_t total_cpu_us(const std::vector<int>& pids);
std::int64_t total_rss_kib(const std::vector<int>& pids);
// This process' own user+system CPU in microseconds.
std::int64_t self_cpu_us();

std::vector<int> parse_pid_list(const std::string& text);

}  // namespace sb::bench
