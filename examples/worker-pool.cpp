// worker-pool [--size N] [--tasks M]: the seeds' WorkerPool, as crew users
// write it. A pool of N threads (default 4) computes fibonacci(25),
// fibonacci(26)... for M tasks (default 8): more tasks than threads, so the
// rest wait in the pool's queue and run as threads free up (the seed's
// WorkerPool queues them but never takes them out again). The results come
// back on the main loop, awaited together as Promise.all awaits them, and print
// in the order sent, then the pool's figures.
//
//   const pool = new WorkerPool(4, './fib-worker.js');
//   const results = await Promise.all(inputs.map((n) => pool.execute(n)));
#include <crew/crew.hpp>

#include <cstdio>

#include "command_line.hpp"

long fibonacci(long n) { return n <= 1 ? n : fibonacci(n - 1) + fibonacci(n - 2); }

crew::task<> compute(crew::pool& pool, long tasks, int& exit_code) {
  std::vector<crew::awaitable<crew::result<crew::message>>> runs;
  for (long i = 0; i < tasks; ++i) runs.push_back(pool.run(25 + i));
  std::vector<crew::result<crew::message>> results = co_await crew::when_all(std::move(runs));
  for (long i = 0; i < tasks; ++i) {
    if (results[i])
      std::printf("fibonacci(%ld) = %ld\n", 25 + i, results[i]->get<long>());
    else
      std::printf("fibonacci(%ld) failed: %s\n", 25 + i, crew::error_name(results[i].error()).c_str());
    exit_code |= !results[i];
  }
}

int main(int argc, char** argv) {
  long size = examples::option(argc, argv, "--size", 4, 1, 1024), tasks = examples::option(argc, argv, "--tasks", 8, 1, 20);
  if (!examples::only(argc, argv, {"--size", "--tasks"})) {
    std::fprintf(stderr, "usage: worker-pool [--size N] [--tasks M (1..20)]\n");
    return 2;
  }
  crew::pool pool([](crew::message n) { return fibonacci(n.get<long>()); },
                  {.min_threads = static_cast<std::size_t>(size), .max_threads = static_cast<std::size_t>(size)});
  int exit_code = 0;
  crew::task<> running = compute(pool, tasks, exit_code);
  crew::loop::current().run();
  crew::pool_stats s = pool.stats();
  std::printf("%llu tasks on %zu threads; waited %.0f us at the median, ran %.0f us at the median\n",
              static_cast<unsigned long long>(s.completed), s.threads, s.wait_time.p50, s.run_time.p50);
  return exit_code;
}
