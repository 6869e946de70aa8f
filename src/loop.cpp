#include "crew/loop.hpp"

#include <signal.h>

#include <cassert>
#include <memory>
#include <system_error>

#include "crew/detail/handle.hpp"
#include "crew/error.hpp"

namespace crew {
namespace {

thread_local loop* current_loop = nullptr;

thread_local std::unique_ptr<loop> implicit_loop;  // made by current() when a thread has none

// Descriptor numbers are reused across threads: a loop made on one thread gets
// the numbers (epoll, eventfd, signal pipe) that a loop destroyed on another
// just freed. The kernel orders that, but libuv closes with a raw system call
// that ThreadSanitizer does not see; making and closing loops under one mutex
// shows it the order. Both sections are short and call no user code.
std::mutex loop_descriptors;

// Writing to a pipe or socket whose reader is gone raises SIGPIPE, which kills
// the process by default. Like Node, crew ignores it (once, when the first loop
// is made, and only if nobody installed a handler), so the write fails with
// EPIPE instead, whatever writes: a stream, a server's fast path, an IPC channel.
void ignore_sigpipe() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
  });
}

}  // namespace

loop::loop() : thread_(std::this_thread::get_id()) {
  ignore_sigpipe();
  std::unique_lock lock(loop_descriptors);
  if (int rc = uv_loop_init(&uv_)) throw std::system_error(uv_error(rc), "uv_loop_init");
  if (int rc = uv_async_init(&uv_, &async_, &loop::on_async)) {
    uv_loop_close(&uv_);
    throw std::system_error(uv_error(rc), "uv_async_init");
  }
  lock.unlock();
  async_.data = this;
  // The wake-up handle alone must not keep run() going; keep_alive refs it.
  uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  if (!current_loop) current_loop = this;
}

loop::~loop() {
  destroying_ = true;
  // Coroutines suspended on this loop would wait for ever: destroying their
  // frames runs their locals' destructors (as a dropped post's captures are
  // destroyed), which close the handles they own while those are still open.
  // Each frame unlists itself.
  while (frames_) std::coroutine_handle<>::from_address(frames_->frame).destroy();
  while (handles_) handles_->close();
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  // Runs the close callbacks and waits for thread-pool work still in flight,
  // which points at this loop. Foreign libuv handles are the user's to close.
  do uv_run(&uv_, UV_RUN_DEFAULT);
  while (uv_loop_alive(&uv_));
  {
    std::lock_guard descriptors(loop_descriptors);
    [[maybe_unused]] int rc = uv_loop_close(&uv_);
    assert(rc == 0 && "a libuv handle not owned by crew is still open on a loop being destroyed");
  }
  {
    std::lock_guard lock(posts_mutex_);
    draining_ = std::move(posts_);
  }
  draining_.clear();
  if (current_loop == this) current_loop = nullptr;
}

loop& loop::current() {
  if (!current_loop) implicit_loop = std::make_unique<loop>();
  return *current_loop;
}

void loop::run() {
  uv_run(&uv_, UV_RUN_DEFAULT);
  rethrow_failure();
}

bool loop::run_once() {
  bool more = uv_run(&uv_, UV_RUN_ONCE) != 0;
  rethrow_failure();
  return more;
}

void loop::post(unique_function<void()> fn) {
  {
    std::lock_guard lock(posts_mutex_);
    posts_.push_back(std::move(fn));
  }
  // uv_async_send coalesces: while a wake-up is pending it costs one atomic
  // exchange and no system call, so a burst of posts wakes the loop once.
  uv_async_send(&async_);
}

void loop::later(unique_function<void()> fn) {
  post([fn = std::move(fn), hold = keep_alive(*this)]() mutable { fn(); });
}

void loop::on_async(uv_async_t* async) { static_cast<loop*>(async->data)->drain_posts(); }

void loop::drain_posts() {
  {
    std::lock_guard lock(posts_mutex_);
    draining_.swap(posts_);  // both vectors keep their capacity: no allocation per batch
  }
  for (auto& fn : draining_) invoke(fn);
  draining_.clear();
}

void loop::fail(std::exception_ptr error) noexcept {
  if (!failure_) failure_ = std::move(error);
  stop();
}

void loop::rethrow_failure() {
  if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
}

void loop::hold() {
  assert(in_loop_thread());
  if (holds_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
}

void loop::unhold() noexcept {
  if (--holds_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
}

loop::keep_alive::keep_alive(loop& l) : loop_(&l) { l.hold(); }

loop::keep_alive& loop::keep_alive::operator=(keep_alive&& other) noexcept {
  if (this != &other) {
    release();
    loop_ = std::exchange(other.loop_, nullptr);
  }
  return *this;
}

void loop::keep_alive::release() noexcept {
  loop* l = std::exchange(loop_, nullptr);
  if (!l) return;
  // Another thread releases through a post; the referenced async handle wakes
  // the loop to run it. The loop's own thread releases at once: it may be
  // destroying the loop (a dropped post's captures), which takes no posts then.
  if (l->in_loop_thread())
    l->unhold();
  else
    l->post([l] { l->unhold(); });
}

}  // namespace crew
