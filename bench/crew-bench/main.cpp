// crew-bench WORKLOAD [--option value ...]
#include <cstdlib>
#include <regex>
#include <sstream>
#include <string>

#include "workload.hpp"

namespace crew::bench {

options::options(int argc, char** argv) {
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0) {
      std::fprintf(stderr, "crew-bench: expected --option, got %s\n", argv[i]);
      std::exit(2);
    }
    values_[key.substr(2)] = argv[i + 1];
  }
}

long options::integer(const std::string& name, long fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  char* end = nullptr;
  long value = std::strtol(it->second.c_str(), &end, 10);
  if (*end != '\0' || value <= 0) {
    std::fprintf(stderr, "crew-bench: --%s needs a positive integer, got %s\n", name.c_str(), it->second.c_str());
    std::exit(2);
  }
  return value;
}

std::string options::text(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

void print_figures(const std::string& output) {
  static const std::regex figure("^[a-z_0-9]+ [0-9.]+ [a-z_]+$");
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);)
    if (std::regex_match(line, figure)) std::printf("%s\n", line.c_str());
}

}  // namespace crew::bench

namespace {

struct workload {
  const char* name;
  int (*run)(const crew::bench::options&);
  const char* usage;
};

constexpr workload workloads[] = {
    {"post", crew::bench::post, "post [--count N]        cross-thread posts: post_one_way, post_roundtrip"},
    {"queue_work", crew::bench::queue_work,
     "queue_work [--count N] [--in-flight K]  jobs through libuv's thread pool: queue_work_rate"},
    {"spawn", crew::bench::spawn,
     "spawn [--count N] [--hold-mib M] [--path crew|libuv]  sequential spawns of /bin/true: spawn_rate"},
    {"pipe", crew::bench::pipe, "pipe [--mib N]          reading a child's stdout: pipe_throughput"},
    {"fork-ipc", crew::bench::fork_ipc,
     "fork-ipc [--count N]    messages with a forked child: ipc_roundtrip, ipc_one_way"},
    {"fork-ipc-child", crew::bench::fork_ipc_child, "fork-ipc-child          (the child of fork-ipc)"},
    {"worker", crew::bench::worker_threads,
     "worker [--count N]      worker threads: worker_startup, worker_roundtrip, worker_one_way"},
    {"cluster-http", crew::bench::cluster_http,
     "cluster-http [--workers N] [--policy round_robin|shared|reuseport] [--connections C] [--seconds S]\n"
     "                          [--threads T] [--keep-alive yes|no] [--reload yes]  an HTTP cluster under wrk: req_per_s,\n"
     "                          latency_p50, latency_p99, failed, worker_replace"},
    {"pool", crew::bench::pool,
     "pool [--tasks N] [--workers W] [--in-flight K] [--kind crew|hand]  tiny tasks on pools of W threads, W processes:\n"
     "                          pool_tasks_per_s, pool_serial_latency_us, process_pool_tasks_per_s,\n"
     "                          process_pool_serial_latency_us"},
    {"pool-worker", crew::bench::pool_worker, "pool-worker             (a worker of pool's process pool)"},
    {"process-image", crew::bench::process_image,
     "process-image [--workers W] [--connections C] [--seconds S] [--size N]  crew-server's\n"
     "                          POST /process-image?grayscale of an N x N PNG under wrk: req_per_s, latency_p50,\n"
     "                          latency_p99, failed"},
    {"convert-video", crew::bench::convert_video,
     "convert-video [--count N] [--seconds S] [--direct yes]  N conversions of an S-second clip to WebM through\n"
     "                          crew-server's jobs, or FFmpeg run directly: convert_video_s"},
};

int usage() {
  std::fprintf(stderr, "usage: crew-bench WORKLOAD [--option value ...]\nworkloads:\n");
  for (const auto& w : workloads) std::fprintf(stderr, "  %s\n", w.usage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string name = argv[1];
  for (const auto& w : workloads)
    if (name == w.name) return w.run(crew::bench::options(argc, argv));
  std::fprintf(stderr, "crew-bench: unknown workload '%s'\n", name.c_str());
  return usage();
}
