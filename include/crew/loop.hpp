// The event loop: one per thread, over libuv's uv_loop_t.
//
// Objects that crew creates (timers, signal watchers, child processes, servers)
// belong to the loop of the thread that made them and are used only on that
// thread. Other threads reach a loop in exactly one way: loop::post().
//
//   crew::loop& loop = crew::loop::current();
//   std::thread helper([&loop] { loop.post([] { std::puts("back on the loop"); }); });
//   crew::loop::keep_alive hold(loop);   // run() waits for the helper's post...
//   loop.post([&hold] { hold = {}; });   // ...until this releases it
//   loop.run();
//   helper.join();
//
// A callback that throws stops the loop; run() then rethrows that exception.
#pragma once

#include <uv.h>

#include <coroutine>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "crew/unique_function.hpp"

namespace crew {

namespace detail {
struct handle_state;
struct task_promise_base;

/// A coroutine frame that belongs to a loop (a crew::task's): listed with the
/// loop, which destroys the frames still there when it is destroyed itself.
struct loop_frame {
  void* frame = nullptr;  // std::coroutine_handle<>::address()
  loop_frame* previous = nullptr;
  loop_frame* next = nullptr;
};
}  // namespace detail

/// An event loop. Not movable: handles point at it.
///
/// Thread-safety: every member but post() is for the loop's own thread (the
/// thread that constructed it). post() may be called from any thread while the
/// loop exists.
class loop {
 public:
  /// Makes a new loop. If the calling thread has no current loop yet, this one
  /// becomes its current loop. Throws std::system_error if libuv cannot make one
  /// (for example EMFILE when the fd table is full).
  loop();

  /// Destroys the coroutines (crew::task frames) still suspended on this loop,
  /// which nothing can resume any more, closes every handle still open on it
  /// (their owners become inert: a closed handle's methods do nothing), runs the
  /// close callbacks, drops posts that never ran, and closes the uv loop. No
  /// callback of the user's runs inside it, completions included
  /// (docs/lifetime.md): what they capture may be gone already.
  ~loop();

  loop(const loop&) = delete;
  loop& operator=(const loop&) = delete;

  /// The calling thread's loop: the first loop constructed on this thread, or,
  /// when there is none, a loop made for the thread on first use and destroyed
  /// when the thread exits.
  static loop& current();

  /// The underlying libuv loop, for code that uses libuv directly.
  uv_loop_t* native() noexcept { return &uv_; }

  /// Runs callbacks until nothing keeps the loop alive (no referenced handle, no
  /// keep_alive, no pending work) or stop() is called. If a callback threw, the
  /// loop stops and run() rethrows the first such exception.
  void run();

  /// Runs one iteration, waiting for events if needed. Returns whether something
  /// still keeps the loop alive. Rethrows like run().
  bool run_once();

  /// Makes run() return after the current iteration.
  void stop() noexcept { uv_stop(&uv_); }

  /// Whether referenced handles or requests keep the loop alive.
  bool alive() const noexcept { return uv_loop_alive(&uv_) != 0; }

  /// Queues fn to run on the loop's thread, after the current callback returns
  /// (never inside post()). Thread-safe. Posts from one thread run in the order
  /// posted; posts are drained in batches, one wake-up for many posts. A post
  /// does not by itself keep a loop alive: use keep_alive to make run() wait for
  /// posts from other threads. Posts still queued when the loop is destroyed are
  /// destroyed without running.
  void post(unique_function<void()> fn);

  /// Runs fn on a later turn, and keeps run() going until it has: a
  /// completion owed to a caller (of an object already closed, say) is never
  /// lost to a loop that had nothing else left to do. Loop thread only.
  void later(unique_function<void()> fn);

  /// Whether the calling thread is this loop's thread.
  bool in_loop_thread() const noexcept { return std::this_thread::get_id() == thread_; }

  /// Keeps a loop's run() from returning while it exists, like a referenced
  /// handle. Construct it on the loop's thread; destroy or reset it on any thread.
  class keep_alive {
   public:
    keep_alive() noexcept = default;
    explicit keep_alive(loop& l);
    keep_alive(keep_alive&& other) noexcept : loop_(std::exchange(other.loop_, nullptr)) {}
    keep_alive& operator=(keep_alive&& other) noexcept;
    ~keep_alive() { release(); }

   private:
    void release() noexcept;
    loop* loop_ = nullptr;
  };

  /// Runs fn, catching what it throws: the exception stops the loop and
  /// run() rethrows it. Every crew callback goes through here, because an
  /// exception must not unwind through libuv's C frames. While the loop is
  /// being destroyed it runs nothing.
  template <class F, class... Args>
  void invoke(F& fn, Args&&... args) noexcept {
    if (destroying_) return;
    try {
      fn(std::forward<Args>(args)...);
    } catch (...) {
      fail(std::current_exception());
    }
  }

 private:
  friend struct detail::handle_state;
  friend struct detail::task_promise_base;

  void fail(std::exception_ptr error) noexcept;
  void rethrow_failure();
  void drain_posts();
  static void on_async(uv_async_t* async);
  void hold();
  void unhold() noexcept;

  uv_loop_t uv_;
  uv_async_t async_;
  std::thread::id thread_;
  std::exception_ptr failure_;
  bool destroying_ = false;                // ~loop() has begun: no user callback runs
  int holds_ = 0;                          // keep_alive count; loop thread only
  detail::handle_state* handles_ = nullptr;  // open crew handles; loop thread only
  detail::loop_frame* frames_ = nullptr;     // crew::task frames not yet destroyed; loop thread only

  std::mutex posts_mutex_;
  std::vector<unique_function<void()>> posts_;  // guarded by posts_mutex_
  std::vector<unique_function<void()>> draining_;  // loop thread only
};

}  // namespace crew
