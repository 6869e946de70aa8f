// Workload `worker`: worker threads and their message ports.
//   worker_startup          ms        from constructing a worker to its online event (mean of 20)
//   worker_roundtrip        us        a small message to a worker and back, --count N times in sequence
//   worker_roundtrip_nospin us        the same with worker_options::spin = 0 (each side sleeps between messages)
//   worker_one_way          msg_per_s N*10 small messages main to worker, until the worker has them all
#include "crew/worker_threads.hpp"
#include "workload.hpp"

namespace crew::bench {
namespace {

using json = message::value_type;

double startup_ms(int workers) {
  crew::loop loop;
  double total = 0;
  for (int i = 0; i < workers; ++i) {
    clock::time_point start = clock::now();
    worker w([] {});
    w.on_online([&] { total += seconds_since(start); });
    loop.run();  // until it has exited
  }
  return total / workers * 1e3;
}

// The worker answers each {"ping": n} with the same message.
void echo() {
  parent_port()->on_message([](message m) { parent_port()->post_message(std::move(m)); });
}

double roundtrip_us(long count, std::chrono::microseconds spin) {
  crew::loop loop;
  worker w(echo, {.spin = spin});
  long remaining = count;
  clock::time_point start = clock::now();
  double us = 0;
  w.on_message([&](message) {
    if (--remaining > 0) return void(w.post_message(json{{"ping", remaining}}));
    us = seconds_since(start) / count * 1e6;
    w.terminate();
  });
  w.post_message(json{{"ping", remaining}});
  loop.run();
  return us;
}

// The worker counts what arrives and reports once it has `expected`.
double one_way_rate(long count) {
  crew::loop loop;
  worker w(
      [] {
        long expected = worker_data().get<long>();
        auto received = std::make_shared<long>(0);
        parent_port()->on_message([expected, received](message) {
          if (++*received == expected) parent_port()->post_message(*received);
        });
      },
      {.data = count});
  clock::time_point start;
  double rate = 0;
  w.on_online([&] {
    start = clock::now();
    for (long i = 0; i < count; ++i) {
      json item;  // {"i": i}, Node's { i }; operator[] builds it twice as fast as json{{"i", i}}
      item["i"] = i;
      w.post_message(std::move(item));
    }
  });
  w.on_message([&](message) {
    rate = count / seconds_since(start);
    w.terminate();
  });
  loop.run();
  return rate;
}

}  // namespace

int worker_threads(const options& opts) {
  long count = opts.integer("count", 100000);
  report("worker_startup", startup_ms(20), "ms");
  report("worker_roundtrip", roundtrip_us(count, std::chrono::microseconds(50)), "us");
  report("worker_roundtrip_nospin", roundtrip_us(count / 10, std::chrono::microseconds(0)), "us");
  report("worker_one_way", one_way_rate(count * 10), "msg_per_s");
  return 0;
}

}  // namespace crew::bench
