// supervisor COMMAND [ARG...]: runs COMMAND and starts it again each time it
// fails (a non-zero exit or a signal): 100 ms later, then 200 ms, 400 ms...
// up to 10 s; a run that lasted 10 s starts the delay over. It gives up after
// 5 failures in a row (exit code 1), and exits 0 once COMMAND succeeds.
// SIGTERM or SIGINT stops COMMAND and the supervisor (exit code 0). COMMAND
// runs in a process group of its own, which goes with it: no process it
// started is left behind, after a failure or a stop. The twin of supervisor.js:
//
//   const child = spawn(command, args, { stdio: 'inherit', signal });
//   const [code, signal] = await once(child, 'exit');
#include <crew/crew.hpp>

#include <string.h>

#include <csignal>
#include <cstdio>

using namespace std::chrono_literals;

// How a run failed, as Node names it: "code 3" or "SIGSEGV".
std::string failure(crew::exit_status s) {
  return s.signal ? std::string("SIG") + sigabbrev_np(s.signal) : "code " + std::to_string(s.code);
}

crew::task<> supervise(std::string command, std::vector<std::string> args, int& exit_code) {
  std::stop_source stopping;
  auto stop = [&stopping](int) { stopping.request_stop(); };
  crew::signal_watcher term = crew::on_signal(SIGTERM, stop), interrupt = crew::on_signal(SIGINT, stop);
  crew::process_options options{
      .stdio = std::vector(3, crew::stdio::inherit()), .process_group = true, .stop = stopping.get_token()};
  auto delay = 100ms;
  for (int failures = 1;; ++failures) {
    auto started = std::chrono::steady_clock::now();
    crew::child_process child = crew::spawn(command, args, options);
    crew::result<crew::exit_status> status = co_await child.exited();
    child.kill_tree();  // what COMMAND left running (its group) goes with it
    if (!status) {
      std::fprintf(stderr, "supervisor: cannot run %s: %s\n", command.c_str(), crew::error_name(status.error()).c_str());
      exit_code = 127;
      co_return;
    }
    if (stopping.stop_requested() || status->code == 0) break;
    if (std::chrono::steady_clock::now() - started >= 10s) failures = 1, delay = 100ms;
    std::string why = failure(*status);
    if (failures == 5) {
      std::fprintf(stderr, "supervisor: %s failed 5 times in a row (%s); giving up\n", command.c_str(), why.c_str());
      co_return;
    }
    std::fprintf(stderr, "supervisor: %s failed (%s); again in %lld ms\n", command.c_str(), why.c_str(),
                 static_cast<long long>(delay.count()));
    if (co_await crew::sleep(delay, stopping.get_token())) break;  // ECANCELED: stopped meanwhile
    delay = std::min(delay * 2, std::chrono::milliseconds(10s));
  }
  exit_code = 0;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: supervisor COMMAND [ARG...]\n");
    return 2;
  }
  int exit_code = 1;
  crew::task<> running = supervise(argv[1], {argv + 2, argv + argc}, exit_code);
  crew::loop::current().run();
  return exit_code;
}
