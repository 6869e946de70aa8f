#include "access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>

namespace crew_server {

std::string iso_time() {
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[32];
  std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%03dZ", static_cast<int>(millis));
  return text;
}

int open_access_log(const std::string& path) {
  if (path == "-") return STDOUT_FILENO;
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

std::function<void(const crew::http::answer_record&)> access_logger(int fd) {
  return [fd](const crew::http::answer_record& r) {
    crew::message::value_type line = {{"time", iso_time()},
                                      {"worker", ::getpid()},
                                      {"method", r.req.method},
                                      {"target", r.req.target},
                                      {"status", r.status},
                                      {"bytes", r.body_bytes},
                                      {"ms", static_cast<double>(r.duration.count()) / 1000}};
    if (!r.answered) line["answered"] = false;
    std::string text;
    crew::message::append_json(text, line);  // JSON.stringify's escaping: no raw newline in a line
    text += '\n';
    // One write: O_APPEND keeps each line whole beside the other workers'. A
    // full disk loses the line, not the request.
    while (::write(fd, text.data(), text.size()) < 0 && errno == EINTR) {
    }
  };
}

}  // namespace crew_server
