// cluster-http: the seeds' cluster example. The primary forks one worker per
// core (or --workers N) and replaces any that dies; each worker answers every
// request with "hello from worker <pid>" on --port P (default 8000), all
// workers on the same port through the primary (--policy round_robin |
// shared | reuseport).
//
// Dead workers are restarted with backoff. SIGTERM or SIGINT: graceful
// shutdown (workers finish what they serve, then exit; the primary exits 0).
// SIGHUP: rolling reload, one worker at a time, without a failed request.
#include <crew/cluster.hpp>
#include <crew/crew.hpp>

#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

#include "command_line.hpp"

int main(int argc, char** argv) {
  int port = static_cast<int>(examples::option(argc, argv, "--port", 8000, 0, 65535));
  if (crew::cluster::is_primary()) {
    long workers = examples::option(argc, argv, "--workers", static_cast<long>(std::thread::hardware_concurrency()), 1, 1024);
    auto policy = crew::cluster::policy_named(examples::text(argc, argv, "--policy", "round_robin"));
    if (!policy || workers < 1 || !examples::only(argc, argv, {"--port", "--workers", "--policy"})) {
      std::fprintf(stderr, "usage: cluster-http [--port P] [--workers N] [--policy round_robin|shared|reuseport]\n");
      return 2;
    }
    crew::cluster::primary primary(
        {.exec = crew::cluster::exec_path(), .scheduling = *policy, .restart = {.enabled = true}});
    std::printf("Primary %d is running\n", getpid());
    primary.on_listening([](crew::cluster::worker_process& w, const crew::cluster::address& at) {
      std::printf("worker %d (pid %d) listening on %s:%d\n", w.id(), w.pid(), at.host.c_str(), at.port);
      std::fflush(stdout);
    });
    primary.on_exit([](crew::cluster::worker_process& w, crew::exit_status status) {
      if (w.exited_after_disconnect())
        std::printf("worker %d exited\n", w.pid());
      else
        std::printf("worker %d died (code %d, signal %d); starting another\n", w.pid(), status.code, status.signal);
      std::fflush(stdout);
    });
    primary.on_crash_loop([] {
      std::fprintf(stderr, "workers keep crashing: no more restarts\n");
      crew::loop::current().stop();
    });
    for (long i = 0; i < workers; ++i) primary.fork();
    primary.handle_signals();
    crew::loop::current().run();
    std::printf("all workers exited\n");
    return 0;
  }
  std::string hello = "hello from worker " + std::to_string(getpid()) + "\n";
  crew::http::router routes;
  routes.get("/", [&](crew::http::request&, crew::http::response& res) { res.send(hello); });
  crew::http::server server(std::move(routes));
  crew::cluster::listen(server, port, [](crew::result<int> bound) {
    if (!bound) {
      std::fprintf(stderr, "listen: %s\n", crew::error_name(bound.error()).c_str());
      std::exit(1);
    }
  });
  crew::cluster::handle_signals();
  crew::loop::current().run();
}
