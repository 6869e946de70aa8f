// A histogram of durations that any thread may add to without a lock, read as
// percentiles: log-linear buckets (16 per power of two), so that each reading
// is within 1/16 of the true value, from nanoseconds to centuries.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

#include "crew/pool.hpp"

namespace crew::detail {

class histogram {
 public:
  void record(std::uint64_t ns) noexcept {
    counts_[bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(ns, std::memory_order_relaxed);
    for (std::uint64_t seen = max_.load(std::memory_order_relaxed);
         ns > seen && !max_.compare_exchange_weak(seen, ns, std::memory_order_relaxed);) {
    }
    for (std::uint64_t seen = min_.load(std::memory_order_relaxed);
         ns < seen && !min_.compare_exchange_weak(seen, ns, std::memory_order_relaxed);) {
    }
  }

  /// Count, mean, extremes and percentiles, in microseconds.
  duration_summary summary() const noexcept {
    duration_summary s;
    s.count = count_.load(std::memory_order_relaxed);
    if (s.count == 0) return s;
    s.mean = static_cast<double>(sum_.load(std::memory_order_relaxed)) / static_cast<double>(s.count) / 1e3;
    s.min = static_cast<double>(min_.load(std::memory_order_relaxed)) / 1e3;
    s.max = static_cast<double>(max_.load(std::memory_order_relaxed)) / 1e3;
    s.p50 = percentile(0.50, s.count);
    s.p90 = percentile(0.90, s.count);
    s.p99 = percentile(0.99, s.count);
    return s;
  }

 private:
  static constexpr int sub_bits = 4;  // 16 buckets per power of two
  static constexpr int linear = 1 << sub_bits;
  static constexpr int buckets = linear + (64 - sub_bits) * linear;

  static int bucket_of(std::uint64_t v) noexcept {
    if (v < linear) return static_cast<int>(v);
    int power = 63 - std::countl_zero(v);  // >= sub_bits
    int sub = static_cast<int>((v >> (power - sub_bits)) & (linear - 1));
    return linear + (power - sub_bits) * linear + sub;
  }

  // The middle of a bucket's range, in nanoseconds.
  static double middle_of(int bucket) noexcept {
    if (bucket < linear) return bucket;
    int power = (bucket - linear) / linear + sub_bits;
    int sub = (bucket - linear) % linear;
    double width = static_cast<double>(std::uint64_t{1} << (power - sub_bits));
    return (static_cast<double>(std::uint64_t{1} << power) + sub * width) + width / 2;
  }

  // The value below which a share q of the recorded values lie, in microseconds.
  double percentile(double q, std::uint64_t count) const noexcept {
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count - 1)) + 1;
    std::uint64_t seen = 0;
    for (int b = 0; b < buckets; ++b) {
      seen += counts_[b].load(std::memory_order_relaxed);
      if (seen >= rank) return middle_of(b) / 1e3;
    }
    return static_cast<double>(max_.load(std::memory_order_relaxed)) / 1e3;
  }

  std::array<std::atomic<std::uint64_t>, buckets> counts_{};
  std::atomic<std::uint64_t> count_{0}, sum_{0}, max_{0};
  std::atomic<std::uint64_t> min_{~std::uint64_t{0}};
};

}  // namespace crew::detail
