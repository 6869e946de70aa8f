// shared-buffer: SharedArrayBuffer and Atomics between the main thread and
// workers. An Int32 view over one shared buffer: cell 0 is a counter, cell 1 a
// starting gun. Every worker sleeps on the gun (Atomics.wait), the main thread
// fires it (store + Atomics.notify), each worker adds 1 to the counter ITERS
// times (Atomics.add), and the main thread reads the total once all have
// exited: exactly WORKERS * ITERS, with no lock.
//
//   shared-buffer [--workers N] [--iters M]       (defaults: 4, 1000000)
#include <crew/crew.hpp>

#include "command_line.hpp"

#include <cstdio>
#include <vector>

int main(int argc, char** argv) {
  long worker_count = examples::option(argc, argv, "--workers", 4, 1, 1024);
  long iterations = examples::option(argc, argv, "--iters", 1'000'000);

  crew::shared_buffer memory(2 * sizeof(std::int32_t));
  crew::atomic_view<std::int32_t> cells(memory);  // [0] counter, [1] starting gun
  constexpr std::size_t counter = 0, gun = 1;

  std::vector<crew::worker> workers;
  long online = 0, exited = 0;
  for (long w = 0; w < worker_count; ++w) {
    workers.emplace_back([cells, iterations] {
      cells.wait(gun, 0);  // returns at once if the gun has already fired
      for (long i = 0; i < iterations; ++i) cells.add(counter, 1);
    });
    workers.back().on_online([&] {
      if (++online < worker_count) return;
      std::printf("%ld workers waiting; firing the starting gun\n", worker_count);
      cells.store(gun, 1);
      cells.notify(gun);
    });
    workers.back().on_exit([&](int) {
      if (++exited < worker_count) return;
      std::printf("counter: %d (expected %ld)\n", cells.load(counter), worker_count * iterations);
    });
  }
  crew::loop::current().run();
  return cells.load(counter) == worker_count * iterations ? 0 : 1;
}
