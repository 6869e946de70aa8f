// Timers: Node's setTimeout / setInterval on the loop.
//
//   crew::timer tick = crew::set_interval(100ms, [] { std::puts("tick"); });
//   crew::timer once = crew::set_timeout(1s, [&] { tick.stop(); });
//   crew::loop::current().run();
//
// A timer is an RAII handle: destroying it cancels it (unlike Node, where a
// dropped timer object still fires), so the functions that make one are
// [[nodiscard]].
#pragma once

#include <chrono>

#include "crew/detail/handle.hpp"
#include "crew/unique_function.hpp"
#include "crew/loop.hpp"

namespace crew {

/// A timer on a loop. Loop thread only. Callbacks run on the loop's thread,
/// never inside start().
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

  /// An idle timer on loop l.
  explicit timer(loop& l = loop::current());

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

/// Node's setTimeout: fn runs once after `delay`, unless the timer is destroyed first.
[[nodiscard]] timer set_timeout(timer::duration delay, timer::callback fn, loop& l = loop::current());

/// Node's setInterval: fn runs every `period` until the timer is stopped or destroyed.
[[nodiscard]] timer set_interval(timer::duration period, timer::callback fn, loop& l = loop::current());

}  // namespace crew
