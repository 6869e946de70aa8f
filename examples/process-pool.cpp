// process-pool: tasks in worker processes, each a copy of this program. A task
// that hangs is killed at its timeout, a task that crashes fails alone, and the
// pool goes on: 100 further tasks all succeed. Prints
//
//   timeout: ETIMEDOUT
//   crash: SIGABRT (killed by a signal: Aborted)
//   done 100
//
// and exits 0. The seeds' "reuse long-running processes" advice, with what a
// process manager needs around it.
#include <crew/crew.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

using namespace std::chrono_literals;

crew::task<> run_all(crew::process_pool& pool, int& exit_code) {
  crew::result<crew::message> hung = co_await pool.run(nullptr, {.task = "hang", .timeout = 200ms});
  std::printf("timeout: %s\n", crew::error_name(hung.error()).c_str());
  crew::result<crew::message> crashed = co_await pool.run(nullptr, {.task = "crash"});
  std::printf("crash: %s (%s)\n", crew::error_name(crashed.error()).c_str(), crashed.error().message().c_str());
  std::vector<crew::awaitable<crew::result<crew::message>>> runs;
  for (int i = 0; i < 100; ++i) runs.push_back(pool.run(i, {.task = "square"}));
  int done = 0;
  for (const auto& r : co_await crew::when_all(std::move(runs))) done += r.has_value();
  std::printf("done %d\n", done);
  exit_code = hung.error() == std::errc::timed_out && !crashed && done == 100 ? 0 : 1;
}

int main() {
  crew::pool_tasks tasks = {
      {"square", [](crew::message n) { return n.get<long>() * n.get<long>(); }},
      {"hang", [](crew::message) -> int { for (;;) pause(); }},
      {"crash", [](crew::message) -> int { std::abort(); }}};  // a failed assert, say
  if (crew::process_pool::is_worker()) return crew::process_pool::serve(tasks);
  crew::process_pool pool({.max_workers = 2});
  int exit_code = 1;
  crew::task<> running = run_all(pool, exit_code);
  crew::loop::current().run();
  return exit_code;
}
