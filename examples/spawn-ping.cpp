// spawn-ping: the seeds' ping example, pointed at this machine (127.0.0.1, three
// echo requests) instead of a public server. Streams ping's output as it comes.
//
//   const ping = spawn('ping', ['8.8.8.8']);
//   ping.stdout.on('data', ...); ping.on('close', code => ...)
#include <crew/crew.hpp>

#include <cstdio>

int main() {
  crew::child_process ping = crew::spawn("ping", {"-c", "3", "127.0.0.1"});
  ping.out().on_data([](std::string_view chunk) {
    std::printf("stdout: %.*s", static_cast<int>(chunk.size()), chunk.data());
  });
  ping.err().on_data([](std::string_view chunk) {
    std::fprintf(stderr, "stderr: %.*s", static_cast<int>(chunk.size()), chunk.data());
  });
  ping.on_error([](std::error_code ec) {
    std::fprintf(stderr, "cannot run ping: %s (install Debian's iputils-ping)\n", crew::error_name(ec).c_str());
  });
  int exit_code = 1;
  ping.on_close([&](crew::exit_status status) {
    std::printf("ping process exited with code %d\n", status.code);
    exit_code = status.code;
  });
  crew::loop::current().run();
  return exit_code;
}
