// Latency histogram and payload stamps: pure, unit-tested.
#pragma once
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sb::bench {

// Log-linear histogram of nanosecond values (HDR-style): exact below 128, then 64 linear
// sub-buckets per power of two, so any percentile is within 1.6 % of the true value.
// Fixed size, O(1) record: millions of samples per second cost nothing to keep.
class Histogram {
 public:
  Histogram() : buckets_(64 * 58 + 128, 0) {}

  void record(std::int64_t ns) {
    if (ns < 0) ns = 0;
    auto v = static_cast<std::uint64_t>(ns);
    ++buckets_[index(v)];
    ++count_;
    sum_ += v;
    if (v > max_) max_ = v;
    if (count_ == 1 || v < min_) min_ = v;
  }
  void merge(const Histogram& o) {
    for (std::size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += o.buckets_[i];
    if (o.count_ && (count_ == 0 || o.min_ < min_)) min_ = o.min_;
    count_ += o.count_;
    sum_ += o.sum_;
    if (o.max_ > max_) max_ = o.max_;
  }
  std::uint64_t count() const { return count_; }
  std::uint64_t max() const { return max_; }
  std::uint64_t min() const { return min_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0; }

  // Value at percentile p (0..100): the midpoint of the bucket holding that rank.
  std::uint64_t percentile(double p) const {
    if (count_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(p / 100.0 * static_cast<double>(count_) + 0.5);
    if (rank < 1) rank = 1;
    if (rank > count_) rank = count_;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < buckets_.size(); ++i) {
      seen += buckets_[i];
      if (seen >= rank) {
        std::uint64_t v = midpoint(i);
        return v > max_ ? max_ : v < min_ ? min_ : v;
      }
    }
    return max_;
  }

  static std::size_t index(std::uint64_t v) {
    if (v < 128) return static_cast<std::size_t>(v);
    int msb = 63 - std::countl_zero(v);  // >= 7
    int shift = msb - 6;                  // v >> shift is in [64, 127]
    return static_cast<std::size_t>(64 * shift + (v >> shift));
  }
  static std::uint64_t midpoint(std::size_t i) {
    if (i < 128) return i;
    std::size_t shift = i / 64 - 1;
    std::uint64_t low = static_cast<std::uint64_t>(i - 64 * shift) << shift;
    return low + ((std::uint64_t{1} << shift) >> 1);
  }

 private:
  std::vector<std::uint64_t> buckets_;
  std::uint64_t count_ = 0, sum_ = 0, max_ = 0, min_ = 0;
};

// How the slowest messages of an open-loop phase are spread over time. Independent delays
// (each message unlucky on its own) put some of the slowest 1 % in most 10 ms windows at
// 20 000 msgs/s; stalls (everything late for a few ms: a CPU taken away, a queue that built
// up) put them in a few. A p99 set by stalls moves with the machine's hiccups, not with the
// cost per message, and the report says which it is.
struct TailSpread {
  std::size_t windows = 0;            // windows of the phase
  std::size_t windows_with_tail = 0;  // windows holding at least one of the slowest samples
  std::size_t tail_samples = 0;       // samples at or above the percentile's value
};

// `samples` are (send time since the phase began, latency) in ns; `phase_ns` the phase length.
inline TailSpread tail_spread(const std::vector<std::pair<std::int64_t, std::int64_t>>& samples,
                              std::int64_t phase_ns, std::int64_t window_ns, double percentile) {
  TailSpread out;
  if (samples.empty() || phase_ns <= 0 || window_ns <= 0) return out;
  out.windows = static_cast<std::size_t>((phase_ns + window_ns - 1) / window_ns);
  std::vector<std::int64_t> latencies;
  latencies.reserve(samples.size());
  for (const auto& s : samples) latencies.push_back(s.second);
  auto rank = static_cast<std::size_t>(percentile / 100.0 * static_cast<double>(latencies.size()));
  if (rank >= latencies.size()) rank = latencies.size() - 1;
  std::nth_element(latencies.begin(), latencies.begin() + static_cast<std::ptrdiff_t>(rank), latencies.end());
  const std::int64_t threshold = latencies[rank];
  std::vector<bool> hit(out.windows, false);
  for (const auto& [at, latency] : samples) {
    if (latency < threshold) continue;
    ++out.tail_samples;
    auto w = static_cast<std::size_t>(std::clamp<std::int64_t>(at / window_ns, 0, static_cast<std::int64_t>(out.windows) - 1));
    if (!hit[w]) {
      hit[w] = true;
      ++out.windows_with_tail;
    }
  }
  return out;
}

// Message payloads carry a stamp: 16 hex digits of a steady-clock time in ns, 8 of the sender's
// connection id, 8 of a sequence number, then padding to the requested size. Text, so servers
// that validate UTF-8 do the work they would do for real chat traffic.
constexpr std::size_t stamp_size = 32;

inline void write_hex(char* out, std::uint64_t v, int digits) {
  static constexpr char hex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) {
    out[i] = hex[v & 15];
    v >>= 4;
  }
}

inline bool read_hex(const char* in, int digits, std::uint64_t& v) {
  v = 0;
  for (int i = 0; i < digits; ++i) {
    char c = in[i];
    unsigned d;
    if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
    else return false;
    v = v << 4 | d;
  }
  return true;
}

struct Stamp {
  std::int64_t time_ns = 0;
  std::uint32_t sender = 0;
  std::uint32_t seq = 0;
};

inline std::string make_payload(const Stamp& s, std::size_t size) {
  if (size < stamp_size) size = stamp_size;
  std::string out(size, '.');
  write_hex(out.data(), static_cast<std::uint64_t>(s.time_ns), 16);
  write_hex(out.data() + 16, s.sender, 8);
  write_hex(out.data() + 24, s.seq, 8);
  return out;
}

// Rewrites the stamp of a payload made by make_payload (no allocation on the hot path).
inline void restamp(std::string& payload, const Stamp& s) {
  write_hex(payload.data(), static_cast<std::uint64_t>(s.time_ns), 16);
  write_hex(payload.data() + 16, s.sender, 8);
  write_hex(payload.data() + 24, s.seq, 8);
}

inline bool parse_stamp(std::string_view payload, Stamp& s) {
  if (payload.size() < stamp_size) return false;
  std::uint64_t t, sender, seq;
  if (!read_hex(payload.data(), 16, t) || !read_hex(payload.data() + 16, 8, sender) ||
      !read_hex(payload.data() + 24, 8, seq))
    return false;
  s.time_ns = static_cast<std::int64_t>(t);
  s.sender = static_cast<std::uint32_t>(sender);
  s.seq = static_cast<std::uint32_t>(seq);
  return true;
}

}  // namespace sb::bench
