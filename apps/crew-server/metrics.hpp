// GET /metrics: the primary holds every worker's figures; the worker that
// serves the request asks the primary for them over the IPC channel.
#pragma once

#include <string>
#include <vector>

#include <crew/cluster.hpp>
#include <crew/http.hpp>
#include <crew/pool.hpp>
#include <crew/ipc.hpp>
#include <crew/task.hpp>

namespace crew_server {

/// The figures in Prometheus' text format.
std::string prometheus_text(const std::vector<crew::cluster::worker_figures>& workers);

/// This worker's pool in Prometheus' text format: threads, running tasks,
/// queue, completed tasks, utilisation, and wait and run times as summaries.
std::string pool_text(const crew::pool_stats& pool);

/// In the primary: if `m` (from worker w) asks for the figures, answers it and
/// gives true.
bool answer_metrics(crew::cluster::primary& primary, crew::cluster::worker_process& w, const crew::message::value_type& m);

/// In a worker: asks the primary for the figures (it answers within 2 s, or
/// the answer is 503) and answers `res` with them, followed by `tail`.
crew::task<> serve_metrics(crew::ipc_channel* primary, crew::http::response res, std::string tail);

}  // namespace crew_server
