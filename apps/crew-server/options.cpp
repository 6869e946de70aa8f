#include "options.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <thread>

#include "number.hpp"

namespace crew_server {
namespace {

constexpr const char* usage =
    "usage: crew-server [--port N] [--host ADDRESS] [--workers N] [--policy round_robin|shared|reuseport]\n"
    "                   [--headers-timeout-ms N] [--request-timeout-ms N] [--keep-alive-timeout-ms N]\n"
    "                   [--pool-threads N] [--pool-queue N]\n"
    "                   [--conversions N] [--conversion-queue N] [--conversion-timeout-ms N]\n"
    "                   [--access-log FILE|-]\n"
    "  --port                   the port to serve on (default 3000)\n"
    "  --host                   the IPv4 or IPv6 address to listen on (default 127.0.0.1;\n"
    "                           0.0.0.0 or :: for every interface)\n"
    "  --workers                worker processes (default: one per core)\n"
    "  --policy                 how the workers share the port (default round_robin)\n"
    "  --headers-timeout-ms     a request's headers must be in this long after its first byte,\n"
    "                           else 408 and close (default 10000)\n"
    "  --request-timeout-ms     a request's body must be in this long after its first byte,\n"
    "                           else 408 and close (default 300000)\n"
    "  --keep-alive-timeout-ms  an idle keep-alive connection closes after this long (default 5000)\n"
    "  a timeout of 0 turns it off\n"
    "  --pool-threads           each worker's threads for /heavy and /process-image (default 2)\n"
    "  --pool-queue             requests waiting for those threads at most; past it 503 (default 1024)\n"
    "  --conversions            each worker's FFmpeg conversions at once (default 2)\n"
    "  --conversion-queue       conversions waiting in each worker at most; past it 503 (default 8)\n"
    "  --conversion-timeout-ms  a conversion longer than this is killed (default 300000)\n"
    "  --access-log             one JSON line per request, appended to FILE (- for stdout); default: none\n"
    "environment: PORT and WORKERS, as Node programs read them (the flags win)\n"
    "signals: SIGTERM/SIGINT graceful shutdown, SIGHUP rolling reload\n";

bool milliseconds(std::string_view text, std::chrono::milliseconds& out) {
  long long ms = 0;
  if (!parse_number<long long>(text, 0, 24LL * 3600 * 1000, ms)) return false;
  out = std::chrono::milliseconds(ms);
  return true;
}

}  // namespace

std::optional<options> parse(int argc, char** argv, bool& help) {
  options o;
  o.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  help = false;
  // PORT and WORKERS, as Node programs read them; the flags below win.
  auto from_environment = [](const char* name, int low, int high, int& field) {
    const char* value = std::getenv(name);
    if (!value || parse_number(std::string_view(value), low, high, field)) return true;
    std::fprintf(stderr, "crew-server: bad %s in the environment: %s\n%s", name, value, usage);
    return false;
  };
  if (!from_environment("PORT", 0, 65535, o.port) || !from_environment("WORKERS", 1, 1024, o.workers))
    return std::nullopt;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(usage, stdout);
      help = true;
      return std::nullopt;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "crew-server: unknown flag or missing value: %s\n%s", argv[i], usage);
      return std::nullopt;
    }
    std::string_view value = argv[++i];
    bool ok = true;
    if (flag == "--port")
      ok = parse_number(value, 0, 65535, o.port);
    else if (flag == "--workers")
      ok = parse_number(value, 1, 1024, o.workers);
    else if (flag == "--pool-threads")
      ok = parse_number<std::size_t>(value, 1, 256, o.pool_threads);
    else if (flag == "--pool-queue")
      ok = parse_number<std::size_t>(value, 1, 1 << 20, o.pool_queue);
    else if (flag == "--conversions")
      ok = parse_number<std::size_t>(value, 1, 64, o.videos.running);
    else if (flag == "--conversion-queue")
      ok = parse_number<std::size_t>(value, 0, 1024, o.videos.queue);
    else if (flag == "--conversion-timeout-ms")
      ok = milliseconds(value, o.videos.timeout) && o.videos.timeout.count() > 0;
    else if (flag == "--access-log")
      o.access_log = value;
    else if (flag == "--host")
      o.host = value;
    else if (flag == "--headers-timeout-ms")
      ok = milliseconds(value, o.http.headers_timeout);
    else if (flag == "--request-timeout-ms")
      ok = milliseconds(value, o.http.request_timeout);
    else if (flag == "--keep-alive-timeout-ms")
      ok = milliseconds(value, o.http.keep_alive_timeout);
    else if (auto named = crew::cluster::policy_named(value); flag == "--policy" && named)
      o.policy = *named;
    else
      ok = false;
    if (!ok) {
      std::fprintf(stderr, "crew-server: bad flag or value: %.*s %.*s\n%s", static_cast<int>(flag.size()), flag.data(),
                   static_cast<int>(value.size()), value.data(), usage);
      return std::nullopt;
    }
  }
  return o;
}

}  // namespace crew_server
