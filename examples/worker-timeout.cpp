// worker-timeout: a worker given a deadline. It counts primes, one number at a
// time, and checks its stop token between numbers; when the deadline passes the
// main thread terminates it, and it stops at the next check. A C++ thread
// cannot be killed, so this is how a long computation is cut short: it has to
// look (for a hard kill, run the work in a child process instead).
//
//   worker-timeout [--ms DEADLINE] [--limit N]    (defaults: 200 ms, 50000000)
//
// Prints either the count, if the worker finished in time, or how far it got.
#include <crew/crew.hpp>

#include "command_line.hpp"

#include <atomic>
#include <cstdio>
#include <string>

namespace {

bool is_prime(long n) {
  if (n < 2) return false;
  for (long d = 2; d * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long deadline_ms = examples::option(argc, argv, "--ms", 200, 0, 3'600'000);
  long limit = examples::option(argc, argv, "--limit", 50'000'000);
  std::atomic<long> reached{0};  // how far the worker got, for the report

  crew::worker worker(
      [&reached] {
        long numbers = crew::worker_data().get<long>();
        std::stop_token stop = crew::worker_stop_token();
        long count = 0;
        for (long n = 0; n < numbers; ++n) {
          if (stop.stop_requested()) return;  // terminated: leave at once
          if (is_prime(n)) ++count;
          reached.store(n, std::memory_order_relaxed);
        }
        crew::parent_port()->post_message(count);
      },
      {.data = limit, .name = "primes"});

  bool finished = false;
  crew::timer deadline = crew::scoped_timeout(std::chrono::milliseconds(deadline_ms), [&] {
    std::printf("deadline of %ld ms passed: terminating the worker\n", deadline_ms);
    worker.terminate();
  });
  worker.on_message([&](crew::message m) {
    finished = true;
    deadline.stop();
    std::printf("%ld primes below %ld\n", m.get<long>(), limit);
  });
  int exit_code = -1;
  worker.on_exit([&](int code) {
    exit_code = code;
    if (!finished) std::printf("stopped after checking %ld of %ld numbers\n", reached.load() + 1, limit);
    std::printf("worker exited with code %d\n", code);
  });
  crew::loop::current().run();
  return finished || exit_code == 1 ? 0 : 1;
}
