// Coroutines on the loop: crew::task<T>, for code that reads like Node's async
// functions, and what they await (docs/async.md lists every awaitable).
//
//   crew::task<> report() {
//     crew::exec_result r = co_await crew::exec("ps aux | head -10");
//     std::fputs(r.out.c_str(), stdout);
//     co_await crew::sleep(100ms);
//     auto [a, b] = co_await crew::when_all(crew::exec("hostname"), crew::exec("uname -r"));
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
// any more, is thrown from loop::run() of its loop. A task's frame belongs to
// the loop that was current when it started: destroying that loop destroys the
// tasks still suspended on it (their locals' destructors run; nothing resumes
// them), as it drops posts that never ran.
//
// crew's own awaitables (crew::awaitable<T>: exec, sleep, exited, request) start
// when awaited, complete exactly once, on the loop and never inside the
// co_await that started them, and may be destroyed while pending: that cancels
// them (when_any drops its losers so).
//
// GCC 12, Debian bookworm's compiler, mis-compiles two patterns inside a full
// expression that contains co_await (docs/async.md has the details):
//   - a braced aggregate whose members have destructors (`{.cwd = dir}`, an
//     options struct written `{}`): copied bit by bit and destroyed twice, a
//     crash at run time; crew's functions never default an options struct to
//     `{}`, and the awaitable forms reject a temporary options struct at build
//     time;
//   - a braced list of strings or JSON values (`{"-l"}`, `{{"op", "add"}}`):
//     "array used as initializer", at build time.
// Give such values a name before the co_await.
#pragma once

#include <array>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "crew/error.hpp"
#include "crew/loop.hpp"

namespace crew {

template <class T = void>
class task;

template <class T>
class awaitable;

namespace detail {

struct task_promise_base {
  task_promise_base() : loop_(&loop::current()) {}
  task_promise_base(const task_promise_base&) = delete;
  task_promise_base& operator=(const task_promise_base&) = delete;
  ~task_promise_base() {
    // Destroyed before it finished (its loop went): the task object, if any,
    // learns that its coroutine is gone.
    if (owner) *owner = nullptr;
    if (!link_.frame) return;
    if (link_.previous)
      link_.previous->next = link_.next;
    else
      loop_->frames_ = link_.next;
    if (link_.next) link_.next->previous = link_.previous;
  }

  /// Lists the frame with its loop; get_return_object() calls it.
  void attach(std::coroutine_handle<> self) noexcept {
    link_.frame = self.address();
    link_.next = loop_->frames_;
    if (link_.next) link_.next->previous = &link_;
    loop_->frames_ = &link_;
  }

  std::suspend_never initial_suspend() noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
      task_promise_base& p = self.promise();
      if (p.continuation) return p.continuation;
      if (!p.owner) {
        // The task object is gone: nobody will await it, so it frees itself.
        std::exception_ptr unobserved = p.error;
        loop& l = *p.loop_;
        self.destroy();
        // Its exception is thrown on the loop, from run(), like any exception
        // escaping a callback. The hold keeps run() going until then.
        if (unobserved) l.post([unobserved, hold = loop::keep_alive(l)] { std::rethrow_exception(unobserved); });
      }
      return std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error = std::current_exception(); }

  std::coroutine_handle<> continuation;  // who awaits this task
  std::exception_ptr error;
  task_promise_base** owner = nullptr;   // the task object's pointer to this promise, while there is one

 private:
  loop* loop_;
  loop_frame link_;
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

  task(task&& other) noexcept : promise_(std::exchange(other.promise_, nullptr)) { adopt(); }
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      release();
      promise_ = std::exchange(other.promise_, nullptr);
      adopt();
    }
    return *this;
  }
  /// Lets the coroutine run on alone if it has not finished (it frees itself
  /// at the end); a coroutine that was awaiting it is not resumed by it.
  ~task() { release(); }

  /// Whether the coroutine has finished (or its loop destroyed it).
  bool done() const noexcept { return !promise_ || frame().done(); }

  bool await_ready() const noexcept { return done(); }
  void await_suspend(std::coroutine_handle<> awaiting) noexcept { promise_->continuation = awaiting; }
  /// The value, or the exception the coroutine ended with. ECANCELED (as a
  /// std::system_error) when its loop destroyed it before it finished.
  T await_resume() {
    if (!promise_) throw std::system_error(uv_error(UV_ECANCELED), "task");
    auto& p = static_cast<promise_type&>(*promise_);
    if (p.error) std::rethrow_exception(p.error);
    if constexpr (!std::is_void_v<T>) return std::move(*p.value);
  }

 private:
  friend promise_type;
  explicit task(promise_type& p) noexcept : promise_(&p) { adopt(); }

  std::coroutine_handle<promise_type> frame() const noexcept {
    return std::coroutine_handle<promise_type>::from_promise(static_cast<promise_type&>(*promise_));
  }
  void adopt() noexcept {
    if (promise_) promise_->owner = &promise_;
  }
  void release() noexcept {
    if (!promise_) return;
    std::coroutine_handle<promise_type> f = frame();
    if (f.done()) {
      f.destroy();  // clears promise_ through owner
      return;
    }
    promise_->owner = nullptr;
    promise_->continuation = nullptr;
    promise_ = nullptr;
  }

  detail::task_promise_base* promise_;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  attach(std::coroutine_handle<task_promise<T>>::from_promise(*this));
  return task<T>(*this);
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  attach(std::coroutine_handle<task_promise<void>>::from_promise(*this));
  return task<void>(*this);
}

/// An operation in flight that one coroutine awaits through crew::awaitable<T>.
/// A module derives one per kind of operation: start() begins it (from
/// await_suspend), cancel() stops it when the awaiter goes before it
/// completes, and the module calls complete() once the value is known.
template <class T>
class operation : public std::enable_shared_from_this<operation<T>> {
 public:
  explicit operation(loop& l) noexcept : loop_(l) {}
  operation(const operation&) = delete;
  operation& operator=(const operation&) = delete;
  virtual ~operation() = default;

  /// Completes the operation with v; the first call wins, later ones do
  /// nothing. The awaiting coroutine, if still there, resumes inside this call
  /// (through loop::invoke): call it from a loop callback, and touch nothing of
  /// the operation afterwards, since the resumed coroutine may free it.
  void complete(T v) {
    if (value_) return;
    value_.emplace(std::move(v));
    if (starting_) return;  // await_suspend sees the value and does not suspend
    if (std::coroutine_handle<> waiting = std::exchange(waiting_, nullptr)) {
      auto resume = [waiting] { waiting.resume(); };
      loop_.invoke(resume);
    }
  }

  /// complete(v) on a later loop turn (dropped if the loop goes first).
  void complete_later(T v) {
    loop_.post([self = this->shared_from_this(), v = std::move(v), hold = loop::keep_alive(loop_)]() mutable {
      self->complete(std::move(v));
    });
  }

  bool done() const noexcept { return value_.has_value(); }

 protected:
  virtual void start() {}
  virtual void cancel() noexcept {}  // also for an operation never started
  loop& loop_;

 private:
  friend class crew::awaitable<T>;
  std::optional<T> value_;
  std::coroutine_handle<> waiting_;
  bool started_ = false;
  bool starting_ = false;
};

/// Operations waiting for one event (a child's or a worker's exit), held
/// weakly: an awaitable dropped before the event (a when_any loser) frees its
/// operation at once instead of leaving it here until the event.
template <class T>
class waiters {
 public:
  void add(const std::shared_ptr<operation<T>>& op) {
    std::erase_if(list_, [](const std::weak_ptr<operation<T>>& w) { return w.expired(); });
    list_.push_back(op);
  }
  /// Whether no operation awaits.
  bool empty() {
    std::erase_if(list_, [](const std::weak_ptr<operation<T>>& w) { return w.expired(); });
    return list_.empty();
  }
  /// Completes every operation still awaited with v; none can join meanwhile.
  void complete_all(const T& v) {
    for (auto& w : std::exchange(list_, {}))
      if (std::shared_ptr<operation<T>> op = w.lock()) op->complete(v);
  }

 private:
  std::vector<std::weak_ptr<operation<T>>> list_;
};

}  // namespace detail

/// One of crew's asynchronous operations, as a coroutine awaits it: `co_await`
/// gives its T. It starts when first awaited (not when made), completes
/// exactly once, on its loop, never inside the co_await that started it (an
/// operation whose outcome is known at once does not suspend at all).
/// Destroying it while it is pending cancels the operation: nothing resumes
/// the coroutine afterwards. Move-only; await it once.
template <class T>
class [[nodiscard]] awaitable {
 public:
  explicit awaitable(std::shared_ptr<detail::operation<T>> op) noexcept : op_(std::move(op)) {}
  awaitable(awaitable&&) noexcept = default;
  awaitable& operator=(awaitable&& other) noexcept {
    if (this != &other) {
      abandon();
      op_ = std::move(other.op_);
    }
    return *this;
  }
  ~awaitable() { abandon(); }

  bool await_ready() const noexcept { return op_->done(); }
  bool await_suspend(std::coroutine_handle<> awaiting) {
    detail::operation<T>& op = *op_;
    op.waiting_ = awaiting;
    if (!op.started_) {
      op.started_ = op.starting_ = true;
      try {
        op.start();
      } catch (...) {
        op.starting_ = false;
        op.waiting_ = nullptr;
        throw;
      }
      op.starting_ = false;
    }
    if (!op.done()) return true;
    op.waiting_ = nullptr;
    return false;
  }
  T await_resume() { return std::move(*op_->value_); }

 private:
  void abandon() noexcept {
    if (!op_ || op_->done()) return;
    op_->waiting_ = nullptr;
    op_->cancel();
  }

  std::shared_ptr<detail::operation<T>> op_;
};

/// What when_all_settled() gives for each awaitable (Promise.allSettled's
/// {status, value} or {status, reason}): its value, or the exception it threw.
template <class T>
struct settled {
  std::optional<T> value;        ///< set when it completed
  std::exception_ptr exception;  ///< set when it threw
  bool ok() const noexcept { return value.has_value(); }
};

namespace detail {

template <class A>
using await_result_t = decltype(std::declval<A&>().await_resume());

/// What a combinator keeps of an awaitable's result: void becomes std::monostate.
template <class A>
using branch_value_t =
    std::conditional_t<std::is_void_v<await_result_t<A>>, std::monostate, std::remove_cvref_t<await_result_t<A>>>;

enum class join_mode { all, all_settled, any };

/// What the branches of one when_* share.
struct join_state {
  std::coroutine_handle<> parent;  // set once every branch has started
  std::size_t running = 0;         // branches not finished
  bool first_wins = false;         // when_any: the first branch to finish resumes the parent
  bool settled = false;            // the parent is resumed (or need not suspend)
  std::size_t first = 0;           // which branch finished first

  std::coroutine_handle<> finished(std::size_t index) noexcept {
    --running;
    if (settled || (!first_wins && running > 0)) return std::noop_coroutine();
    settled = true;
    first = index;
    // While the branches are still starting there is no parent to resume:
    // await_suspend sees `settled` and does not suspend.
    return parent ? parent : std::noop_coroutine();
  }
};

/// A coroutine that awaits one awaitable of a when_* and reports to its
/// join_state. It stays suspended at its end until the combinator destroys it.
struct branch {
  struct promise_type {
    template <class... Rest>
    promise_type(join_state& j, std::size_t i, Rest&...) noexcept : join(j), index(i) {}
    branch get_return_object() noexcept { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    struct final_awaiter {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> self) noexcept {
        return self.promise().join.finished(self.promise().index);
      }
      void await_resume() noexcept {}
    };
    final_awaiter final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }  // run_branch catches everything

    join_state& join;
    std::size_t index;
  };
  std::coroutine_handle<promise_type> handle;
};

template <class A, class V>
branch run_branch(join_state&, std::size_t, A& awaited, settled<V>& out) {
  try {
    if constexpr (std::is_void_v<await_result_t<A>>) {
      co_await awaited;
      out.value.emplace();
    } else {
      out.value.emplace(co_await awaited);
    }
  } catch (...) {
    out.exception = std::current_exception();
  }
}

/// Which awaitables a combinator may destroy while they are pending (when_any
/// drops its losers so): crew's own, which cancel themselves then.
template <class A>
inline constexpr bool cancellable = false;
template <class T>
inline constexpr bool cancellable<task<T>> = true;
template <class T>
inline constexpr bool cancellable<awaitable<T>> = true;

template <class V>
V take(settled<V>& s) {
  if (s.exception) std::rethrow_exception(s.exception);
  return std::move(*s.value);
}

/// when_all, when_all_settled and when_any over a fixed list of awaitables.
template <join_mode Mode, class... A>
class [[nodiscard]] join_awaitable {
  static_assert((cancellable<A> && ...),
                "crew::when_all/when_any take crew's awaitables and crew::task (wrap any other awaitable in a task)");

 public:
  explicit join_awaitable(A... awaited) : awaited_(std::move(awaited)...) {}
  /// Movable until awaited (the branches point into it then).
  join_awaitable(join_awaitable&& other) noexcept : awaited_(std::move(other.awaited_)) {}
  join_awaitable& operator=(join_awaitable&&) = delete;
  ~join_awaitable() {
    // The branches first: they point at the awaitables, which cancel
    // themselves when destroyed next (a task runs on, detached).
    for (std::coroutine_handle<> b : branches_)
      if (b) b.destroy();
  }

  bool await_ready() const noexcept { return sizeof...(A) == 0; }
  bool await_suspend(std::coroutine_handle<> parent) {
    join_.first_wins = Mode == join_mode::any;
    join_.running = sizeof...(A);
    start(std::index_sequence_for<A...>{});
    if (join_.settled) return false;
    join_.parent = parent;
    return true;
  }
  auto await_resume() { return result(std::index_sequence_for<A...>{}); }

 private:
  template <std::size_t... I>
  void start(std::index_sequence<I...>) {
    ((join_.settled ? void() : void(branches_[I] = run_branch(join_, I, std::get<I>(awaited_), std::get<I>(slots_)).handle)),
     ...);
  }

  template <std::size_t... I>
  auto result(std::index_sequence<I...>) {
    if constexpr (Mode == join_mode::all_settled) {
      return std::tuple<settled<branch_value_t<A>>...>(std::move(std::get<I>(slots_))...);
    } else if constexpr (Mode == join_mode::all) {
      // The first exception in argument order, as every branch has finished.
      (void)((std::get<I>(slots_).exception ? (std::rethrow_exception(std::get<I>(slots_).exception), true) : false) ||
             ...);
      return std::tuple<branch_value_t<A>...>(std::move(*std::get<I>(slots_).value)...);
    } else {
      std::optional<std::variant<branch_value_t<A>...>> won;
      (void)((join_.first == I ? (won.emplace(std::in_place_index<I>, take(std::get<I>(slots_))), true) : false) || ...);
      return std::move(*won);
    }
  }

  std::tuple<A...> awaited_;
  std::tuple<settled<branch_value_t<A>>...> slots_;
  std::array<std::coroutine_handle<>, sizeof...(A)> branches_{};
  join_state join_;
};

/// The same over a vector of awaitables of one type.
template <join_mode Mode, class A>
class [[nodiscard]] join_vector_awaitable {
  static_assert(cancellable<A>,
                "crew::when_all/when_any take crew's awaitables and crew::task (wrap any other awaitable in a task)");
  using value = branch_value_t<A>;

 public:
  explicit join_vector_awaitable(std::vector<A> awaited) : awaited_(std::move(awaited)) {}
  join_vector_awaitable(join_vector_awaitable&& other) noexcept : awaited_(std::move(other.awaited_)) {}
  join_vector_awaitable& operator=(join_vector_awaitable&&) = delete;
  ~join_vector_awaitable() {
    for (std::coroutine_handle<> b : branches_)
      if (b) b.destroy();
  }

  bool await_ready() const noexcept { return awaited_.empty(); }
  bool await_suspend(std::coroutine_handle<> parent) {
    join_.first_wins = Mode == join_mode::any;
    join_.running = awaited_.size();
    slots_.resize(awaited_.size());
    branches_.reserve(awaited_.size());
    for (std::size_t i = 0; i < awaited_.size() && !join_.settled; ++i)
      branches_.push_back(run_branch(join_, i, awaited_[i], slots_[i]).handle);
    if (join_.settled) return false;
    join_.parent = parent;
    return true;
  }
  auto await_resume() {
    if constexpr (Mode == join_mode::all_settled) {
      return std::move(slots_);
    } else if constexpr (Mode == join_mode::all) {
      for (auto& s : slots_)
        if (s.exception) std::rethrow_exception(s.exception);
      std::vector<value> values;
      values.reserve(slots_.size());
      for (auto& s : slots_) values.push_back(std::move(*s.value));
      return values;
    } else {
      if (awaited_.empty()) throw std::system_error(uv_error(UV_EINVAL), "when_any of nothing");
      return std::pair<std::size_t, value>(join_.first, take(slots_[join_.first]));
    }
  }

 private:
  std::vector<A> awaited_;
  std::vector<settled<value>> slots_;
  std::vector<std::coroutine_handle<>> branches_;
  join_state join_;
};

template <join_mode Mode, class... A>
inline constexpr bool cancellable<join_awaitable<Mode, A...>> = true;
template <join_mode Mode, class A>
inline constexpr bool cancellable<join_vector_awaitable<Mode, A>> = true;

}  // namespace detail

/// Promise.all: awaits every awaitable at once (tasks, crew's awaitables,
/// other when_*); co_await gives a std::tuple of their values (std::monostate
/// for void). Every one finishes before it completes, even when one throws;
/// then it rethrows the first exception in argument order. Pass awaitables by
/// value (std::move a named task).
template <class... A>
detail::join_awaitable<detail::join_mode::all, A...> when_all(A... awaited) {
  return detail::join_awaitable<detail::join_mode::all, A...>(std::move(awaited)...);
}

/// Promise.all over a vector: co_await gives a std::vector of the values, in order.
template <class A>
detail::join_vector_awaitable<detail::join_mode::all, A> when_all(std::vector<A> awaited) {
  return detail::join_vector_awaitable<detail::join_mode::all, A>(std::move(awaited));
}

/// Promise.allSettled: like when_all, but never throws: co_await gives a
/// std::tuple of crew::settled<T>, each holding a value or an exception.
template <class... A>
detail::join_awaitable<detail::join_mode::all_settled, A...> when_all_settled(A... awaited) {
  return detail::join_awaitable<detail::join_mode::all_settled, A...>(std::move(awaited)...);
}

/// Promise.allSettled over a vector: a std::vector of crew::settled<T>.
template <class A>
detail::join_vector_awaitable<detail::join_mode::all_settled, A> when_all_settled(std::vector<A> awaited) {
  return detail::join_vector_awaitable<detail::join_mode::all_settled, A>(std::move(awaited));
}

/// Promise.race: completes with the first awaitable to finish; co_await gives
/// a std::variant whose index() says which (rethrows if that one threw). The
/// others are dropped at once: crew's awaitables are cancelled (a timer
/// stopped, a command killed, a request forgotten); a task runs on, detached.
template <class... A>
detail::join_awaitable<detail::join_mode::any, A...> when_any(A... awaited) {
  return detail::join_awaitable<detail::join_mode::any, A...>(std::move(awaited)...);
}

/// Promise.race over a vector: co_await gives {index, value} of the first to
/// finish. An empty vector gives EINVAL (as a std::system_error).
template <class A>
detail::join_vector_awaitable<detail::join_mode::any, A> when_any(std::vector<A> awaited) {
  return detail::join_vector_awaitable<detail::join_mode::any, A>(std::move(awaited));
}

}  // namespace crew
