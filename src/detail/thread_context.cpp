#include "detail/thread_context.hpp"

namespace crew::detail {

thread_context& this_thread_context() noexcept {
  thread_local thread_context context;
  return context;
}

}  // namespace crew::detail
