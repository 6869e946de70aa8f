// Runs one of crew's programs as a user runs it, for the tests of tests/app.
#pragma once

#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <crew/crew.hpp>

#include "../unit/test_support.hpp"

namespace crew::test {

struct run_result {
  crew::exit_status status;
  std::string out, err;
};

/// Runs `program` with `args` (and `env` added to the environment). Once its
/// stdout matches `ready` (whose first group is a port), `with_program(port,
/// pid)` runs on a thread of its own; the program must then end by itself (or
/// be told to). One still running 10 s after with_program returned (a test
/// that stopped at a failed ASSERT before telling it) gets SIGKILL, so that no
/// test leaves a server behind. Gives how it ended.
template <class Fn>
run_result run_program(const std::string& program, std::vector<std::string> args, const std::string& ready,
                       Fn with_program, crew::environment env = {}) {
  crew::loop loop;
  run_result r;
  crew::child_process child = crew::spawn(program, std::move(args), {.extra_env = std::move(env)}, loop);
  crew::timer last_chance(loop);
  bool ended = false;
  std::thread user;
  std::regex pattern(ready);
  child.out().on_data([&](std::string_view data) {
    r.out += data;
    std::smatch m;
    if (user.joinable() || !std::regex_search(r.out, m, pattern)) return;
    user = std::thread([&, port = std::stoi(m[1]), pid = child.pid()] {
      with_program(port, pid);
      loop.post([&] {
        if (!ended) last_chance.start(std::chrono::seconds(10), {}, [&] { (void)child.kill(SIGKILL); });
      });
    });
  });
  child.err().on_data([&](std::string_view data) { r.err += data; });
  child.on_close([&](crew::exit_status s) {
    r.status = s;
    ended = true;
    last_chance.stop();
  });
  run_within(loop, std::chrono::seconds(60));
  if (user.joinable()) user.join();
  return r;
}

/// Runs `program` with `args` to its end and gives how it ended and what it printed.
inline run_result run_to_end(const std::string& program, std::vector<std::string> args) {
  return run_program(program, std::move(args), "$^", [](int, pid_t) {});
}

}  // namespace crew::test
