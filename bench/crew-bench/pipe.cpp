// Workload `pipe`: reading a child's stdout.
//   pipe_throughput  MB_per_s  a child (head -c) writes --mib N MiB of zeros; we read them all
#include <string>

#include "crew/child_process.hpp"
#include "workload.hpp"

namespace crew::bench {

int pipe(const options& opts) {
  long mib = opts.integer("mib", 1024);
  crew::loop loop;
  long long received = 0;
  clock::time_point start = clock::now();
  crew::child_process child =
      crew::spawn("head", {"-c", std::to_string(mib << 20), "/dev/zero"}, {.stdio = {stdio::ignore(), stdio::pipe(), stdio::ignore()}}, loop);
  child.out().on_data([&](std::string_view chunk) { received += static_cast<long long>(chunk.size()); });
  loop.run();
  double seconds = seconds_since(start);
  if (received != (static_cast<long long>(mib) << 20)) std::fprintf(stderr, "pipe: received %lld bytes\n", received);
  report("pipe_throughput", static_cast<double>(received) / 1e6 / seconds, "MB_per_s");
  return 0;
}

}  // namespace crew::bench
