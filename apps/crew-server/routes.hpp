// crew-server's routes, served by every worker (DESIGN.md's table):
//   GET  /               {"message":"Hello from worker","pid":...,"timestamp":ISO-8601}
//   GET  /heavy          1e6 random additions in the worker process: {result, worker, duration}
//   POST /process-image  {"imageData":[{r,g,b}...]} scaled r*1.2, g*1.1, b*0.9 (at most 255) on the
//                        thread pool: {"success":true,"result":[...]}
//   POST /convert        the body through iconv (?from=ISO-8859-1&to=UTF-8 by default); its
//                        failure is a 500 with iconv's own message
//   GET  /system-info    `ps aux | head -10`: {processes, timestamp}
//   GET  /metrics        every worker's figures in Prometheus' text format, from the primary
#pragma once

#include <list>

#include <crew/child_process.hpp>
#include <crew/http.hpp>

#include "metrics.hpp"

namespace crew_server {

/// The worker's state behind its routes: conversions in progress and the
/// channel to the primary. Lives as long as the server that uses its router.
class services {
 public:
  explicit services(crew::ipc_channel* primary) : metrics_(primary) {}
  services(const services&) = delete;
  services& operator=(const services&) = delete;

  crew::http::router router();

 private:
  void convert(crew::http::request& req, crew::http::response& res);
  std::list<crew::child_process> conversions_;
  metrics_client metrics_;
};

}  // namespace crew_server
