// crew::pool: worker threads that run named tasks, as piscina does for Node.
//
//   crew::pool pool({{"fib", [](crew::message n) { return fib(n.get<int>()); }}});
//   pool.run(40, {.task = "fib"}, [](crew::result<crew::message> r) {   // back on this loop
//     if (r) std::printf("%d\n", r->get<int>());
//     else std::printf("failed: %s\n", crew::error_name(r.error()).c_str());
//   });
//   crew::result<crew::message> r = co_await pool.run(40, {.task = "fib", .timeout = 1s});
//
// A task is a function registered with the pool under a name (or the pool's
// one function): it takes a message and returns one, on one of the pool's
// threads. The pool starts threads as tasks come, up to max_threads, queues
// what no thread can take yet (by priority, then in order), and stops threads
// that stay idle. The result comes back on the loop that called run(), from
// any number of loops.
//
// Each run completes exactly once (docs/callbacks.md: on its loop, never inside
// run()), with the task's value or an error: ETIMEDOUT past its timeout,
// ECANCELED when its stop token is stopped or the pool is destroyed,
// ERR_QUEUE_FULL past max_queue, ERR_POOL_CLOSED after close(),
// ERR_POOL_UNKNOWN_TASK for a name the pool does not have, or
// ERR_UNCAUGHT_EXCEPTION with the exception the task threw. A task that has
// started is never killed (a thread cannot be): it sees its stop token, and
// what it returns after its run completed is dropped.
//
// Lifetime (docs/lifetime.md): destroying the pool destroys it (every run not
// complete gets ECANCELED) and waits for the tasks running on its threads to
// return; they see their stop tokens.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>

#include "crew/error.hpp"
#include "crew/loop.hpp"
#include "crew/message.hpp"
#include "crew/task.hpp"
#include "crew/unique_function.hpp"

namespace crew {

/// What a running task can see besides its input.
struct task_context {
  std::stop_token stop;                      ///< stopped when its run is cancelled, times out, or the pool is destroyed
  const message::value_type& worker_data;    ///< pool_options::worker_data (piscina's workerData)
  int thread;                                ///< which of the pool's threads runs it: 1, 2, ...
};

/// A task function: any callable taking a message (and, if it wants, the
/// task_context) and returning something a message can be made of, or a
/// crew::result of it: an error there (ENOENT, say) is the run's error, as a
/// rejection with err.code is in Node. It runs on the pool's threads, several
/// at once: it must be safe to call concurrently.
class pool_task {
 public:
  template <class F>
    requires std::is_invocable_v<const F&, message, const task_context&> || std::is_invocable_v<const F&, message>
  pool_task(F fn)  // NOLINT: implicit, so that a map of names to lambdas reads as one
      : fn_([fn = std::move(fn)](message&& in, const task_context& context) -> result<message> {
          if constexpr (std::is_invocable_v<const F&, message, const task_context&>)
            return outcome(fn(std::move(in), context));
          else
            return outcome(fn(std::move(in)));
        }),
        sees_context_(std::is_invocable_v<const F&, message, const task_context&>) {}

  result<message> operator()(message&& in, const task_context& context) const { return fn_(std::move(in), context); }

  /// Whether the function takes the task_context (and so may watch its stop token).
  bool sees_context() const noexcept { return sees_context_; }

 private:
  template <class T>
  static result<message> outcome(T&& value) {
    return message(std::forward<T>(value));
  }
  template <class T>
  static result<message> outcome(result<T>&& r) {
    if (r) return message(std::move(*r));
    if (r.exception()) return result<message>(r.exception());
    return r.error();
  }

  std::function<result<message>(message&&, const task_context&)> fn_;  // && : a message is moved once, not at each call
  bool sees_context_;
};

/// Options of a pool.
struct pool_options {
  /// Threads kept even when idle; default: max_threads / 2, at least 1 (piscina's).
  std::size_t min_threads = 0;
  /// Threads at most; default: 0, meaning one per core.
  std::size_t max_threads = 0;
  /// A thread beyond min_threads that has been idle this long stops; default: 1 s.
  std::chrono::milliseconds idle_timeout{1000};
  /// Tasks waiting for a thread, at most; past it run() fails with
  /// ERR_QUEUE_FULL. pool_options::auto_queue: max_threads²; default: no bound.
  std::size_t max_queue = no_bound;
  /// Given to every task in its task_context; default: null.
  message::value_type worker_data;
  /// A thread that finished a task, and a loop that awaits results, poll for
  /// this long before they sleep, so that a quick task or result is taken at
  /// once instead of after a wake-up (tens of microseconds on virtual
  /// machines). Costs at most this much CPU time per task. 0 never spins.
  /// Default: 50 us.
  std::chrono::microseconds spin{50};

  static constexpr std::size_t no_bound = static_cast<std::size_t>(-1);
  static constexpr std::size_t auto_queue = 0;
};

/// Options of one run. Trivially destructible, so that it may be written in
/// braces inside co_await (GCC 12, docs/async.md); the stop token is a
/// parameter of its own for that reason.
struct run_options {
  /// The task's name; default: "" (the pool's one function, or the task named "").
  /// run() copies it: the text need not outlive the call, nor an awaitable run.
  std::string_view task;
  /// ETIMEDOUT after this long, queued or running (a running task is asked to
  /// stop); default: 0, never.
  std::chrono::milliseconds timeout{0};
  /// Higher runs first; equal priorities run in the order sent; default: 0.
  int priority = 0;
};
static_assert(std::is_trivially_destructible_v<run_options>,
              "run_options is written in braces inside co_await: GCC 12 copies it bit by bit");

/// How long tasks waited or ran, in microseconds.
struct duration_summary {
  std::uint64_t count = 0;
  double mean = 0, min = 0, max = 0;
  double p50 = 0, p90 = 0, p99 = 0;  ///< within 1/16 of the true value
};

/// A snapshot of a pool, as piscina's properties give it.
struct pool_stats {
  std::size_t threads = 0;      ///< started and not stopped
  std::size_t running = 0;      ///< tasks on a thread now
  std::size_t queue_size = 0;   ///< tasks waiting for a thread
  std::uint64_t completed = 0;  ///< tasks that returned or threw
  /// The share of max_threads' time spent running tasks since the pool started, 0..1.
  double utilization = 0;
  duration_summary wait_time;  ///< from run() to a thread taking the task
  duration_summary run_time;   ///< on the thread
};

namespace detail {
struct pool_state;
}

/// A pool of threads running tasks. Thread-safe: any thread with a loop may
/// call run(); results come back on that loop. Move-only.
class pool {
 public:
  using done_callback = unique_function<void(result<message>)>;

  /// A pool of named tasks.
  explicit pool(std::map<std::string, pool_task, std::less<>> tasks, pool_options options = pool_options());
  /// A pool of one task (run it with the default run_options::task, "").
  explicit pool(pool_task task, pool_options options = pool_options());
  pool(pool&&) noexcept;
  pool& operator=(pool&&) noexcept;
  /// destroy(), then waits for the tasks still running to return.
  ~pool();

  /// Sends `in` to the task options.task; done(result) runs on this thread's
  /// loop once, with the task's value or the error (see the top of this file).
  /// A stop request on `stop` cancels the run (ECANCELED): a queued task is
  /// removed, a running one sees its task_context::stop. While the run is
  /// pending, the loop stays alive.
  void run(message in, run_options options, done_callback done, std::stop_token stop = {});

  /// The same, awaited: `co_await pool.run(in, {.task = "fib"})`. Destroying
  /// the awaitable before it completes cancels the run.
  awaitable<result<message>> run(message in, run_options options = {}, std::stop_token stop = {});

  /// Takes no more tasks (run() fails with ERR_POOL_CLOSED); those sent before
  /// still run. done runs once, on this thread's loop, when the last of them
  /// has finished. The threads then stop.
  void close(unique_function<void()> done = {});

  /// Takes no more tasks, completes every run not complete with ECANCELED and
  /// asks the running tasks to stop. done runs once, on this thread's loop,
  /// when they have all returned.
  void destroy(unique_function<void()> done = {});

  pool_stats stats() const;

 private:
  std::shared_ptr<detail::pool_state> state_;
};

}  // namespace crew
