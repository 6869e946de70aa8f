// Uses the installed crew: a timer, a post from another thread and thread-pool work.
#include <crew/crew.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

int main() {
  using namespace std::chrono_literals;
  crew::loop& loop = crew::loop::current();
  int steps = 0;
  crew::timer t = crew::scoped_timeout(1ms, [&] { ++steps; });
  crew::loop::keep_alive hold(loop);
  std::thread other([&] { loop.post([&] { ++steps, hold = {}; }); });
  crew::queue_work([] { return 40; }, [&](crew::result<int> r) { steps += r.value(); });
  loop.run();
  other.join();
  std::printf("consumer: %d\n", steps);
  return steps == 42 ? 0 : 1;
}
