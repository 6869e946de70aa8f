// cluster-tcp-echo: a clustered TCP echo server on crew::tcp. The primary
// forks --workers N workers (default: one per core) that share --port P
// (default 7000) with --policy round_robin | shared | reuseport. Each
// connection is greeted with "worker <pid>\n", then gets every byte it sends
// back. Prints "echo on 127.0.0.1:PORT with N workers" once all listen.
//
// SIGTERM or SIGINT: graceful shutdown (each worker ends its connections
// once the clients have sent theirs, then exits; the primary exits 0). A
// worker that fails (the port in use) shuts everything down: exit 1.
//
//   $ cluster-tcp-echo --port 7000 --workers 2 &
//   $ printf 'hello\n' | nc -q1 127.0.0.1 7000
//   worker 4242
//   hello
#include <crew/cluster.hpp>
#include <crew/crew.hpp>

#include <unistd.h>

#include <cstdio>
#include <list>
#include <string>
#include <thread>

#include "command_line.hpp"

namespace {

int serve(int port) {
  std::string greeting = "worker " + std::to_string(getpid()) + "\n";
  std::list<crew::tcp::socket> clients;
  crew::tcp::server echo([&](crew::tcp::socket s) {
    crew::tcp::socket& c = clients.emplace_back(std::move(s));
    auto at = std::prev(clients.end());
    c.write(greeting);
    // Back-pressure: a client that sends without reading is not read until it reads.
    c.on_data([&c](std::string_view bytes) {
      if (!c.write(bytes)) c.pause();
    });
    c.on_drain([&c] { c.resume(); });
    c.on_close([&clients, at] { clients.erase(at); });  // a socket may be destroyed in its own callback
  });
  // A graceful close waits for every connection: end our side of each, and
  // each closes once its client has ended its own.
  echo.on_draining([&] {
    for (crew::tcp::socket& c : clients) c.end();
  });
  bool failed = false;
  crew::cluster::listen(echo, port, [&](crew::result<int> bound) {
    if (bound) return;
    std::fprintf(stderr, "cluster-tcp-echo: cannot listen on port %d: %s\n", port,
                 crew::error_name(bound.error()).c_str());
    failed = true;
    crew::loop::current().stop();
  });
  crew::cluster::handle_signals();
  crew::loop::current().run();
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  int port = static_cast<int>(examples::option(argc, argv, "--port", 7000, 0, 65535));
  if (crew::cluster::is_worker()) return serve(port);

  long workers = examples::option(argc, argv, "--workers", static_cast<long>(std::thread::hardware_concurrency()), 1, 1024);
  auto policy = crew::cluster::policy_named(examples::text(argc, argv, "--policy", "round_robin"));
  if (!policy || workers < 1 || !examples::only(argc, argv, {"--port", "--workers", "--policy"})) {
    std::fprintf(stderr, "usage: cluster-tcp-echo [--port P] [--workers N] [--policy round_robin|shared|reuseport]\n");
    return 2;
  }
  crew::cluster::primary primary({.exec = crew::cluster::exec_path(), .scheduling = *policy});
  long listening = 0;
  primary.on_listening([&](crew::cluster::worker_process&, const crew::cluster::address& at) {
    if (++listening != workers) return;
    std::printf("echo on %s:%d with %ld workers\n", at.host.c_str(), at.port, workers);
    std::fflush(stdout);
  });
  int exit_code = 0;
  primary.on_exit([&](crew::cluster::worker_process& w, crew::exit_status) {
    if (w.exited_after_disconnect()) return;
    exit_code = 1;
    primary.shutdown();
  });
  for (long i = 0; i < workers; ++i) primary.fork();
  primary.handle_signals();
  crew::loop::current().run();
  return exit_code;
}
