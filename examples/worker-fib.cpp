// worker-fib: the seeds' runWorker example. Three workers compute
// fibonacci(10), fibonacci(12) and fibonacci(15) in parallel, each from its
// worker data; the results print in the order of the data.
//
//   const results = await Promise.all([{data: 10}, {data: 12}, {data: 15}].map(runWorker));
//   console.log('Results from workers:', results);     // [ 55, 144, 610 ]
//
// runWorker's promise rejects on an error event or a non-zero exit; here either
// one prints the error and makes the program exit 1.
#include <crew/crew.hpp>

#include <cstdio>
#include <vector>

namespace {

long fibonacci(long n) { return n <= 1 ? n : fibonacci(n - 1) + fibonacci(n - 2); }

}  // namespace

int main() {
  using json = crew::message::value_type;
  std::vector<long> inputs = {10, 12, 15};
  std::vector<long> results(inputs.size());
  std::vector<crew::worker> workers;
  std::size_t finished = 0;
  bool failed = false;

  for (std::size_t i = 0; i < inputs.size(); ++i) {
    workers.emplace_back(
        [] {
          long n = crew::worker_data().value()["data"].get<long>();
          crew::parent_port()->post_message(fibonacci(n));
        },
        crew::worker_options{.data = json{{"data", inputs[i]}}});
    crew::worker& w = workers.back();
    w.on_message([&results, i](crew::message m) { results[i] = m.get<long>(); });
    w.on_error([&](crew::worker_error_event e) {
      std::fprintf(stderr, "worker-fib: %s\n", e.message.c_str());
      failed = true;
    });
    w.on_exit([&](int code) {
      if (code != 0) {
        std::fprintf(stderr, "worker-fib: Worker stopped with exit code %d\n", code);
        failed = true;
      }
      if (++finished < inputs.size() || failed) return;
      std::printf("Results from workers: [");
      for (std::size_t k = 0; k < results.size(); ++k) std::printf("%s%ld", k ? ", " : "", results[k]);
      std::printf("]\n");
    });
  }
  crew::loop::current().run();
  return failed ? 1 : 0;
}
