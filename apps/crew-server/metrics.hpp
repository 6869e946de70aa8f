// GET /metrics: the primary holds every worker's figures; the worker that
// serves the request asks the primary for them over the IPC channel.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <crew/cluster.hpp>
#include <crew/pool.hpp>
#include <crew/ipc.hpp>

namespace crew_server {

/// The figures in Prometheus' text format.
std::string prometheus_text(const std::vector<crew::cluster::worker_figures>& workers);

/// This worker's pool in Prometheus' text format: threads, running tasks,
/// queue, completed tasks, utilisation, and wait and run times as summaries.
std::string pool_text(const crew::pool_stats& pool);

/// In the primary: if `m` (from worker w) asks for the figures, answers it and
/// gives true.
bool answer_metrics(crew::cluster::primary& primary, crew::cluster::worker_process& w, const crew::message::value_type& m);

/// In a worker: asks the primary for the text.
class metrics_client {
 public:
  /// `primary`: the worker's channel to its primary (null outside a cluster).
  explicit metrics_client(crew::ipc_channel* primary);

  /// done gets the text, or "" when the primary cannot answer (no channel, or
  /// disconnected); exactly once, never inside request().
  void request(crew::unique_function<void(std::string)> done);

 private:
  void answer(long seq, std::string text);
  crew::ipc_channel* primary_;
  std::map<long, crew::unique_function<void(std::string)>> waiting_;
  long next_ = 1;
};

}  // namespace crew_server
