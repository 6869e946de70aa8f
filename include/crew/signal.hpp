// Signal watchers: Node's process.on('SIGTERM', ...) on the loop.
//
//   crew::signal_watcher term = crew::on_signal(SIGTERM, [&](int) { server.close(); });
//
// As in Node, a signal watcher does not keep the loop alive by itself (it starts
// unreferenced; call ref() to change that). Several watchers may watch the same
// signal; each is called. libuv delivers signals through the loop, so the
// callback is an ordinary loop callback, free of async-signal-safety limits.
#pragma once

#include <system_error>

#include "crew/detail/handle.hpp"
#include "crew/unique_function.hpp"
#include "crew/loop.hpp"

namespace crew {

/// Watches one signal at a time. Loop thread only.
class signal_watcher : private detail::handle_owner {
 public:
  /// Whether the watcher is open (not closed, moved from or closed by its loop).
  using handle_owner::is_open;
  /// Closes the watcher now; its callback never runs afterwards.
  using handle_owner::close;
  /// A referenced watcher keeps its loop's run() going (default: unreferenced).
  using handle_owner::ref;
  using handle_owner::unref;
  using handle_owner::has_ref;

  using callback = unique_function<void(int signum)>;

  /// An idle watcher on loop l. Throws std::system_error if libuv cannot set up
  /// signal delivery for the loop (EMFILE when the fd table is full).
  explicit signal_watcher(loop& l = loop::current());

  /// Calls fn on the loop each time `signum` arrives. Replaces an earlier watch.
  /// Errors: EINVAL for an invalid signal number; EBADF on a closed watcher.
  std::error_code start(int signum, callback fn);

  /// Like start(), but calls fn for the first arrival only; afterwards the
  /// signal's default disposition applies again.
  std::error_code start_oneshot(int signum, callback fn);

  /// Stops watching; the signal's previous disposition applies again.
  void stop() noexcept;

  /// The watched signal, or 0.
  int signum() const noexcept;

 private:
  using state = detail::callback_handle_state<uv_signal_t, void(int)>;
  std::error_code begin(int signum, callback fn, bool oneshot);
};

/// Watches `signum` with fn, like Node's process.on(signal). Throws
/// std::system_error with EINVAL for an invalid signal number.
[[nodiscard]] signal_watcher on_signal(int signum, signal_watcher::callback fn, loop& l = loop::current());

}  // namespace crew
