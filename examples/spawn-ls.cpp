// spawn-ls: the seeds' spawn example. Runs `ls -lh /usr`, streams its stdout and
// stderr as they arrive, and prints the exit code when the child has closed.
//
//   const ls = spawn('ls', ['-lh', '/usr']);
//   ls.stdout.on('data', ...); ls.stderr.on('data', ...); ls.on('close', code => ...)
#include <crew/crew.hpp>

#include <cstdio>
#include <unistd.h>

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "/usr";
  std::printf("Parent process ID: %d\n", static_cast<int>(getpid()));

  crew::child_process ls = crew::spawn("ls", {"-lh", dir});
  ls.out().on_data([](std::string_view chunk) {
    std::printf("stdout:\n%.*s", static_cast<int>(chunk.size()), chunk.data());
  });
  ls.err().on_data([](std::string_view chunk) {
    std::fprintf(stderr, "stderr: %.*s", static_cast<int>(chunk.size()), chunk.data());
  });
  ls.on_error([](std::error_code ec) {
    std::fprintf(stderr, "Failed to start subprocess: %s\n", crew::error_name(ec).c_str());
  });
  int exit_code = 1;
  ls.on_close([&](crew::exit_status status) {
    std::printf("child process exited with code %d\n", status.code);
    exit_code = status.code;
  });
  crew::loop::current().run();
  return exit_code == 0 ? 0 : 1;
}
