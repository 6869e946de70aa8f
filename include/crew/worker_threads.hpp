// Worker threads: Node's worker_threads. A worker runs a function on a new
// thread with its own loop and talks to its parent through messages.
//
//   crew::worker w([] {
//     const crew::message& data = crew::worker_data();       // {"n": 35}
//     (void)crew::parent_port()->post_message(fibonacci(data.value()["n"]));
//   }, {.data = {{"n", 35}}});
//   w.on_message([](crew::message m) { std::cout << m.value() << "\n"; });
//   w.on_exit([](int code) { std::cout << "exit " << code << "\n"; });
//   crew::loop::current().run();   // returns once the worker has exited
//
// Inside the worker, is_main_thread(), parent_port(), worker_data(),
// thread_id() and worker_stop_token() describe it, as Node's module-level
// exports do. After its function returns, the worker keeps running its loop
// while something keeps it alive (a parent_port() with a message callback,
// a timer), exactly like a Node worker after its script ends.
//
// A C++ thread cannot be killed: terminate() stops the worker's loop and
// requests stop on its stop token, and the worker ends when its function
// returns. A long computation should poll worker_stop_token() (see
// docs/worker_threads.md). Where a hard kill is needed, use a process.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <map>
#include <optional>
#include <stop_token>
#include <string>
#include <type_traits>

#include "crew/detail/handle.hpp"
#include "crew/unique_function.hpp"
#include "crew/loop.hpp"
#include "crew/message.hpp"
#include "crew/message_port.hpp"
#include "crew/task.hpp"

namespace crew {

namespace detail {
struct worker_state;
void report_worker_messageerror(worker_state* state, std::error_code error);

/// What a worker runs: a function of no arguments returning void or an exit code.
template <class F>
concept worker_entry = std::is_invocable_v<F&> && (std::is_void_v<std::invoke_result_t<F&>> ||
                                                   std::is_convertible_v<std::invoke_result_t<F&>, int>);
}  // namespace detail

/// Options of a worker.
struct worker_options {
  message data;                                           ///< worker_data() inside; default: null
  std::string name;                                       ///< the thread's name (15 bytes shown); default: ""
  std::size_t stack_size = 0;                             ///< bytes; default: 0 (the system's, 8 MiB)
  std::optional<std::map<std::string, std::string>> env;  ///< worker_env(); default: a copy of the process's
  std::chrono::microseconds spin{50};                     ///< message_port::set_spin of both ends; default: 50 us
};

/// What the error event carries: the exception that escaped the worker's
/// function or one of its callbacks, and its what() (or a description).
struct worker_error_event {
  std::exception_ptr exception;
  std::string message;
};

/// A worker thread, seen from the thread that started it. Move-only; its
/// events run on the loop that made it. Destroying a running worker terminates
/// it and waits for its thread (blocking until its function returns).
///
/// Events, in order: online (the thread is running), message (each message the
/// worker posted), error (an exception escaped the worker: then exit has code
/// 1), exit(code) last: after every message the worker posted.
/// Until exit, a worker keeps its parent's loop alive (unless unref()).
class worker : private detail::handle_owner {
 public:
  /// Node's worker.ref()/unref(): a referenced worker keeps its parent's loop
  /// running until it exits (the default).
  using handle_owner::ref;
  using handle_owner::unref;
  using handle_owner::has_ref;

  using entry_function = unique_function<int()>;

  /// Starts `entry` on a new thread. entry returns void or an int exit code.
  /// Throws std::system_error if the thread cannot be made (EAGAIN).
  template <detail::worker_entry F>
  explicit worker(F entry, worker_options options, loop& l = loop::current())
      : worker(wrap(std::move(entry)), std::move(options), l, 0) {}
  /// The same with default options. An overload, not a default argument:
  /// GCC 12 mis-compiles a defaulted options struct inside co_await
  /// (docs/async.md).
  template <detail::worker_entry F>
  explicit worker(F entry, loop& l = loop::current()) : worker(wrap(std::move(entry)), worker_options{}, l, 0) {}

  worker(worker&&) noexcept = default;
  worker& operator=(worker&&) noexcept = default;
  ~worker();

  /// Sends m to the worker's parent_port(). Errors as message_port::post_message
  /// (ERR_CLOSED_MESSAGE_PORT once the worker has exited); ignoring it is fine.
  std::error_code post_message(message m);

  void on_online(unique_function<void()> fn);
  void on_message(message_port::message_callback fn);
  /// Typed messages, as message_port::on_message<T>; mismatches go to on_messageerror.
  template <class T, class F>
    requires std::is_invocable_v<F&, T>
  void on_message(F fn) {
    on_message([state = state(), fn = std::move(fn)](message m) mutable {
      auto value = m.template try_get<T>();
      if (!value) return detail::report_worker_messageerror(state, value.error());
      fn(std::move(value).value());
    });
  }
  void on_messageerror(message_port::error_callback fn);
  void on_error(unique_function<void(worker_error_event)> fn);
  void on_exit(unique_function<void(int)> fn);

  /// Node's `await once(worker, 'exit')`: co_await gives the exit code once
  /// the worker has exited (at once, without suspending, if it has already).
  /// ECANCELED when this object is destroyed first. Does not replace on_exit().
  awaitable<result<int>> exited();

  /// Asks the worker to stop: its loop stops, its stop token is requested, its
  /// port closes. `done` runs with the exit code (1, as Node's terminate gives,
  /// or the worker's own code if it was already exiting) after the worker's
  /// function has returned; right away (from the loop) if it has already exited.
  void terminate(unique_function<void(int)> done = {});

  /// Node's worker.threadId: the id thread_id() returns inside the worker.
  int thread_id() const noexcept { return thread_id_; }

 private:
  worker(entry_function entry, worker_options options, loop& l, int);
  detail::worker_state* state() noexcept;

  template <class F>
  static entry_function wrap(F entry) {
    if constexpr (std::is_void_v<std::invoke_result_t<F&>>)
      return [entry = std::move(entry)]() mutable {
        entry();
        return 0;
      };
    else
      return [entry = std::move(entry)]() mutable { return static_cast<int>(entry()); };
  }

  friend struct detail::worker_state;
  int thread_id_ = 0;
  loop* loop_ = nullptr;
  std::optional<int> exit_code_;  // once the exit event has run
};

/// Whether the calling thread is not a crew worker (Node's isMainThread).
bool is_main_thread() noexcept;

/// Inside a worker: the port to the thread that started it (Node's parentPort).
/// nullptr on the main thread.
message_port* parent_port() noexcept;

/// Inside a worker: worker_options::data. A null message on the main thread.
const message& worker_data() noexcept;

/// 0 on the main thread; a worker's own id (1, 2, ...) inside it.
int thread_id() noexcept;

/// Inside a worker: requested by worker::terminate() or exit_worker(). A token
/// that is never requested on the main thread.
std::stop_token worker_stop_token() noexcept;

/// Inside a worker: its environment (worker_options::env); child processes it
/// spawns without an env of their own get this one. On the main thread, the
/// process's environment.
std::map<std::string, std::string> worker_env();

/// Inside a worker: ends it with `code` (Node's process.exit in a worker): its
/// loop stops and its stop token is requested; the exit event reports `code`
/// once the worker's function returns. Does nothing on the main thread.
void exit_worker(int code) noexcept;

}  // namespace crew
