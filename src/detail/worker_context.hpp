// What other parts of crew need to know about the worker the calling thread
// runs, if any (defined in worker_threads.cpp).
#pragma once

#include <map>
#include <stop_token>
#include <string>

namespace crew::detail {

/// The calling worker's stop token; a token that is never requested elsewhere.
std::stop_token current_worker_stop() noexcept;

/// The environment given to the calling worker (worker_options::env), or
/// nullptr on the main thread and in workers that share the process's.
const std::map<std::string, std::string>* current_worker_env() noexcept;

}  // namespace crew::detail
