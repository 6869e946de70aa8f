#include "metrics.hpp"

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

bool answer_metrics(crew::cluster::primary& primary, crew::cluster::worker_process& w, const crew::message::value_type& m) {
  if (!m.is_object() || !m.contains("metrics_request")) return false;
  w.send(crew::message::value_type{{"metrics_answer", m["metrics_request"]}, {"text", prometheus_text(primary.figures())}});
  return true;
}

metrics_client::metrics_client(crew::ipc_channel* primary) : primary_(primary) {
  if (!primary_) return;
  primary_->on_message([this](crew::message m) {
    const auto& v = m.value();
    if (v.is_object() && v.contains("metrics_answer")) answer(v["metrics_answer"].get<long>(), v.value("text", ""));
  });
}

void metrics_client::request(crew::unique_function<void(std::string)> done) {
  // Never inside this call: no primary means an empty answer on the next turn.
  if (!primary_ || !primary_->connected()) return crew::loop::current().post([done = std::move(done)]() mutable { done(""); });
  long seq = next_++;
  waiting_[seq] = std::move(done);
  primary_->send(crew::message::value_type{{"metrics_request", seq}}, [this, seq](std::error_code ec) {
    if (ec) answer(seq, "");
  });
}

void metrics_client::answer(long seq, std::string text) {
  auto it = waiting_.find(seq);
  if (it == waiting_.end()) return;
  auto done = std::move(it->second);
  waiting_.erase(it);
  done(std::move(text));
}

}  // namespace crew_server
