// crew::process_pool: the pool of pool.hpp over worker processes. Each worker
// is a child with crew's IPC channel (Node's protocol): this program
// re-executed, another program, or a Node script. A worker that hangs or
// crashes costs only the task it ran: it is killed (its whole process group)
// and replaced, and the other tasks go on.
//
//   int main() {
//     crew::pool_tasks tasks = {{"resize", resize}, {"fib", fib}};
//     if (crew::process_pool::is_worker()) return crew::process_pool::serve(tasks);
//     crew::process_pool pool({.max_workers = 4});
//     pool.run(40, {.task = "fib", .timeout = 1s}, [](crew::result<crew::message> r) { ... });
//     crew::loop::current().run();
//   }
//
// The wire, one JSON message each way, which a Node worker speaks as easily:
//   to the worker    {"id": 7, "task": "fib", "value": 40}
//   from the worker  {"id": 7, "value": 102334155}
//                    {"id": 7, "error": {"code": "ENOENT", "message": "...", "errno": -2}}
// (examples/node-pool-worker.js is a whole Node worker).
//
// Each run completes once, on the pool's loop, never inside run(): with the
// value, or ETIMEDOUT (its worker is killed), ECANCELED (stopped; a running
// task's worker is killed), ERR_QUEUE_FULL, ERR_POOL_CLOSED,
// ERR_POOL_WORKER_EXITED (the worker exited during the task), the signal that
// killed the worker (signal_error(): error_name() gives "SIGSEGV"), or the
// task's own error. A process pool lives on one loop.
//
// Lifetime (docs/lifetime.md): destroying the pool completes every run not
// complete with ECANCELED (on a later turn) and terminates its workers, which
// are reaped (docs/reaping.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "crew/child_process.hpp"
#include "crew/detail/handle.hpp"
#include "crew/pool.hpp"

namespace crew {

/// Task functions by name, as a worker serves them.
using pool_tasks = std::map<std::string, pool_task, std::less<>>;

/// Options of a process pool.
struct process_pool_options {
  /// The worker program: default "", this program re-executed (its main calls
  /// process_pool::serve() when is_worker()); or a program's path, or a
  /// script run by exec_path.
  std::string program;
  std::vector<std::string> args;  ///< the worker's arguments; default: none
  std::string exec_path;          ///< what runs `program`, e.g. "node"; default: "" (run it itself)
  std::size_t min_workers = 1;    ///< kept even when idle; default: 1
  std::size_t max_workers = 0;    ///< at most; default: 0, one per core
  /// A worker beyond min_workers that has been idle this long exits; default: 1 s.
  std::chrono::milliseconds idle_timeout{1000};
  /// Tasks waiting for a worker, at most; past it ERR_QUEUE_FULL. default: no bound.
  std::size_t max_queue = pool_options::no_bound;
  /// Tasks sent to one worker before it has answered the first (piscina's
  /// concurrentTasksPerWorker): a worker serves them in turn (or at once, if it
  /// is async, as a Node worker may be), and the channel never waits for a
  /// round trip. A worker that dies fails all of them. Default: 1.
  std::size_t concurrent_tasks_per_worker = 1;
  /// A worker that has run this many tasks is replaced before the next; default: 0, never.
  std::size_t max_tasks_per_worker = 0;
  /// A worker whose resident memory is past this after a task is replaced; default: 0, never.
  std::uint64_t max_memory_bytes = 0;
  /// How workers start (env, extra_env, cwd, uid...). Each leads a process
  /// group of its own, which a kill reaches whole. Default: process_options().
  process_options process;
};

/// A pool of worker processes. Loop thread only. Move-only.
class process_pool : private detail::handle_owner {
 public:
  using done_callback = pool::done_callback;

  explicit process_pool(process_pool_options options = process_pool_options(), loop& l = loop::current());

  /// Sends `in` to the task options.task in a worker; done(result) runs once on
  /// the pool's loop (see the top of this file). A stop request on `stop`
  /// (from any thread) cancels it: a queued task is removed, a running one's
  /// worker is killed. While the run is pending, the loop stays alive.
  void run(message in, run_options options, done_callback done, std::stop_token stop = {});

  /// The same, awaited. Destroying the awaitable before it completes cancels the run.
  awaitable<result<message>> run(message in, run_options options = {}, std::stop_token stop = {});

  /// Takes no more tasks (ERR_POOL_CLOSED); those sent before still run. Then
  /// the workers are disconnected and exit; done runs once they all have.
  void close(unique_function<void()> done = {});

  /// Takes no more tasks, completes every run not complete with ECANCELED, and
  /// terminates the workers; done runs once they have all exited.
  void destroy(unique_function<void()> done = {});

  pool_stats stats() const;

  /// Whether this process is a process pool's worker (started by one).
  static bool is_worker() noexcept;

  /// In a worker: runs each task the pool sends with `tasks`, one at a time,
  /// and answers it, until the pool disconnects. Gives the exit code: 0, or 2
  /// when this process is no pool's worker.
  static int serve(const pool_tasks& tasks);

  struct state;

 private:
  state* get() const noexcept;
  void wind_down(unique_function<void()> done, bool cancel);
};

}  // namespace crew
