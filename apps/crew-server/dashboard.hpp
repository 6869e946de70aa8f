// GET /dashboard: a live page for people, one card per worker (pid, uptime,
// restarts, requests per second, latency p50/p99, memory, CPU, pool queue) and
// charts of the last five minutes. Everything it needs is served here (no CDN):
//   GET /dashboard         the page
//   GET /dashboard.js      its script
//   GET /dashboard/events  Server-Sent Events: first `event: history` (the last five
//                          minutes), then `event: figures` each second, a snapshot
//                          of every worker that the primary assembles
// Each worker measures itself each second (worker_gauges) and sends that to
// the primary; the primary adds what the cluster knows (pid, uptime, restarts,
// memory) and answers the workers that serve the event stream.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <vector>

#include <crew/cluster.hpp>
#include <crew/http.hpp>
#include <crew/ipc.hpp>
#include <crew/task.hpp>
#include <crew/timer.hpp>

namespace crew_server {

/// In a worker: requests per second, latency percentiles, CPU and the pool's
/// queue, measured each second and sent to the primary.
class worker_gauges {
 public:
  worker_gauges(crew::ipc_channel* primary, std::function<std::size_t()> pool_queue);
  /// For server_options::on_answer.
  void record(const crew::http::answer_record& r);

 private:
  void report();

  crew::ipc_channel* primary_;
  std::function<std::size_t()> pool_queue_;
  std::vector<std::uint32_t> latencies_us_;  // this second's, at most max_samples
  std::uint64_t answered_ = 0;               // this second's
  double cpu_seconds_ = 0;                   // at the last report
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
  crew::timer timer_;
};

/// In the primary: each worker's last report, and a snapshot of every worker
/// each second for the last five minutes (a page opened now draws them at once).
class dashboard_feed {
 public:
  explicit dashboard_feed(crew::cluster::primary& primary);
  /// Gives true when `m` (from w) was the dashboard's: a report, or a request
  /// for the snapshots, which it answers.
  bool message(crew::cluster::worker_process& w, const crew::message::value_type& m);

 private:
  crew::message::value_type snapshot() const;

  crew::cluster::primary& primary_;
  std::map<int, crew::message::value_type> reports_;  // by worker id
  std::deque<crew::message::value_type> history_;     // a snapshot a second, oldest first
  crew::timer timer_;
};

/// In a worker: the page, its script, and the event stream (until the client
/// goes or the worker drains).
void serve_dashboard_page(crew::http::response& res);
void serve_dashboard_script(crew::http::response& res);
crew::task<> serve_dashboard_events(crew::ipc_channel* primary, crew::http::response res);

}  // namespace crew_server
