// crew-server: the seeds' services in one program, clustered over every core.
//
//   crew-server [--port 3000] [--host 127.0.0.1] [--workers CORES] [--policy round_robin|shared|reuseport]
//               [--headers-timeout-ms 10000] [--request-timeout-ms 300000] [--keep-alive-timeout-ms 5000]
//
// The primary forks the workers, restarts any that dies (with backoff; it
// gives up after ten crashes in a row), shuts down gracefully on SIGTERM or
// SIGINT and reloads every worker, one at a time, on SIGHUP. Each worker
// serves the routes of routes.hpp on the one port.
//
// Exit codes: 0 after a shutdown; 1 when the port cannot be had (in use,
// forbidden) or the workers keep crashing; 2 for a bad command line.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>

#include <crew/cluster.hpp>
#include <crew/crew.hpp>

#include "access_log.hpp"
#include "metrics.hpp"
#include "options.hpp"
#include "routes.hpp"

namespace {

int run_primary(const crew_server::options& o) {
  if (!o.access_log.empty()) {
    int log = crew_server::open_access_log(o.access_log);
    if (log < 0) {
      std::fprintf(stderr, "crew-server: cannot open the access log %s: %s\n", o.access_log.c_str(), std::strerror(errno));
      return 2;
    }
    if (log != STDOUT_FILENO) ::close(log);
  }
  crew::cluster::primary primary({.exec = crew::cluster::exec_path(),
                                  .scheduling = o.policy,
                                  .restart = {.enabled = true}});
  int exit_code = 0;
  int listening = 0;  // announced once every first worker listens
  primary.on_listening([&](crew::cluster::worker_process&, const crew::cluster::address& at) {
    if (++listening != o.workers) return;
    bool v6 = at.family == 6;
    std::printf("crew-server %d: %d workers on http://%s%s%s:%d/\n", getpid(), o.workers, v6 ? "[" : "",
                at.host.c_str(), v6 ? "]" : "", at.port);
    std::fflush(stdout);
  });
  primary.on_exit([&](crew::cluster::worker_process& w, crew::exit_status s) {
    if (w.exited_after_disconnect() || exit_code != 0) return;
    std::fprintf(stderr, "crew-server: worker %d (pid %d) died (code %d, signal %d)\n", w.id(), w.pid(), s.code,
                 s.signal);
  });
  // Workers ask for /metrics' figures. A port that cannot be had ends the
  // program with code 1 and says why (the primary's default).
  crew_server::dashboard_feed dashboard(primary);
  primary.on_message([&](crew::cluster::worker_process& w, crew::message m) {
    if (!dashboard.message(w, m.value())) crew_server::answer_metrics(primary, w, m.value());
  });
  primary.on_crash_loop([&] {
    std::fprintf(stderr, "crew-server: the workers keep crashing; stopping\n");
    exit_code = 1;
    primary.shutdown();
  });
  for (int i = 0; i < o.workers; ++i) primary.fork();
  primary.handle_signals();
  crew::loop::current().run();
  // The workers' jobs directory (video.hpp), whatever a killed worker left there.
  std::error_code ignored;
  std::filesystem::remove_all(crew_server::jobs_directory_of(getpid()), ignored);
  return exit_code;
}

int run_worker(const crew_server::options& o) {
  crew_server::services services(crew::parent_channel(), o.pool_threads, o.pool_queue, o.videos);
  crew::http::server_options http = o.http;
  std::function<void(const crew::http::answer_record&)> log;
  if (!o.access_log.empty()) {
    int fd = crew_server::open_access_log(o.access_log);  // the primary opened it once already
    if (fd >= 0) log = crew_server::access_logger(fd);
  }
  http.on_answer = [&services, log](const crew::http::answer_record& r) {
    services.gauges().record(r);
    if (log) log(r);
  };
  crew::http::server server(services.router(), http);
  crew::cluster::listen(
      server, o.port,
      [](crew::result<int> port) {
        if (!port) crew::cluster::disconnect();  // the primary tells why, and stops
      },
      o.host);
  crew::cluster::handle_signals();
  crew::loop::current().run();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool help = false;
  std::optional<crew_server::options> o = crew_server::parse(argc, argv, help);
  if (!o) return help ? 0 : 2;
  return crew::cluster::is_primary() ? run_primary(*o) : run_worker(*o);
}
