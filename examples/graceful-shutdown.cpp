// graceful-shutdown: the seeds' SIGTERM pattern.
//
//   process.on('SIGTERM', () => { server.close(() => { process.exit(0); }); });
//
// An HTTP server on --port P (default 3000) with two routes: / answers at
// once, /slow after --delay-ms (default 1000). On SIGTERM (or SIGINT) it stops
// accepting, finishes the requests in flight (their answers say
// Connection: close), then exits with 0.
#include <crew/crew.hpp>

#include <unistd.h>

#include <cstdio>

#include "command_line.hpp"

int main(int argc, char** argv) {
  int port = static_cast<int>(examples::option(argc, argv, "--port", 3000, 0, 65535));
  auto delay = std::chrono::milliseconds(examples::option(argc, argv, "--delay-ms", 1000, 0, 3'600'000));

  crew::http::router routes;
  routes.get("/", [](crew::http::request&, crew::http::response& res) { res.send("hello\n"); });
  routes.get("/slow", [&](crew::http::request&, crew::http::response& res) {
    // setTimeout(() => res.end('slow hello\n'), delay): the loop owns the timer.
    crew::set_timeout(delay, [res = std::move(res)]() mutable { res.send("slow hello\n"); });
  });
  crew::http::server server(std::move(routes));

  // The watchers come first: a SIGTERM that arrives once the server is up
  // must find them.
  auto shut_down = [&](int signal) {
    std::printf("%s received: closing the server\n", signal == SIGTERM ? "SIGTERM" : "SIGINT");
    std::fflush(stdout);
    server.close([] {
      std::printf("server closed; every request answered\n");
      crew::loop::current().stop();  // process.exit(0): nothing else may keep us
    });
  };
  crew::signal_watcher term = crew::on_signal(SIGTERM, shut_down);
  crew::signal_watcher interrupt = crew::on_signal(SIGINT, shut_down);

  crew::result<int> bound = server.listen(port);
  if (!bound) {
    std::fprintf(stderr, "cannot listen on port %d: %s\n", port, crew::error_name(bound.error()).c_str());
    return 1;
  }
  std::printf("server %d listening on port %d\n", getpid(), *bound);
  std::fflush(stdout);
  crew::loop::current().run();
  return 0;
}
