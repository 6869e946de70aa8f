// Workload `spawn`: sequential spawn-and-exit of /bin/true.
//   spawn_rate  per_s  --count N children, one after another; with --hold-mib M
//                      the parent first makes M MiB resident (spawn cost vs memory)
// --path libuv runs the same loop through libuv's uv_spawn (fork-based in 1.44),
// to measure crew's clone path against it.
#include <cstring>
#include <memory>
#include <string>

#include "crew/child_process.hpp"
#include "workload.hpp"

namespace crew::bench {
namespace {

double crew_rate(long count) {
  crew::loop loop;
  long done = 0;
  crew::child_process child;
  std::function<void()> next = [&] {
    child = crew::spawn("/bin/true", {}, {.stdio = {stdio::ignore(), stdio::ignore(), stdio::ignore()}}, loop);
    child.on_exit([&](exit_status) {
      if (++done < count) next();
    });
  };
  clock::time_point start = clock::now();
  next();
  loop.run();
  return done / seconds_since(start);
}

double libuv_rate(long count) {
  uv_loop_t* loop = uv_default_loop();
  struct run {
    long done = 0, count = 0;
    uv_process_t process{};
    uv_process_options_t options{};
    char* args[2] = {const_cast<char*>("/bin/true"), nullptr};
    uv_stdio_container_t stdio[3]{};
  } r;
  r.count = count;
  r.options.file = r.args[0];
  r.options.args = r.args;
  r.options.stdio_count = 3;
  r.options.stdio = r.stdio;  // UV_IGNORE
  r.options.exit_cb = [](uv_process_t* p, int64_t, int) {
    uv_close(reinterpret_cast<uv_handle_t*>(p), [](uv_handle_t* h) {
      auto* self = static_cast<run*>(h->data);
      if (++self->done < self->count) {
        self->process.data = self;
        uv_spawn(h->loop, &self->process, &self->options);
      }
    });
  };
  r.process.data = &r;
  clock::time_point start = clock::now();
  if (uv_spawn(loop, &r.process, &r.options) != 0) return 0;
  uv_run(loop, UV_RUN_DEFAULT);
  return r.done / seconds_since(start);
}

}  // namespace

int spawn(const options& opts) {
  long count = opts.integer("count", 2000);
  long hold_mib = opts.integer("hold-mib", 0);
  std::string path = opts.text("path", "crew");
  // Resident memory: every page written, so that a fork would have to copy its table.
  std::unique_ptr<char[]> held;
  if (hold_mib > 0) {
    held = std::make_unique<char[]>(static_cast<std::size_t>(hold_mib) << 20);
    std::memset(held.get(), 1, static_cast<std::size_t>(hold_mib) << 20);
  }
  double rate = path == "libuv" ? libuv_rate(count) : crew_rate(count);
  report("spawn_rate", rate, "per_s");
  return held && held[0] != 1;
}

}  // namespace crew::bench
