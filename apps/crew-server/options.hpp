// crew-server's command line.
#pragma once

#include <optional>
#include <string>

#include <crew/cluster.hpp>
#include <crew/http.hpp>

#include "video.hpp"

namespace crew_server {

struct options {
  int port = 3000;
  std::string host = "127.0.0.1";
  int workers = 0;  // 0: one per core
  crew::cluster::policy policy = crew::cluster::policy::round_robin;
  crew::http::server_options http;  // the timeouts of --*-timeout-ms; http's defaults otherwise
  std::size_t pool_threads = 2;     // each worker's thread pool for /heavy and /process-image
  std::size_t pool_queue = 1024;    // tasks waiting there at most; past it 503
  conversion_options videos;        // /convert-video's limits, per worker
  std::string access_log;           // --access-log: a file, "-" for stdout, "" for none
};

/// Reads argv; on a bad or unknown flag prints why and the usage to stderr and
/// gives nothing. --help prints the usage to stdout and gives nothing.
std::optional<options> parse(int argc, char** argv, bool& help);

}  // namespace crew_server
