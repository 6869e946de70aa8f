// Work on libuv's thread pool: the pool under Node's fs, crypto and dns.
//
//   crew::queue_work([] { return checksum(file); },           // on a pool thread
//                    [](crew::result<uint32_t> sum) {         // back on the loop
//                      if (sum) std::printf("%08x\n", *sum);
//                    });
//
// The pool is libuv's: process-wide, shared by every loop, sized by the
// UV_THREADPOOL_SIZE environment variable (default 4) before its first use.
// A queued job can be cancelled until a pool thread picks it up.
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

#include "crew/error.hpp"
#include "crew/loop.hpp"

namespace crew {

namespace detail {

/// A job in flight. It owns itself from submission until its completion has run
/// on the loop; a `work` handle may share it to cancel it.
struct work_state {
  virtual ~work_state() = default;
  virtual void execute() noexcept = 0;                   // on a pool thread
  virtual void complete(std::error_code status) = 0;     // on the loop's thread

  uv_work_t request;
  loop* owner = nullptr;
  std::shared_ptr<work_state> self;  // the in-flight reference, dropped after complete()
  bool cancelled = false;            // libuv 1.44 would cancel (and complete) twice
};

void submit(loop& l, std::shared_ptr<work_state> job);

}  // namespace detail

/// A handle on a queued job, for cancelling it. Loop thread only. Dropping it
/// neither cancels nor waits: the job runs to completion regardless.
class work {
 public:
  work() noexcept = default;
  explicit work(std::shared_ptr<detail::work_state> job) noexcept : job_(std::move(job)) {}

  /// Cancels the job if no pool thread has started it: its completion then runs
  /// with ECANCELED. Returns EBUSY when the job is running or done, EINVAL for
  /// an empty handle.
  std::error_code cancel() noexcept;

 private:
  std::shared_ptr<detail::work_state> job_;
};

/// Runs `fn()` on libuv's thread pool, then `done` on the loop's thread with the
/// outcome: done(result<R>) where R is fn's return type, or done(std::error_code)
/// when fn returns void. The error is ECANCELED when cancel() removed the job
/// from the queue; fn did not run then.
///
/// If fn throws, done gets the failure as an error value: a result<R> whose
/// error() is ERR_UNCAUGHT_EXCEPTION and whose exception() (rethrown by
/// value()) is what fn threw; or, for a void fn, the ERR_UNCAUGHT_EXCEPTION code.
///
/// Callback contract (docs/callbacks.md): done runs exactly once, on l's
/// thread, never inside queue_work(). While the job is in flight the loop
/// stays alive.
///
/// Thread-safety: call on l's thread. fn runs on a pool thread and must not
/// touch loop-thread objects; use the return value to carry results back.
template <class Work, class Done>
work queue_work(Work&& fn, Done&& done, loop& l = loop::current()) {
  using value = std::invoke_result_t<std::decay_t<Work>&>;
  if constexpr (std::is_void_v<value>)
    static_assert(std::is_invocable_v<std::decay_t<Done>&, std::error_code>,
                  "queue_work: fn returns void, so done must accept std::error_code");
  else
    static_assert(std::is_invocable_v<std::decay_t<Done>&, result<value>>,
                  "queue_work: done must accept crew::result<R>, R being fn's return type");

  struct job final : detail::work_state {
    job(Work&& w, Done&& d) : fn(std::forward<Work>(w)), done(std::forward<Done>(d)) {}

    void execute() noexcept override {
      try {
        if constexpr (std::is_void_v<value>)
          fn();
        else
          outcome.emplace(fn());
      } catch (...) {
        error = std::current_exception();
      }
    }

    void complete(std::error_code status) override {
      if constexpr (std::is_void_v<value>)
        done(error ? make_error_code(errc::uncaught_exception) : status);
      else if (error)
        done(result<value>(error));
      else if (status)
        done(result<value>(status));
      else
        done(result<value>(std::move(*outcome)));
    }

    std::decay_t<Work> fn;
    std::decay_t<Done> done;
    std::conditional_t<std::is_void_v<value>, bool, std::optional<value>> outcome{};
    std::exception_ptr error;
  };

  auto state = std::make_shared<job>(std::forward<Work>(fn), std::forward<Done>(done));
  detail::submit(l, state);
  return work(std::move(state));
}

}  // namespace crew
