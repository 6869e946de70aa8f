// What crew code needs to know about the thread it runs on, whoever started
// that thread: the environment a child process inherits from it, and the stop
// token that ends its blocking waits. worker_threads fills it in for a worker's
// thread (worker_options::env, terminate()); every other thread keeps the
// defaults. It sits at the loop's layer so that child_process and
// shared_buffer read it without depending on worker_threads.
#pragma once

#include <map>
#include <stop_token>
#include <string>

namespace crew::detail {

struct thread_context {
  /// The environment of this thread's children; null: the process's own.
  const std::map<std::string, std::string>* env = nullptr;
  /// Requested when the thread should stop (a worker's terminate()); a token
  /// that is never requested elsewhere.
  std::stop_token stop;
};

/// The calling thread's context. Thread-local: no locking.
thread_context& this_thread_context() noexcept;

}  // namespace crew::detail
