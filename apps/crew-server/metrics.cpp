#include "metrics.hpp"

#include <unistd.h>

#include <cstdio>

namespace crew_server {

std::string prometheus_text(const std::vector<crew::cluster::worker_figures>& workers) {
  struct metric {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const crew::cluster::worker_figures&);
  };
  static const metric metrics[] = {
      {"crew_worker_requests_total", "counter", "Requests answered by the worker (reported each second).",
       [](const crew::cluster::worker_figures& w) { return static_cast<double>(w.requests_served); }},
      {"crew_worker_restarts", "gauge", "Workers that came before this one in its place.",
       [](const crew::cluster::worker_figures& w) { return static_cast<double>(w.restarts); }},
      {"crew_worker_memory_bytes", "gauge", "Resident memory of the worker.",
       [](const crew::cluster::worker_figures& w) { return static_cast<double>(w.memory_bytes); }},
      {"crew_worker_uptime_seconds", "gauge", "Seconds since the worker started.",
       [](const crew::cluster::worker_figures& w) { return static_cast<double>(w.uptime.count()) / 1000; }},
  };
  std::string text = "# HELP crew_workers Live worker processes.\n# TYPE crew_workers gauge\ncrew_workers " +
                     std::to_string(workers.size()) + "\n";
  for (const metric& m : metrics) {
    text += std::string("# HELP ") + m.name + " " + m.help + "\n# TYPE " + m.name + " " + m.type + "\n";
    for (const auto& w : workers) {
      char value[32];
      std::snprintf(value, sizeof value, "%.15g", m.value(w));
      text += std::string(m.name) + "{worker=\"" + std::to_string(w.id) + "\",pid=\"" + std::to_string(w.pid) +
              "\"} " + value + "\n";
    }
  }
  return text;
}

std::string pool_text(const crew::pool_stats& pool) {
  std::string pid = "{pid=\"" + std::to_string(getpid()) + "\"}";
  std::string text;
  auto add = [&](const char* name, const char* type, const char* help, double value) {
    char number[32];
    std::snprintf(number, sizeof number, "%.15g", value);
    text += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + pid + " " +
            number + "\n";
  };
  add("crew_pool_threads", "gauge", "Threads of the answering worker's pool.", static_cast<double>(pool.threads));
  add("crew_pool_running", "gauge", "Tasks running on that pool.", static_cast<double>(pool.running));
  add("crew_pool_queue_size", "gauge", "Tasks waiting for a thread of that pool.", static_cast<double>(pool.queue_size));
  add("crew_pool_completed_total", "counter", "Tasks that pool has run.", static_cast<double>(pool.completed));
  add("crew_pool_utilization", "gauge", "Share of that pool's thread time spent running tasks.", pool.utilization);
  auto summary = [&](const char* name, const char* help, const crew::duration_summary& d) {
    text += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " summary\n";
    char line[160];
    for (auto [q, v] : {std::pair{"0.5", d.p50}, {"0.9", d.p90}, {"0.99", d.p99}}) {
      std::snprintf(line, sizeof line, "%s{pid=\"%d\",quantile=\"%s\"} %.9g\n", name, getpid(), q, v / 1e6);
      text += line;
    }
    std::snprintf(line, sizeof line, "%s_sum%s %.9g\n%s_count%s %llu\n", name, pid.c_str(),
                  d.mean * static_cast<double>(d.count) / 1e6, name, pid.c_str(), static_cast<unsigned long long>(d.count));
    text += line;
  };
  summary("crew_pool_wait_seconds", "From a request to a thread of that pool taking its task.", pool.wait_time);
  summary("crew_pool_run_seconds", "Tasks' time on a thread of that pool.", pool.run_time);
  return text;
}

bool answer_metrics(crew::cluster::primary& primary, crew::cluster::worker_process& w, const crew::message::value_type& m) {
  if (!m.is_object() || !m.contains("metrics_request") || !m.contains("id")) return false;
  w.send(crew::json{{"id", m["id"]}, {"text", prometheus_text(primary.figures())}});
  return true;
}

crew::task<> serve_metrics(crew::ipc_channel* primary, crew::http::response res, std::string tail) {
  crew::result<crew::message> answer = crew::make_error_code(crew::errc::ipc_channel_closed);
  if (primary) {
    crew::message question(crew::json{{"metrics_request", true}});
    answer = co_await primary->request(std::move(question), {.timeout = std::chrono::seconds(2)});
  }
  if (!answer) {
    // The worker's own figures still tell something: they follow a comment.
    res.status(503).send("# the primary cannot answer now: " + crew::error_name(answer.error()) + "\n" + tail,
                         "text/plain; version=0.0.4; charset=utf-8");
    co_return;
  }
  res.send(answer->value().value("text", "") + tail, "text/plain; version=0.0.4; charset=utf-8");
}

}  // namespace crew_server
