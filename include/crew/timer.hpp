// Timers: Node's setTimeout / setInterval / clearTimeout on the loop, and
// timers/promises' setTimeout as `co_await crew::sleep(ms)`.
//
//   crew::set_timeout(1s, [res = std::move(res)]() mutable { res.send("late hello\n"); });
//   crew::timer_id tick = crew::set_interval(100ms, [] { std::puts("tick"); });
//   crew::set_timeout(350ms, [tick] { crew::clear_interval(tick); });
//   crew::loop::current().run();   // returns once no timer is left
//
// As in Node, set_timeout and set_interval give timers that their loop owns:
// nothing needs to be kept, the returned timer_id only names the timer, for
// clear_timeout/clear_interval and unref(). A timeout is freed once it has run;
// an interval once cleared. A referenced timer keeps run() going; the loop's
// destruction drops the timers still pending without running them.
//
// For a timer that belongs to an object and stops with it, use crew::timer,
// an RAII handle: destroying it cancels it. scoped_timeout and scoped_interval
// make one that is already started:
//
//   crew::timer deadline = crew::scoped_timeout(200ms, [&] { w.terminate(); });
#pragma once

#include <chrono>
#include <cstdint>
#include <stop_token>
#include <system_error>

#include "crew/detail/handle.hpp"
#include "crew/unique_function.hpp"
#include "crew/loop.hpp"
#include "crew/task.hpp"

namespace crew {

/// A timer on a loop, owned by this object: destroying the object cancels it.
/// Loop thread only. Callbacks run on the loop's thread, never inside start().
class timer : private detail::handle_owner {
 public:
  /// Whether the timer is open: false after close(), after a move from it,
  /// and after its loop closed it.
  using handle_owner::is_open;
  /// Closes the timer now; its callback never runs afterwards.
  using handle_owner::close;
  /// Node's timeout.ref()/unref()/hasRef(): a referenced, active timer keeps
  /// its loop's run() going (the default).
  using handle_owner::ref;
  using handle_owner::unref;
  using handle_owner::has_ref;

  using callback = unique_function<void()>;
  using duration = std::chrono::milliseconds;

  /// An idle timer on the calling thread's loop. Not explicit, so that a
  /// struct holding a timer can be made with designated initializers.
  timer() : timer(loop::current()) {}

  /// An idle timer on loop l.
  explicit timer(loop& l);

  /// Calls fn once after `timeout`, then every `repeat` if repeat is non-zero.
  /// Replaces any earlier schedule and callback; may be called from inside the
  /// timer's own callback. A closed timer ignores it.
  void start(duration timeout, duration repeat, callback fn);

  /// Cancels the schedule; the timer can be started again.
  void stop() noexcept;

  /// Whether the timer is scheduled.
  bool active() const noexcept;

 private:
  using state = detail::callback_handle_state<uv_timer_t, void()>;
};

/// Names a timer that its loop owns (what Node's setTimeout returns): a small
/// copyable value, valid to use after the timer is gone (it then does nothing).
/// Use it on the thread of the timer's loop.
class timer_id {
 public:
  /// Names no timer.
  constexpr timer_id() noexcept = default;
  constexpr explicit timer_id(std::uint64_t value) noexcept : value_(value) {}

  /// Node's timeout.unref()/ref()/hasRef(): an unreferenced timer does not
  /// keep its loop's run() going (it still fires if the loop runs).
  void unref() const noexcept;
  void ref() const noexcept;
  bool has_ref() const noexcept;

  /// Whether the timer is still pending: not yet run (a timeout), not cleared,
  /// its loop not destroyed.
  bool active() const noexcept;

  /// The number (never 0 for a timer), unique in the process.
  constexpr std::uint64_t value() const noexcept { return value_; }
  friend constexpr bool operator==(timer_id, timer_id) noexcept = default;

 private:
  std::uint64_t value_ = 0;
};

/// Node's setTimeout: fn runs once after `delay`, on l's thread. The loop owns
/// the timer and frees it after fn has run; clear_timeout(id) cancels it.
timer_id set_timeout(timer::duration delay, timer::callback fn, loop& l = loop::current());

/// Node's setInterval: fn runs every `period` until clear_interval(id).
timer_id set_interval(timer::duration period, timer::callback fn, loop& l = loop::current());

/// Node's clearTimeout: the timer never runs again and is freed. An id whose
/// timer is gone (fired, cleared, or its loop destroyed) is ignored, as is the
/// empty id. May be called from inside the timer's own callback.
void clear_timeout(timer_id id) noexcept;

/// Node's clearInterval; the same as clear_timeout (as in Node, either clears either).
void clear_interval(timer_id id) noexcept;

/// An owned timeout: fn runs once after `delay`, unless the returned timer is
/// destroyed (or stopped) first.
[[nodiscard]] timer scoped_timeout(timer::duration delay, timer::callback fn, loop& l = loop::current());

/// An owned interval: fn runs every `period` until the returned timer is
/// stopped or destroyed.
[[nodiscard]] timer scoped_interval(timer::duration period, timer::callback fn, loop& l = loop::current());

/// Node's timers/promises setTimeout: `co_await crew::sleep(100ms)` resumes
/// after 100 ms and gives a std::error_code: success, or ECANCELED when
/// `stop` is requested first (the form with a stop token). While it waits its
/// timer keeps the loop alive. Destroying the awaitable cancels the timer.
awaitable<std::error_code> sleep(timer::duration delay, loop& l = loop::current());
awaitable<std::error_code> sleep(timer::duration delay, std::stop_token stop, loop& l = loop::current());

}  // namespace crew
