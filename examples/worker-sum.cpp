// worker-sum: the seeds' first worker_threads example. A worker adds up the
// integers below 1e9 and posts the sum; the main thread's loop stays free
// meanwhile, then prints the sum and the exit code.
//
//   const worker = new Worker("./worker.js");      // worker.js: for (...) sum += i;
//   worker.on("message", (result) => console.log("Sum:", result));
//   worker.on("exit", (code) => console.log("Worker exited with code", code));
//
// Node adds in doubles and prints 499999999067108900; integers give the exact
// 499999999500000000.
#include <crew/crew.hpp>

#include <cstdint>
#include <cstdio>

int main() {
  std::puts("Main thread started");
  crew::worker worker([] {
    std::int64_t sum = 0;
    for (std::int64_t i = 0; i < 1'000'000'000; ++i) sum += i;
    crew::parent_port()->post_message(sum);
  });

  worker.on_message([](crew::message result) { std::printf("Sum: %lld\n", result.get<long long>()); });
  worker.on_error([](crew::worker_error_event e) { std::fprintf(stderr, "%s\n", e.message.c_str()); });
  int exit_code = 1;
  worker.on_exit([&](int code) {
    exit_code = code;
    std::printf("Worker exited with code %d\n", code);
  });
  crew::loop::current().run();
  return exit_code;
}
