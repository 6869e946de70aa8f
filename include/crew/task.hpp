// Coroutines on the loop: crew::task<T>, for code that reads like Node's async
// functions.
//
//   crew::task<> report() {
//     crew::exec_result r = co_await crew::exec("ps aux | head -10");
//     std::fputs(r.out.c_str(), stdout);
//   }
//   int main() {
//     crew::task<> t = report();   // starts at once, runs until its first co_await
//     crew::loop::current().run(); // the loop resumes it when exec completes
//   }
//
// A task starts eagerly and is awaitable once (co_await t gives its value or
// rethrows its exception). Dropping a task that has not finished does not stop
// it: it runs to completion and frees itself, so a pending operation never
// resumes a freed coroutine; an exception it ends with, which nobody can await
// any more, is thrown from loop::run() of the thread's loop.
//
// GCC 12 mis-copies some temporaries inside a co_await expression (an options
// struct written as {} or with default member initializers, a braced list of
// string literals): give them names before the co_await, as the examples do.
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <utility>

#include "crew/loop.hpp"

namespace crew {

template <class T = void>
class task;

namespace detail {

struct task_promise_base {
  std::coroutine_handle<> continuation;  // who awaits this task
  std::exception_ptr error;
  bool detached = false;                 // the task object is gone: free the frame at the end

  std::suspend_never initial_suspend() noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
      task_promise_base& p = self.promise();
      if (p.continuation) return p.continuation;
      if (p.detached) {
        std::exception_ptr unobserved = p.error;
        self.destroy();
        // Nobody will await it: throw it on the loop, from run(), like any
        // exception escaping a callback. The hold keeps run() going until then.
        if (unobserved) {
          loop& l = loop::current();
          l.post([unobserved, hold = loop::keep_alive(l)] { std::rethrow_exception(unobserved); });
        }
      }
      return std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct task_promise : task_promise_base {
  std::optional<T> value;
  task<T> get_return_object() noexcept;
  template <class U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
};

template <>
struct task_promise<void> : task_promise_base {
  task<void> get_return_object() noexcept;
  void return_void() noexcept {}
};

}  // namespace detail

/// A coroutine running on the loop. Move-only. Await it at most once.
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;

  task(task&& other) noexcept : frame_(std::exchange(other.frame_, nullptr)) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      release();
      frame_ = std::exchange(other.frame_, nullptr);
    }
    return *this;
  }
  ~task() { release(); }

  /// Whether the coroutine has finished.
  bool done() const noexcept { return !frame_ || frame_.done(); }

  bool await_ready() const noexcept { return done(); }
  void await_suspend(std::coroutine_handle<> awaiting) noexcept { frame_.promise().continuation = awaiting; }
  T await_resume() {
    auto& p = frame_.promise();
    if (p.error) std::rethrow_exception(p.error);
    if constexpr (!std::is_void_v<T>) return std::move(*p.value);
  }

 private:
  friend promise_type;
  explicit task(std::coroutine_handle<promise_type> frame) noexcept : frame_(frame) {}

  void release() noexcept {
    if (!frame_) return;
    if (frame_.done())
      frame_.destroy();
    else
      frame_.promise().detached = true;
    frame_ = nullptr;
  }

  std::coroutine_handle<promise_type> frame_;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}
}  // namespace detail

}  // namespace crew
