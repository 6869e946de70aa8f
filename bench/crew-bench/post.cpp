// Workload `post`: how fast one thread's loop receives work from another thread.
//   post_one_way    per_s  a producer thread posts N small closures; rate until the loop ran them all
//   post_roundtrip  us     a post to a second loop's thread and a post back, N times in sequence
#include <thread>

#include "crew/loop.hpp"
#include "workload.hpp"

namespace crew::bench {
namespace {

double one_way(long count) {
  crew::loop loop;
  crew::loop::keep_alive hold(loop);
  long received = 0;
  long checksum = 0;
  clock::time_point start = clock::now();
  std::thread producer([&] {
    for (long i = 0; i < count; ++i)
      loop.post([&, i] {
        checksum += i;
        if (++received == count) hold = {};
      });
  });
  loop.run();
  double elapsed = seconds_since(start);
  producer.join();
  if (checksum != count * (count - 1) / 2) std::fprintf(stderr, "post: lost posts\n");
  return count / elapsed;
}

double round_trip(long count) {
  crew::loop main_loop;
  crew::loop::keep_alive hold_main(main_loop);

  // The echo thread runs its own loop until the main thread releases it.
  crew::loop* echo_loop = nullptr;
  crew::loop::keep_alive* hold_echo = nullptr;
  std::atomic<bool> ready{false};
  std::thread echo([&] {
    crew::loop mine;
    crew::loop::keep_alive hold(mine);
    echo_loop = &mine;
    hold_echo = &hold;
    ready = true;
    mine.run();
  });
  while (!ready) std::this_thread::yield();

  long remaining = count;
  clock::time_point start;
  // ping runs on the echo thread and answers on the main thread with pong.
  std::function<void()> ping;
  std::function<void()> pong = [&] {
    if (--remaining == 0) {
      hold_main = {};
      return;
    }
    echo_loop->post([&] { ping(); });
  };
  ping = [&] { main_loop.post([&] { pong(); }); };

  start = clock::now();
  echo_loop->post([&] { ping(); });
  main_loop.run();
  double elapsed = seconds_since(start);
  echo_loop->post([&] { *hold_echo = {}; });
  echo.join();
  return elapsed / count * 1e6;
}

}  // namespace

int post(const options& opts) {
  long count = opts.integer("count", 1'000'000);
  report("post_one_way", one_way(count), "per_s");
  report("post_roundtrip", round_trip(std::max(1L, count / 10)), "us");
  return 0;
}

}  // namespace crew::bench
