// node-pool [SCRIPT]: a crew process pool whose workers are Node scripts
// (default: node-pool-worker.js, next to this program's source), speaking
// Node's IPC. Sends each worker task a few values and prints the answers, then
// one that the script rejects, as its error. No Node pool runs its workers as
// processes of another language; here a C++ program drives Node code.
#include <crew/crew.hpp>

#include <cstdio>
#include <string>

#ifndef CREW_EXAMPLES
#define CREW_EXAMPLES "examples"
#endif

crew::task<> ask(crew::process_pool& pool, int& exit_code) {
  for (int n : {10, 20, 30}) {
    crew::result<crew::message> r = co_await pool.run(n, {.task = "fib"});
    std::printf("fib(%d) = %s\n", n, r ? r->to_string().c_str() : crew::error_name(r.error()).c_str());
    exit_code |= !r;
  }
  crew::result<crew::message> upper = co_await pool.run("crew", {.task = "upper"});
  std::printf("upper(crew) = %s\n", upper ? upper->to_string().c_str() : crew::error_name(upper.error()).c_str());
  crew::result<crew::message> refused = co_await pool.run(-1, {.task = "fib"});
  try {
    refused.value();
  } catch (const std::exception& e) {
    std::printf("fib(-1) failed: %s\n", e.what());
  }
  exit_code |= !upper || refused.has_value();
}

int main(int argc, char** argv) {
  std::string script = argc > 1 ? argv[1] : CREW_EXAMPLES "/node-pool-worker.js";
  crew::process_pool pool({.program = script, .exec_path = "node", .max_workers = 2});
  int exit_code = 0;
  crew::task<> running = ask(pool, exit_code);
  crew::loop::current().run();
  return exit_code;
}
