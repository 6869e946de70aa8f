// crew-server's access log (--access-log): one JSON line per request, written
// by each worker to the same file (appended in one write a line, so lines of
// different workers never mix).
//   {"time":"2026-11-29T18:30:00.123Z","worker":1234,"method":"GET","target":"/heavy",
//    "status":200,"bytes":61,"ms":4.2}
// plus "answered":false when the connection went before the answer.
#pragma once

#include <functional>
#include <string>

#include <crew/http.hpp>

namespace crew_server {

/// The time as JavaScript's toISOString() writes it: 2026-11-23T07:30:00.123Z.
std::string iso_time();

/// Opens `path` for appending ("-": standard output). -1 and errno when it cannot.
int open_access_log(const std::string& path);

/// What writes one line per request to `fd`: for server_options::on_answer.
std::function<void(const crew::http::answer_record&)> access_logger(int fd);

}  // namespace crew_server
