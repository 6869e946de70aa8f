// The queue behind a message port or a broadcast channel, shared by the threads
// that post to it, and the loop-side handle that listens on it.
//
// Invariants: every field of port_core is guarded by its mutex; a thread holds
// at most one port_core mutex at a time (a sender reads its peer pointer under
// its own lock, then pushes under the receiver's), so two ports posting to each
// other cannot deadlock. A listener is touched by other threads only through
// uv_async_send(), under the core's lock, and unregisters itself under that
// lock before libuv frees it.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <new>
#include <mutex>
#include <optional>
#include <vector>

#include "crew/detail/handle.hpp"
#include "crew/message_port.hpp"
#include "detail/inline_value.hpp"
#include "detail/spinner.hpp"

namespace crew::detail {

struct port_listener;

/// A message in a port's queue: its value copied inline when small and without
/// attachments (see inline_value.hpp for why), the message itself otherwise.
/// Either one fills the same 24 bytes: a slot is half a cache line.
class queued_message {
 public:
  /// Copies m's value in if it can; otherwise moves m in.
  explicit queued_message(message& m) {
    new (&small_) inline_value();
    if (!m.has_attachments() && small_.assign(m.value())) {
      inline_value::release(m.value());
      inline_ = true;
    } else {
      new (&whole_) message(std::move(m));
    }
  }
  /// Copies m in: its value alone if small, else a clone() (a broadcast's copy
  /// for each receiver, without building a clone only to copy it again).
  explicit queued_message(const message& m) {
    new (&small_) inline_value();
    if (!m.has_attachments() && small_.assign(m.value()))
      inline_ = true;
    else
      new (&whole_) message(m.clone());
  }
  queued_message(queued_message&& other) noexcept : inline_(other.inline_) {
    if (inline_)
      new (&small_) inline_value(other.small_);
    else
      new (&whole_) message(std::move(other.whole_));
  }
  queued_message& operator=(queued_message&& other) noexcept {
    if (this != &other) {
      this->~queued_message();
      new (this) queued_message(std::move(other));
    }
    return *this;
  }
  ~queued_message() {
    if (!inline_) whole_.~message();
  }

  /// The message, rebuilt on the calling thread if it was copied in. Once.
  message take() { return inline_ ? message(small_.value()) : std::move(whole_); }

 private:
  union {
    message whole_;
    inline_value small_;
  };
  bool inline_ = false;
};
static_assert(sizeof(queued_message) == 32);

struct port_core {
  /// Queues m for this port and wakes its listener. False if this port is
  /// closed (m is then dropped). Any thread.
  bool push(message& m);
  /// Queues a copy of m (see queued_message). Any thread.
  bool push_copy(const message& m);

  /// Closes this side: drops its queue, tells the peer. Any thread; idempotent.
  void close() noexcept;

  /// The oldest queued message, if any.
  std::optional<message> pop();

  /// Entangles two new cores.
  static void entangle(const std::shared_ptr<port_core>& a, const std::shared_ptr<port_core>& b);

  std::mutex mutex;
  std::vector<queued_message> inbox;  // queued messages from `head` on
  std::size_t head = 0;             // messages before it were taken by pop()
  std::shared_ptr<port_core> peer;  // the entangled port; null once either side closed
  port_listener* listener = nullptr;
  bool spinning = false;     // the listener polls the inbox itself: no wake-up needed
  bool closed = false;       // this side closed: pushes fail
  bool peer_closed = false;  // the other side closed: the listener reports the end

  /// Whether the inbox holds a message: written under the mutex after each
  /// change, read without it by a spinning listener, so that its polls leave
  /// the mutex's cache line with the sender (relaxed: the mutex orders the
  /// messages themselves; a stale answer only delays a poll by one turn).
  alignas(64) std::atomic<bool> queued{false};  // a line of its own: polling it leaves the mutex's alone
  /// Sets `queued` from the inbox, under the mutex.
  void update_queued() noexcept { queued.store(head != inbox.size(), std::memory_order_relaxed); }

 private:
  bool push(queued_message entry);
  void peer_gone() noexcept;
};

/// The handle that delivers a port's messages on one loop.
struct port_listener final : handle_state {
  port_listener(crew::loop& l, std::shared_ptr<port_core> c);
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&async); }
  void on_closing() noexcept override;

  /// Delivers what is queued, in order; then reports the end if the peer closed.
  void drain();
  /// The oldest message not yet delivered, for receive_message_on_port(): one
  /// of the batch being delivered (a callback may ask), else the queue's.
  std::optional<message> pop();
  /// Schedules a drain from the loop (never inside the caller).
  void schedule() noexcept { uv_async_send(&async); }
  /// Polls the inbox instead of sleeping for `spin` from now.
  void keep_spinning() noexcept;
  /// Like keep_spinning(), cheaper while already spinning (no clock read): for each post.
  void note_activity() noexcept {
    if (spinning.spinning())
      spinning.note_activity();
    else
      keep_spinning();
  }
  void stop_spinning() noexcept;
  void update_ref() noexcept;

  uv_async_t async;
  spinner spinning;
  std::shared_ptr<port_core> core;
  message_port::message_callback on_message;
  message_port::error_callback on_messageerror;
  message_port::close_callback on_close;
  std::chrono::microseconds spin{50};
  unsigned message_callbacks = 0;  // counts on_message() calls: a callback replaced while it runs stays replaced
  bool referenced = true;
  std::vector<queued_message> batch;  // taken from the queue by a drain, reused between drains
  std::size_t next = 0;               // batch[next] is the oldest message not yet delivered
};

}  // namespace crew::detail
