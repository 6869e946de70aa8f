// cluster-http: crew's cluster serving "hello from worker <pid>" under wrk.
//
//   crew-bench cluster-http [--workers 2] [--policy round_robin|shared|reuseport]
//                           [--connections 64] [--seconds 5] [--threads 2] [--keep-alive yes|no]
//                           [--reload yes]
//
// The primary forks the workers (crew-bench itself, re-executed), waits until
// all listen, runs wrk with bench/wrk/figures.lua and passes its figures on
// (req_per_s, latency_p50, latency_p99, failed). Then it kills one worker
// with SIGKILL and reports worker_replace, the time until a replacement
// listens (restart without backoff, as the seeds' `cluster.fork()` in 'exit').
// With --reload yes, the primary reloads every worker (SIGHUP's rolling
// reload) halfway through wrk's run: `failed` then counts what the reload cost.
#include <unistd.h>

#include <crew/cluster.hpp>
#include <crew/crew.hpp>

#include "workload.hpp"

namespace crew::bench {
namespace {

int serve() {
  std::string hello = "hello from worker " + std::to_string(getpid()) + "\n";
  http::router routes;
  routes.get("/", [&](http::request&, http::response& res) { res.send(hello); });
  http::server server(std::move(routes));
  cluster::listen(server, 0, [](result<int> port) {
    if (!port) std::exit(1);
  });
  cluster::handle_signals();
  loop::current().run();
  return 0;
}

}  // namespace

int cluster_http(const options& opts) {
  if (cluster::is_worker()) return serve();
  std::string name = opts.text("policy", "round_robin");
  std::optional<cluster::policy> policy = cluster::policy_named(name);
  if (!policy) {
    std::fprintf(stderr, "crew-bench: --policy round_robin|shared|reuseport, not %s\n", name.c_str());
    return 2;
  }
  long workers = opts.integer("workers", 2);
  std::vector<std::string> wrk_args = {"-t", std::to_string(opts.integer("threads", 2)),
                                       "-c", std::to_string(opts.integer("connections", 64)),
                                       "-d", std::to_string(opts.integer("seconds", 5)) + "s",
                                       "-s", opts.text("wrk-script", CREW_WRK_SCRIPT)};
  if (opts.text("keep-alive", "yes") == "no") wrk_args.insert(wrk_args.end(), {"-H", "Connection: close"});

  bool reload = opts.text("reload", "no") == "yes";
  timer halfway;
  cluster::primary primary({.args = {"cluster-http", "--policy", name},
                            .scheduling = *policy,
                            .restart = {.enabled = true, .first_delay = std::chrono::milliseconds(0)}});
  long listening = 0;
  child_process wrk;
  std::string wrk_out;
  clock::time_point killed{};
  primary.on_listening([&](cluster::worker_process&, const cluster::address& at) {
    int port = at.port;
    if (wrk.pid() != 0 && killed == clock::time_point{}) return;  // a worker of the reload
    if (killed != clock::time_point{}) {  // the replacement
      report("worker_replace", seconds_since(killed) * 1000, "ms");
      primary.shutdown();
      return;
    }
    if (++listening < workers) return;
    wrk_args.push_back("http://127.0.0.1:" + std::to_string(port) + "/");
    wrk = crew::spawn("wrk", wrk_args);
    if (reload)
      halfway.start(std::chrono::milliseconds(opts.integer("seconds", 5) * 500), {}, [&] {
        primary.reload([](std::error_code ec) {
          if (ec) std::fprintf(stderr, "crew-bench: reload failed: %s\n", error_name(ec).c_str());
        });
      });
    wrk.out().on_data([&](std::string_view data) { wrk_out += data; });
    wrk.on_close([&](exit_status status) {
      print_figures(wrk_out);
      if (status.code != 0) std::fprintf(stderr, "crew-bench: wrk failed (code %d)\n", status.code);
      killed = clock::now();
      primary.workers().begin()->second->kill(SIGKILL);  // a live worker: nothing to report
    });
  });
  for (long i = 0; i < workers; ++i) primary.fork();
  loop::current().run();
  return 0;
}

}  // namespace crew::bench
