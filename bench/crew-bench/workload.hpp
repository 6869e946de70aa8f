// crew-bench's workloads: each reads its options and prints one line per figure,
// `name value unit`, the format bench/run.sh compares with the Node scripts.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace crew::bench {

/// --name value pairs from the command line.
class options {
 public:
  options(int argc, char** argv);
  /// The integer value of --name, or `fallback` when absent. Exits with a
  /// message when the value is not a positive integer.
  long integer(const std::string& name, long fallback) const;
  /// The text of --name, or `fallback` when absent.
  std::string text(const std::string& name, const std::string& fallback) const;

 private:
  std::map<std::string, std::string> values_;
};

inline void report(std::string_view name, double value, std::string_view unit) {
  std::printf("%.*s %.6g %.*s\n", static_cast<int>(name.size()), name.data(), value,
              static_cast<int>(unit.size()), unit.data());
}

/// The `name value unit` lines of a program's output (wrk's, through
/// bench/wrk/figures.lua), printed as they are; the rest is dropped.
void print_figures(const std::string& output);

using clock = std::chrono::steady_clock;

inline double seconds_since(clock::time_point start) {
  return std::chrono::duration<double>(clock::now() - start).count();
}

int post(const options& opts);        // cross-thread posts: one-way rate and round trip
int queue_work(const options& opts);  // jobs through libuv's thread pool
int spawn(const options& opts);       // sequential spawn and exit of /bin/true
int pipe(const options& opts);        // reading a child's stdout
int fork_ipc(const options& opts);    // messages with a forked child over IPC
int fork_ipc_child(const options& opts);
int worker_threads(const options& opts);  // workers: startup, round trip, one-way messages
int cluster_http(const options& opts);    // an HTTP cluster under wrk: requests per second, latency, replacement
int pool(const options& opts);            // tiny tasks on crew::pool (or the hand-written pool): rate and latency
int pool_worker(const options& opts);     // the process pool's worker of `pool`
int process_image(const options& opts);   // crew-server's /process-image under wrk
int convert_video(const options& opts);   // crew-server's /convert-video, or FFmpeg run directly

}  // namespace crew::bench
