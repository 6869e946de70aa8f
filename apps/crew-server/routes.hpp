// crew-server's routes, served by every worker (DESIGN.md's table):
//   GET  /               {"message":"Hello from worker","pid":...,"timestamp":ISO-8601}
//   GET  /heavy          1e6 random additions on the worker's thread pool: {result, worker, duration}
//   POST /process-image  a PNG or JPEG, edited as the query says (image.hpp: resize, blur, enhance,
//                        grayscale, format) on the worker's thread pool; or, with Content-Type
//                        application/json, the seeds' {"imageData":[{r,g,b}...]} scaled r*1.2, g*1.1,
//                        b*0.9 (at most 255): {"success":true,"result":[...]}
//                        (both: 503 with Retry-After when the pool's queue is full)
//   POST /convert        the body through iconv (?from=ISO-8859-1&to=UTF-8 by default); its
//                        failure is a 500 with iconv's own message
//   GET  /system-info    `ps aux | head -10`: {processes: [{user, pid, "%cpu", ..., command}], timestamp},
//                        or ps's own text with ?format=text
//   GET  /healthz        {"status":"ok"} while the worker runs
//   GET  /readyz         {"ready":true}; 503 {"ready":false,"reason":"draining"} while the worker drains
//   POST /convert-video  FFmpeg through spawn, as a job: 202 {id, job}; GET /jobs/ID, GET /jobs/ID/output,
//                        DELETE /jobs/ID (video.hpp)
//   GET  /dashboard      a live page of every worker's figures (dashboard.hpp), /dashboard.js,
//                        /dashboard/events (Server-Sent Events from the primary)
//   GET  /metrics        every worker's figures in Prometheus' text format, from the primary,
//                        and the answering worker's pool: queue, utilisation, wait and run times
#pragma once

#include <list>

#include <crew/child_process.hpp>
#include <crew/http.hpp>
#include <crew/pool.hpp>

#include "dashboard.hpp"
#include "metrics.hpp"
#include "video.hpp"

namespace crew_server {

/// The worker's state behind its routes: its thread pool, conversions in
/// progress and the channel to the primary. Lives as long as the server that
/// uses its router.
class services {
 public:
  services(crew::ipc_channel* primary, std::size_t pool_threads, std::size_t pool_queue, conversion_options videos);
  services(const services&) = delete;
  services& operator=(const services&) = delete;

  crew::http::router router();
  /// For server_options::on_answer: the dashboard's figures.
  worker_gauges& gauges() noexcept { return gauges_; }

 private:
  void convert(crew::http::request& req, crew::http::response& res);
  void image(crew::http::request& req, crew::http::response& res);
  void on_pool(const char* task, crew::message in, crew::http::response& res);
  crew::pool pool_;
  std::list<crew::child_process> conversions_;  // iconv's
  conversions videos_;
  crew::ipc_channel* primary_;  // null outside a cluster
  worker_gauges gauges_;
};

}  // namespace crew_server
