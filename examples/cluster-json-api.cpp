// cluster-json-api [--port P] [--workers N]: a JSON API served by a cluster,
// one worker per core unless --workers says otherwise, on 127.0.0.1:P (default
// 8000). A worker that dies is started again (with backoff); SIGTERM or SIGINT
// shuts down gracefully, SIGHUP reloads the workers one by one. Each answer
// names the worker (its pid) that gave it:
//
//   GET  /api/health                 {"status":"ok","worker":PID}
//   POST /api/sum {"numbers":[...]}   {"sum":S,"count":N,"worker":PID}
//   GET  /api/primes?below=N         {"below":N,"primes":C,"worker":PID}, N up to 10,000,000
//
// Bad input gets 400 and {"error": "..."}. The twin of cluster-json-api.js.
#include <crew/cluster.hpp>
#include <crew/crew.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "command_line.hpp"

using json = crew::message::value_type;

// How many primes are below n: CPU work, which the cluster spreads over cores.
long primes_below(long n) {
  std::vector<bool> composite(std::max(n, 2L));
  long count = 0;
  for (long i = 2; i < n; ++i) {
    if (composite[i]) continue;
    ++count;
    for (long j = i * i; j < n; j += i) composite[j] = true;
  }
  return count;
}

void serve(int port) {
  pid_t pid = getpid();
  crew::http::router api;
  api.get("/api/health", [&](crew::http::request&, crew::http::response& res) {
    res.json({{"status", "ok"}, {"worker", pid}});
  });
  api.post("/api/sum", [&](crew::http::request& req, crew::http::response& res) {
    crew::result<json> body = req.json();
    json numbers = body && body->is_object() ? body->value("numbers", json()) : json();
    if (!numbers.is_array() || !std::all_of(numbers.begin(), numbers.end(), [](auto& n) { return n.is_number(); }))
      return res.status(400).json({{"error", "expected {\"numbers\": [numbers...]}"}});
    double sum = 0;
    for (const json& n : numbers) sum += n.get<double>();
    res.json({{"sum", sum}, {"count", numbers.size()}, {"worker", pid}});
  });
  api.get("/api/primes", [&](crew::http::request& req, crew::http::response& res) {
    std::string below = req.search_params().get("below").value_or("");
    bool digits = !below.empty() && below.size() <= 8 && below.find_first_not_of("0123456789") == std::string::npos;
    long n = digits ? std::stol(below) : -1;
    if (n < 0 || n > 10'000'000)
      return res.status(400).json({{"error", "below must be an integer from 0 to 10000000"}});
    res.json({{"below", n}, {"primes", primes_below(n)}, {"worker", pid}});
  });
  crew::http::server server(std::move(api));
  crew::cluster::listen(server, port, [](crew::result<int> bound) {
    if (bound) std::printf("worker %d listening on 127.0.0.1:%d\n", getpid(), *bound);
    std::fflush(stdout);
  });
  crew::cluster::handle_signals();
  crew::loop::current().run();
}

int main(int argc, char** argv) {
  int port = static_cast<int>(examples::option(argc, argv, "--port", 8000, 0, 65535));
  if (crew::cluster::is_worker()) {
    serve(port);
    return 0;
  }
  long workers = examples::option(argc, argv, "--workers", static_cast<long>(std::thread::hardware_concurrency()), 1, 1024);
  if (workers < 1 || !examples::only(argc, argv, {"--port", "--workers"})) {
    std::fprintf(stderr, "usage: cluster-json-api [--port P] [--workers N]\n");
    return 2;
  }
  crew::cluster::primary primary({.restart = {.enabled = true}});
  for (long i = 0; i < workers; ++i) primary.fork();
  primary.handle_signals();
  crew::loop::current().run();
}
