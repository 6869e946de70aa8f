// The process-wide background reaper: waits for the children that no loop
// watches any more (their child_process was closed or destroyed, or their loop
// went, before they exited), sends them SIGKILL at their deadline, and reaps
// them. docs/reaping.md gives the contract; src/unix/reaper.cpp the mechanism.
#pragma once

#include <chrono>
#include <optional>

#include "detail/spawn.hpp"

namespace crew::detail {

/// A child handed over to the reaper.
struct orphan {
  spawned child;  ///< the reaper owns child.pidfd from now on
  /// When to send SIGKILL; none: only wait (a detached child may outlive us).
  std::optional<std::chrono::steady_clock::time_point> kill_at;
  /// The child leads its own process group: SIGKILL goes to the whole group, and
  /// the child is reaped only after it, so that its id (the group's) cannot be
  /// reused by another process before the group is signalled.
  bool group = false;
  /// It has exited already but is still unreaped (a group leader kept so).
  bool exited = false;
};

/// Hands `o` to the reaper thread, which is started if none runs. Any thread;
/// never blocks beyond a short lock and never throws. The thread ends once it
/// has nothing left. At exit(), children still waiting for their SIGKILL get it
/// at once (their group, for a group leader); detached ones are left alone.
void reap_in_background(orphan o) noexcept;

}  // namespace crew::detail
