// The handle-lifetime rule, written once (STYLE.md rules 6 and 7).
//
// libuv closes handles asynchronously: after uv_close() the uv_*_t must stay
// valid until the close callback runs, on a later loop iteration. So every crew
// handle keeps its uv_*_t, and the user's callbacks, in a heap block derived from
// handle_state, and the user-facing object (derived from handle_owner) only
// points at it:
//
//   - destroying the owner closes the handle; the block lives on until libuv's
//     close callback deletes it, so a callback that destroys its own owner is safe;
//   - once the owner is gone no user callback runs (uv_close stops them);
//   - a loop destroyed with handles still open closes them all and detaches
//     their owners, whose methods then do nothing and whose destructors are no-ops;
//   - work a block defers to a later loop turn (defer()) keeps it allocated until
//     that work has run or been dropped, so the deferred code may look at it.
//
// docs/lifetime.md states the rule for users; docs/callbacks.md the callback
// contract that defer() helps keep (no callback inside the call that caused it).
#pragma once

#include <uv.h>

#include <utility>

#include "crew/unique_function.hpp"
#include "crew/loop.hpp"

namespace crew::detail {

class handle_owner;

/// Base of every handle's heap block. Loop thread only.
struct handle_state {
  explicit handle_state(crew::loop& l) noexcept : loop(l) {}
  handle_state(const handle_state&) = delete;
  handle_state& operator=(const handle_state&) = delete;
  virtual ~handle_state();

  /// The uv handle inside the derived block.
  virtual uv_handle_t* uv() noexcept = 0;

  /// Call once the uv handle is initialised: points its data at this block and
  /// lists the block with its loop, which closes it if still open at the end.
  void attach(handle_owner* new_owner) noexcept;

  /// Detaches the owner and closes the uv handle; the close callback deletes this
  /// block. Idempotent.
  void close() noexcept;

  /// Called once by close(), after the owner is detached: a block that must tell
  /// someone else it is closing (a child's stdio tells its process) does it here.
  virtual void on_closing() noexcept {}

  /// Runs fn on this loop's thread on a later turn (through loop::post), never
  /// inside the call that defers it. fn runs even if the handle closes in
  /// between (it checks `closing`/`owner` itself), and the block stays allocated
  /// until fn has run, or has been dropped because the loop was destroyed first.
  void defer(unique_function<void()> fn);

  /// libuv's close callback: frees the block now, or once deferred work is done.
  static void on_uv_close(uv_handle_t* handle) noexcept;

  crew::loop& loop;
  handle_owner* owner = nullptr;
  handle_state* previous = nullptr;  // the loop's list of open handles
  handle_state* next = nullptr;
  bool closing = false;
  bool closed_by_owner = false;  // the owner called close() or was destroyed
  bool close_done = false;       // libuv's close callback has run
  int deferred = 0;              // defer()red functions not yet run or dropped
};

/// The block of a handle with one uv handle of type Uv and one callback, such
/// as a timer or a signal watcher.
template <class Uv, class Signature>
struct callback_handle_state : handle_state {
  using handle_state::handle_state;
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&handle); }

  /// Calls the callback from libuv's callback. It is moved out while it runs,
  /// so that it may replace itself (restart its timer with a new callback) or
  /// close its handle without destroying the function that is executing; it is
  /// kept afterwards only while the handle stays active and unreplaced.
  template <class... Args>
  void dispatch(Args&&... args) {
    unique_function<Signature> running = std::move(fn);
    loop.invoke(running, std::forward<Args>(args)...);
    if (!fn && !closing && uv_is_active(uv())) fn = std::move(running);
  }

  Uv handle;
  unique_function<Signature> fn;
};

/// Base of the user-facing handle objects: move-only, closes on destruction.
class handle_owner {
 public:
  /// Whether the handle is open: false after close(), after a move from it, and
  /// after its loop closed it.
  bool is_open() const noexcept { return state_ != nullptr; }

  /// Closes the handle now; no callback of it runs afterwards.
  void close() noexcept {
    if (state_) {
      state_->closed_by_owner = true;
      state_->close();
    }
  }

  /// A referenced handle keeps its loop's run() going while it is active.
  void ref() noexcept {
    if (state_) uv_ref(state_->uv());
  }
  void unref() noexcept {
    if (state_) uv_unref(state_->uv());
  }
  bool has_ref() const noexcept { return state_ && uv_has_ref(state_->uv()); }

 protected:
  handle_owner() noexcept = default;
  handle_owner(handle_owner&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {
    if (state_) state_->owner = this;
  }
  handle_owner& operator=(handle_owner&& other) noexcept {
    if (this != &other) {
      close();
      state_ = std::exchange(other.state_, nullptr);
      if (state_) state_->owner = this;
    }
    return *this;
  }
  ~handle_owner() { close(); }

  /// Takes a freshly initialised block.
  void adopt(handle_state* state) noexcept {
    close();
    state_ = state;
    state_->attach(this);
  }

  /// Lets go of the block without closing it: the block carries on alone (a
  /// child process still to be reaped) and closes itself later.
  void release() noexcept {
    if (state_) state_->owner = nullptr;
    state_ = nullptr;
  }

  template <class State>
  State* state_as() const noexcept {
    return static_cast<State*>(state_);
  }

 private:
  friend struct handle_state;
  handle_state* state_ = nullptr;
};

}  // namespace crew::detail
