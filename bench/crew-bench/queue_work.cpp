// Workload `queue_work`: jobs through libuv's thread pool, K in flight at a time.
//   queue_work_rate  per_s  N tiny jobs (one 64-bit hash each), submitted as completions free slots
#include <cstdint>

#include "crew/work.hpp"
#include "workload.hpp"

namespace crew::bench {

int queue_work(const options& opts) {
  long count = opts.integer("count", 200'000);
  long in_flight = opts.integer("in-flight", 64);
  crew::loop loop;
  long submitted = 0, completed = 0;
  std::uint64_t checksum = 0;

  std::function<void()> submit = [&] {
    std::uint64_t seed = static_cast<std::uint64_t>(submitted++);
    crew::queue_work(
        [seed] { return static_cast<std::uint64_t>(seed * 0x9E3779B97F4A7C15ULL ^ (seed >> 7)); },
        [&](crew::result<std::uint64_t> r) {
          checksum ^= r.value();
          ++completed;
          if (submitted < count) submit();
        },
        loop);
  };
  clock::time_point start = clock::now();
  for (long i = 0; i < std::min(in_flight, count); ++i) submit();
  loop.run();
  double elapsed = seconds_since(start);
  if (completed != count) std::fprintf(stderr, "queue_work: %ld of %ld completed\n", completed, count);
  report("queue_work_rate", completed / elapsed, "per_s");
  return checksum == 0xFFFFFFFFFFFFFFFFULL;  // keeps the jobs' work from being optimised away
}

}  // namespace crew::bench
