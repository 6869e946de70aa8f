// fork-node SCRIPT: forks `node SCRIPT` with an IPC channel, sends
// {"hello":"world"}, prints every message it receives as one compact JSON line,
// and exits with the child's exit code when the child exits.
#include <crew/crew.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: fork-node SCRIPT [ARGS...]\n");
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  crew::child_process child = crew::fork(argv[1], std::move(args), {.exec_path = "node"});
  child.on_message([](crew::message m) {
    std::string line = m.to_string();
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  });
  child.on_error([](std::error_code ec) { std::fprintf(stderr, "fork-node: %s\n", crew::error_name(ec).c_str()); });
  int code = 1;
  child.on_exit([&](crew::exit_status s) { code = s.signal ? 128 + s.signal : s.code; });
  child.send(crew::message::value_type{{"hello", "world"}});
  crew::loop::current().run();
  return code;
}
