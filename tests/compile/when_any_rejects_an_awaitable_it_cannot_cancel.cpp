// expect: wrap any other awaitable in a task
// when_any destroys its losers while they are pending: only crew's awaitables survive that.
#include <crew/crew.hpp>

struct foreign {
  bool await_ready() { return true; }
  void await_suspend(std::coroutine_handle<>) {}
  int await_resume() { return 1; }
};

crew::task<std::size_t> race() {
  auto first = co_await crew::when_any(foreign{}, crew::sleep(std::chrono::milliseconds(1)));
  co_return first.index();
}
