// Spinning: a loop that polls for a while instead of sleeping until a wake-up
// (tens of microseconds on virtual machines). An idle handle keeps uv_run from
// blocking; each turn may look for work without a system call. Used by IPC
// channels, message ports and the pool's inboxes, each for its own `spin`.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>

namespace crew::detail {

class spinner {
 public:
  using callback = void (*)(void* owner);

  spinner() = default;
  spinner(const spinner&) = delete;
  spinner& operator=(const spinner&) = delete;
  ~spinner() { close(); }

  /// Keeps `l` polling for `length` from now. While it does, on_turn(owner)
  /// runs on each turn (if given); on_stop(owner) runs when the time is up (if
  /// given). Gives true when spinning starts now, false when it went on
  /// already (its deadline moves to `length` from the next turn) or `length`
  /// is 0 (it does not spin).
  bool keep(uv_loop_t* l, std::chrono::microseconds length, void* owner, callback on_turn = nullptr,
            callback on_stop = nullptr) {
    if (length.count() <= 0) return false;
    length_ns_ = static_cast<std::uint64_t>(length.count()) * 1000;
    if (spinning()) {
      active_ = true;  // the next turn moves the deadline: one clock read a turn, however many calls
      return false;
    }
    until_ = uv_hrtime() + length_ns_;
    if (!idle_) {
      idle_ = new uv_idle_t;
      uv_idle_init(l, idle_);
      uv_unref(reinterpret_cast<uv_handle_t*>(idle_));  // spinning never keeps the loop alive
    }
    idle_->data = this;
    owner_ = owner;
    on_turn_ = on_turn;
    on_stop_ = on_stop;
    uv_idle_start(idle_, [](uv_idle_t* idle) { static_cast<spinner*>(idle->data)->turn(); });
    return true;
  }

  /// Moves the deadline to `length` from the next turn, without reading the clock now.
  void note_activity() noexcept { active_ = true; }

  bool spinning() const noexcept { return idle_ && uv_is_active(reinterpret_cast<const uv_handle_t*>(idle_)); }

  /// Stops spinning now; on_stop does not run.
  void stop() noexcept {
    if (idle_) uv_idle_stop(idle_);
  }

  /// Stops, and frees the idle handle through libuv (on the loop's thread).
  void close() noexcept {
    if (idle_) uv_close(reinterpret_cast<uv_handle_t*>(idle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
    idle_ = nullptr;
  }

 private:
  void turn() {
    std::uint64_t now = uv_hrtime();
    if (active_) {
      active_ = false;
      until_ = now + length_ns_;
    }
    if (now > until_) {
      stop();
      if (on_stop_) on_stop_(owner_);
      return;
    }
    if (on_turn_) on_turn_(owner_);
  }

  uv_idle_t* idle_ = nullptr;  // its own allocation, freed by its close callback
  std::uint64_t until_ = 0;    // uv_hrtime()
  std::uint64_t length_ns_ = 0;
  bool active_ = false;
  void* owner_ = nullptr;
  callback on_turn_ = nullptr;
  callback on_stop_ = nullptr;
};

}  // namespace crew::detail
