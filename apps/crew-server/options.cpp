#include "options.hpp"

#include <charconv>
#include <cstdio>
#include <string_view>
#include <thread>

namespace crew_server {
namespace {

constexpr const char* usage =
    "usage: crew-server [--port N] [--host ADDRESS] [--workers N] [--policy round_robin|shared|reuseport]\n"
    "  --port     the port to serve on (default 3000)\n"
    "  --host     the IPv4 address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)\n"
    "  --workers  worker processes (default: one per core)\n"
    "  --policy   how the workers share the port (default round_robin)\n"
    "signals: SIGTERM/SIGINT graceful shutdown, SIGHUP rolling reload\n";

bool number(std::string_view text, int low, int high, int& out) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < low || value > high) return false;
  out = value;
  return true;
}

}  // namespace

std::optional<options> parse(int argc, char** argv, bool& help) {
  options o;
  o.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  help = false;
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
      ok = number(value, 0, 65535, o.port);
    else if (flag == "--workers")
      ok = number(value, 1, 1024, o.workers);
    else if (flag == "--host")
      o.host = value;
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
