// worker-same-file: the seeds' isMainThread pattern. One program is both the
// main thread and the worker: the same function runs on both and branches on
// is_main_thread(). The main side sends {numbers: [1, 2, 3, 4, 5]}; the worker
// answers with the sum of their squares.
//
//   if (isMainThread) {
//     const worker = new Worker(__filename);
//     worker.postMessage({ numbers: [1, 2, 3, 4, 5] });
//     worker.on('message', (result) => console.log('Result from worker:', result));
//   } else {
//     parentPort.on('message', ({ numbers }) => parentPort.postMessage(numbers.reduce(...)));
//   }
//
// In Node that program never exits (the worker listens forever); here the main
// side terminates the worker once it has its answer.
#include <crew/crew.hpp>

#include <cstdio>
#include <optional>
#include <vector>

namespace {

std::optional<crew::worker> worker;  // the main thread's

void program() {
  if (crew::is_main_thread()) {
    worker.emplace(program);
    using json = crew::message::value_type;
    worker->post_message(json{{"numbers", {1, 2, 3, 4, 5}}});
    worker->on_message([](crew::message result) {
      std::printf("Result from worker: %d\n", result.get<int>());
      worker->terminate();
    });
    worker->on_error([](crew::worker_error_event e) { std::fprintf(stderr, "Worker error: %s\n", e.message.c_str()); });
  } else {
    crew::parent_port()->on_message([](crew::message m) {
      int sum = 0;
      for (int n : m.value()["numbers"].get<std::vector<int>>()) sum += n * n;
      crew::parent_port()->post_message(sum);
    });
  }
}

}  // namespace

int main() {
  program();
  crew::loop::current().run();
  return 0;
}
