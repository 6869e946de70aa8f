// Workload `pool`: tiny tasks (an integer in, the next integer out) on a pool of
// W threads, then on a pool of W worker processes (crew-bench pool-worker),
// results back on the loop that sent them.
//   pool_tasks_per_s                per_s  N tasks, K in flight at a time (each result sends the next)
//   pool_serial_latency_us          us     one task at a time, there and back: mean of N / 10
//   process_pool_tasks_per_s        per_s  the same on the process pool, N / 10 tasks
//   process_pool_serial_latency_us  us     one at a time on the process pool: mean of N / 100
// --spin US sets pool_options::spin (default 50). --kind hand gives the thread
// figures of bench/crew-bench/hand_pool.hpp, the pool a user writes by hand.
#include <cstdint>
#include <string>

#include "crew/pool.hpp"
#include "crew/process_pool.hpp"
#include "hand_pool.hpp"
#include "workload.hpp"

namespace crew::bench {
namespace {

crew::message next_integer(crew::message m) { return m.get<std::int64_t>() + 1; }

// `tasks` runs with `in_flight` at a time, then `serial` one after another.
template <class Pool>
void measure(Pool& pool, const std::string& prefix, long tasks, long serial, long in_flight) {
  crew::loop& loop = crew::loop::current();
  long sent = 0, done = 0;
  std::int64_t sum = 0;
  std::function<void()> send = [&] {
    pool.run(sent++, {}, [&](result<message> r) {
      sum += r.value().get<std::int64_t>();
      ++done;
      if (sent < tasks) send();
    });
  };
  clock::time_point start = clock::now();
  for (long i = 0; i < std::min(in_flight, tasks); ++i) send();
  loop.run();
  report(prefix + "_tasks_per_s", static_cast<double>(done) / seconds_since(start), "per_s");
  if (sum != tasks * (tasks + 1) / 2) std::fprintf(stderr, "pool: wrong sum %lld\n", static_cast<long long>(sum));

  long left = serial;
  std::function<void()> next = [&] {
    pool.run(left, {}, [&](result<message> r) {
      (void)r.value();
      if (--left > 0) next();
    });
  };
  start = clock::now();
  next();
  loop.run();
  report(prefix + "_serial_latency_us", seconds_since(start) * 1e6 / static_cast<double>(serial), "us");
}

void crew_pools(long tasks, long workers, long in_flight, std::chrono::microseconds spin) {
  auto w = static_cast<std::size_t>(workers);
  crew::pool threads(next_integer, {.min_threads = w, .max_threads = w, .spin = spin});
  measure(threads, "pool", tasks, std::max(1L, tasks / 10), in_flight);
  crew::process_pool processes(
      {.args = {"pool-worker"}, .min_workers = w, .max_workers = w, .concurrent_tasks_per_worker = 64});
  measure(processes, "process_pool", std::max(1L, tasks / 10), std::max(1L, tasks / 100), in_flight);
}

void hand_written(long tasks, long workers, long in_flight) {
  hand_pool pool(static_cast<int>(workers));
  auto task = [](std::int64_t n) { return n + 1; };
  std::deque<std::future<std::int64_t>> waiting;
  std::int64_t sum = 0;
  long sent = 0;
  clock::time_point start = clock::now();
  for (; sent < std::min(in_flight, tasks); ++sent) waiting.push_back(pool.submit(task, sent));
  while (!waiting.empty()) {
    sum += waiting.front().get();
    waiting.pop_front();
    if (sent < tasks) waiting.push_back(pool.submit(task, sent++));
  }
  report("pool_tasks_per_s", static_cast<double>(tasks) / seconds_since(start), "per_s");
  if (sum != tasks * (tasks + 1) / 2) std::fprintf(stderr, "pool: wrong sum %lld\n", static_cast<long long>(sum));

  long serial = std::max(1L, tasks / 10);
  start = clock::now();
  for (long i = 0; i < serial; ++i) (void)pool.submit(task, i).get();
  report("pool_serial_latency_us", seconds_since(start) * 1e6 / static_cast<double>(serial), "us");
}

}  // namespace

int pool(const options& opts) {
  long tasks = opts.integer("tasks", 1'000'000);
  long workers = opts.integer("workers", 2);
  long in_flight = opts.integer("in-flight", 1024);
  std::string kind = opts.text("kind", "crew");
  std::chrono::microseconds spin(std::stol(opts.text("spin", "50")));
  if (kind == "crew")
    crew_pools(tasks, workers, in_flight, spin);
  else if (kind == "hand")
    hand_written(tasks, workers, in_flight);
  else
    return std::fprintf(stderr, "crew-bench pool: --kind crew|hand\n"), 2;
  return 0;
}

int pool_worker(const options&) { return crew::process_pool::serve({{"", next_integer}}); }

}  // namespace crew::bench
