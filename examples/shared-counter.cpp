// shared-counter: shared memory across processes, beyond Node. The parent makes
// a shared buffer (a memfd), forks P copies of itself and sends each the
// buffer's descriptor over the IPC channel; each child maps it and adds 1 to
// one 64-bit cell M times with an atomic add, then exits. The parent prints the
// final count, which is exactly P * M.
//
//   shared-counter [--procs P] [--iters M]        (defaults: 4, 1000000)
#include <crew/crew.hpp>

#include "command_line.hpp"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

// In a child: wait for the buffer, count, report, leave.
int child() {
  crew::ipc_channel* parent = crew::parent_channel();
  if (!parent) return 2;
  int status = 1;
  parent->on_message([&](crew::message m) {
    if (m.fds().size() != 1) return parent->disconnect();
    auto memory = crew::shared_buffer::from_fd(m.fds()[0]);
    if (!memory) {
      std::fprintf(stderr, "shared-counter: %s\n", crew::error_name(memory.error()).c_str());
      return parent->disconnect();
    }
    crew::atomic_view<std::int64_t> count(*memory);
    for (long i = 0, n = m.value()["iters"].get<long>(); i < n; ++i) count.add(0, 1);
    status = 0;
    parent->disconnect();
  });
  crew::loop::current().run();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "child") == 0) return child();
  long procs = examples::option(argc, argv, "--procs", 4, 1, 1024);
  long iterations = examples::option(argc, argv, "--iters", 1'000'000);

  crew::shared_buffer memory(sizeof(std::int64_t));
  crew::atomic_view<std::int64_t> count(memory);
  std::vector<crew::child_process> children;
  long exited = 0, failed = 0;
  for (long p = 0; p < procs; ++p) {
    children.push_back(crew::fork("/proc/self/exe", {"child"}));
    crew::child_process& c = children.back();
    c.on_error([](std::error_code ec) { std::fprintf(stderr, "shared-counter: %s\n", crew::error_name(ec).c_str()); });
    c.on_exit([&](crew::exit_status s) {
      if (s.code != 0) ++failed;
      if (++exited == procs)
        std::printf("final count: %lld (expected %lld)\n", static_cast<long long>(count.load(0)),
                    static_cast<long long>(procs) * iterations);
    });
    crew::message m(crew::message::value_type{{"iters", iterations}});
    m.fds().push_back(memory.fd());  // the child gets its own descriptor of the same memory
    c.send(std::move(m));
  }
  crew::loop::current().run();
  return failed == 0 && count.load(0) == procs * iterations ? 0 : 1;
}
