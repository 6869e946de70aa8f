#include "dashboard.hpp"

#include <sys/resource.h>

#include <algorithm>

#include <crew/timer.hpp>

namespace crew_server {
namespace {

using json = crew::message::value_type;
using namespace std::chrono_literals;

constexpr std::size_t max_samples = 100'000;  // latencies kept a second; past it, the rest are not sampled

constexpr std::size_t history_kept = 300;  // seconds of snapshots

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// The value at `fraction` of the sorted samples, in milliseconds.
double percentile_ms(const std::vector<std::uint32_t>& sorted, double fraction) {
  if (sorted.empty()) return 0;
  auto at = static_cast<std::size_t>(fraction * static_cast<double>(sorted.size() - 1));
  return sorted[at] / 1000.0;
}

constexpr const char* page = R"page(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>crew-server</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { --bg: #0f1419; --card: #182029; --text: #d9e1e8; --dim: #8a98a8; --line: #2a3542; --accent: #4fb3ff; }
  * { box-sizing: border-box; }
  body { margin: 0; padding: 24px; background: var(--bg); color: var(--text); font: 14px/1.4 system-ui, sans-serif; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  #status { color: var(--dim); margin-bottom: 20px; }
  #workers { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
  .worker { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
  .worker h2 { font-size: 15px; margin: 0 0 8px; display: flex; justify-content: space-between; }
  .worker h2 span { color: var(--dim); font-weight: normal; }
  .worker dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 12px; margin: 0; }
  .worker dt { color: var(--dim); }
  .worker dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
  .charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 12px; margin-top: 20px; }
  .chart { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
  .chart h3 { font-size: 14px; margin: 0 0 8px; color: var(--dim); font-weight: normal; }
  canvas { width: 100%; height: 160px; display: block; }
</style>
</head>
<body>
<h1>crew-server</h1>
<div id="status">connecting…</div>
<div id="workers"></div>
<div class="charts">
  <div class="chart"><h3>requests per second, per worker (last 5 minutes)</h3><canvas id="rps"></canvas></div>
  <div class="chart"><h3>latency p99 (ms), per worker</h3><canvas id="p99"></canvas></div>
  <div class="chart"><h3>memory (RSS, MiB), per worker</h3><canvas id="rss"></canvas></div>
  <div class="chart"><h3>CPU (%), per worker</h3><canvas id="cpu"></canvas></div>
</div>
<script src="/dashboard.js"></script>
</body>
</html>
)page";

constexpr const char* script = R"page(// crew-server's dashboard: one card per worker and charts of the last five
// minutes, fed each second by the primary through /dashboard/events (SSE).
'use strict';
const keep = 300;  // seconds of history
const colors = ['#4fb3ff', '#ffb84f', '#7be37b', '#ff6f91', '#c38fff', '#5ee0d6', '#f5e663', '#ff8c5a'];
const history = new Map();  // worker id -> [{t, rps, p99, rss, cpu}]

function text(value, digits = 0) {
  return value === undefined || value === null ? '–' : Number(value).toFixed(digits);
}

function duration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function card(w) {
  let el = document.getElementById(`worker-${w.id}`);
  if (!el) {
    el = document.createElement('div');
    el.className = 'worker';
    el.id = `worker-${w.id}`;
    document.getElementById('workers').appendChild(el);
  }
  const color = colors[(w.id - 1) % colors.length];
  el.innerHTML = `<h2><b style="color:${color}">worker ${w.id}</b><span>pid ${w.pid}</span></h2><dl>
    <dt>uptime</dt><dd>${duration(w.uptime_s)}</dd>
    <dt>restarts</dt><dd>${w.restarts}</dd>
    <dt>requests/s</dt><dd class="rps">${text(w.rps)}</dd>
    <dt>latency p50</dt><dd>${text(w.p50_ms, 2)} ms</dd>
    <dt>latency p99</dt><dd>${text(w.p99_ms, 2)} ms</dd>
    <dt>memory</dt><dd>${text(w.rss_bytes / 1048576, 1)} MiB</dd>
    <dt>CPU</dt><dd>${text(w.cpu_percent, 1)} %</dd>
    <dt>pool queue</dt><dd>${text(w.pool_queue)}</dd></dl>`;
}

function draw(id, field) {
  const canvas = document.getElementById(id);
  const ratio = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * ratio;
  canvas.height = canvas.clientHeight * ratio;
  const g = canvas.getContext('2d');
  g.scale(ratio, ratio);
  const width = canvas.clientWidth, height = canvas.clientHeight;
  let top = 1;
  for (const points of history.values()) for (const p of points) top = Math.max(top, p[field] || 0);
  g.strokeStyle = '#2a3542';
  g.fillStyle = '#8a98a8';
  g.font = '11px system-ui';
  g.fillText(text(top, top < 10 ? 1 : 0), 2, 10);
  g.beginPath();
  g.moveTo(0, height - 0.5);
  g.lineTo(width, height - 0.5);
  g.stroke();
  // The last five minutes, or as much as there is (at least half a minute), across the width.
  const now = Math.max(...[...history.values()].map((points) => points.length ? points[points.length - 1].t : 0));
  let oldest = now;
  for (const points of history.values()) if (points.length) oldest = Math.min(oldest, points[0].t);
  const span = Math.min(keep, Math.max(30, now - oldest));
  for (const [id_, points] of history) {
    g.strokeStyle = colors[(id_ - 1) % colors.length];
    g.lineWidth = 1.5;
    g.beginPath();
    points.forEach((p, i) => {
      const x = width - ((now - p.t) / span) * width;
      const y = height - ((p[field] || 0) / top) * (height - 14);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

// Adds a snapshot to the charts' history.
function add(snapshot) {
  const seen = new Set();
  for (const w of snapshot.workers) {
    seen.add(w.id);
    const points = history.get(w.id) || [];
    points.push({ t: snapshot.time, rps: w.rps, p99: w.p99_ms, rss: w.rss_bytes / 1048576, cpu: w.cpu_percent });
    while (points.length && points[0].t < snapshot.time - keep) points.shift();
    history.set(w.id, points);
  }
  for (const id of [...history.keys()]) {
    if (seen.has(id)) continue;
    history.delete(id);
    document.getElementById(`worker-${id}`)?.remove();
  }
}

// Shows the latest snapshot: the cards, and the charts of the history.
function render(snapshot) {
  for (const w of snapshot.workers) card(w);
  document.getElementById('status').textContent =
    `${snapshot.workers.length} workers · primary pid ${snapshot.primary} · updated ${new Date(snapshot.time * 1000).toLocaleTimeString()}`;
  draw('rps', 'rps');
  draw('p99', 'p99');
  draw('rss', 'rss');
  draw('cpu', 'cpu');
}

const events = new EventSource('/dashboard/events');
events.addEventListener('history', (e) => {
  const past = JSON.parse(e.data);
  past.forEach(add);
  if (past.length) render(past[past.length - 1]);
});
events.addEventListener('figures', (e) => {
  const snapshot = JSON.parse(e.data);
  add(snapshot);
  render(snapshot);
});
events.onerror = () => { document.getElementById('status').textContent = 'reconnecting…'; };
)page";

}  // namespace

worker_gauges::worker_gauges(crew::ipc_channel* primary, std::function<std::size_t()> pool_queue)
    : primary_(primary), pool_queue_(std::move(pool_queue)), cpu_seconds_(cpu_seconds()) {
  if (!primary_) return;
  timer_.start(1s, 1s, [this] { report(); });
  timer_.unref();  // it never keeps the worker alive
}

void worker_gauges::record(const crew::http::answer_record& r) {
  ++answered_;
  if (latencies_us_.size() < max_samples)
    latencies_us_.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(r.duration.count(), UINT32_MAX)));
}

void worker_gauges::report() {
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - last_).count();
  double cpu = cpu_seconds();
  std::sort(latencies_us_.begin(), latencies_us_.end());
  json figures = {{"rps", elapsed > 0 ? static_cast<double>(answered_) / elapsed : 0},
                  {"p50_ms", percentile_ms(latencies_us_, 0.5)},
                  {"p99_ms", percentile_ms(latencies_us_, 0.99)},
                  {"cpu_percent", elapsed > 0 ? (cpu - cpu_seconds_) / elapsed * 100 : 0},
                  {"pool_queue", pool_queue_()}};
  latencies_us_.clear();
  answered_ = 0;
  cpu_seconds_ = cpu;
  last_ = now;
  if (primary_->connected()) (void)primary_->send(crew::message(json{{"dashboard_figures", std::move(figures)}}));
}

dashboard_feed::dashboard_feed(crew::cluster::primary& primary) : primary_(primary) {
  timer_.start(1s, 1s, [this] {
    history_.push_back(snapshot());
    if (history_.size() > history_kept) history_.pop_front();
  });
  timer_.unref();  // it never keeps the primary alive
}

json dashboard_feed::snapshot() const {
  json workers = json::array();
  for (const crew::cluster::worker_figures& f : primary_.figures()) {
    json w = {{"id", f.id},
              {"pid", f.pid},
              {"uptime_s", static_cast<double>(f.uptime.count()) / 1000},
              {"restarts", f.restarts},
              {"rss_bytes", f.memory_bytes}};
    if (auto it = reports_.find(f.id); it != reports_.end() && it->second.is_object())
      for (auto& [key, value] : it->second.items()) w[key] = value;
    workers.push_back(std::move(w));
  }
  double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return {{"time", now}, {"primary", ::getpid()}, {"workers", std::move(workers)}};
}

bool dashboard_feed::message(crew::cluster::worker_process& w, const json& m) {
  if (!m.is_object()) return false;
  if (m.contains("dashboard_figures")) {
    reports_[w.id()] = m["dashboard_figures"];
    return true;
  }
  if (!m.contains("dashboard_request") || !m.contains("id")) return false;
  if (m.value("history", false)) {
    json past = json::array();
    for (const json& s : history_) past.push_back(s);
    w.send(crew::json{{"id", m["id"]}, {"history", std::move(past)}});
  } else
    w.send(crew::json{{"id", m["id"]}, {"snapshot", snapshot()}});
  return true;
}

void serve_dashboard_page(crew::http::response& res) { res.send(page, "text/html; charset=utf-8"); }

void serve_dashboard_script(crew::http::response& res) { res.send(script, "text/javascript; charset=utf-8"); }

crew::task<> serve_dashboard_events(crew::ipc_channel* primary, crew::http::response res) {
  if (!primary) {
    res.status(503).json({{"error", "no primary to ask: the dashboard needs crew-server's cluster"}});
    co_return;
  }
  res.set_header("Content-Type", "text/event-stream");
  res.set_header("Cache-Control", "no-cache");
  auto gone = std::make_shared<bool>(false);
  res.on_close([gone] { *gone = true; });
  res.write(": crew-server's figures, each second\n\n");
  {
    crew::result<crew::message> past = crew::make_error_code(crew::errc::ipc_channel_closed);
    crew::message question(crew::json{{"dashboard_request", true}, {"history", true}});
    past = co_await primary->request(std::move(question), {.timeout = std::chrono::seconds(2)});
    if (past && !*gone) res.write("event: history\ndata: " + past->value()["history"].dump() + "\n\n");
  }
  while (!*gone && !crew::cluster::disconnecting()) {
    crew::result<crew::message> answer = crew::make_error_code(crew::errc::ipc_channel_closed);
    crew::message question(crew::json{{"dashboard_request", true}});
    answer = co_await primary->request(std::move(question), {.timeout = std::chrono::seconds(2)});
    if (*gone || crew::cluster::disconnecting()) break;
    if (answer) res.write("event: figures\ndata: " + answer->value()["snapshot"].dump() + "\n\n");
    co_await crew::sleep(1s);
  }
  res.end();  // a draining worker ends the stream: the page reconnects to another
}

}  // namespace crew_server
