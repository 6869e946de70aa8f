// expect: GCC 12: name the options first
// GCC 12 destroys an options struct made in braces inside co_await twice.
#include <crew/crew.hpp>

using namespace std::chrono_literals;

crew::task<int> run() {
  crew::exec_result r = co_await crew::exec("true", {.timeout = 1s});
  co_return r.status.code;
}
