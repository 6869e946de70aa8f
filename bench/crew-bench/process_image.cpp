// process-image: crew-server's POST /process-image?grayscale under wrk.
//
//   crew-bench process-image [--workers 2] [--connections 16] [--seconds 5] [--threads 2] [--size 512]
//
// Makes a SIZE x SIZE PNG with FFmpeg's testsrc2 source, starts crew-server
// (from the directory of crew-bench) with W workers, and has wrk post the
// image again and again with bench/wrk/post-file.lua: req_per_s, latency_p50,
// latency_p99, failed. Node's side is bench/node/process-image.js.
#include <unistd.h>

#include <crew/crew.hpp>

#include <filesystem>
#include <regex>

#include "workload.hpp"

namespace crew::bench {

int process_image(const options& opts) {
  long size = opts.integer("size", 512);
  std::filesystem::path image = std::filesystem::temp_directory_path() /
                                ("crew-bench-image-" + std::to_string(getpid()) + ".png");
  try {
    (void)exec_file_sync("ffmpeg", {"-v", "error", "-y", "-f", "lavfi", "-i",
                                    "testsrc2=size=" + std::to_string(size) + "x" + std::to_string(size), "-frames:v",
                                    "1", image.string()});
  } catch (const std::system_error& e) {
    std::fprintf(stderr, "crew-bench: ffmpeg could not make the image: %s\n", e.what());
    return 1;
  }
  std::string server_path = (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "crew-server").string();
  child_process server = crew::spawn(server_path, {"--port", "0", "--workers", std::to_string(opts.integer("workers", 2))});
  child_process wrk;
  std::string server_out, wrk_out;
  int code = 0;
  server.out().on_data([&](std::string_view data) {
    server_out += data;
    static const std::regex listening("on http://127\\.0\\.0\\.1:([0-9]+)/");
    std::smatch m;
    if (wrk.pid() != 0 || !std::regex_search(server_out, m, listening)) return;
    wrk = crew::spawn("wrk", {"-t", std::to_string(opts.integer("threads", 2)),
                              "-c", std::to_string(opts.integer("connections", 16)),
                              "-d", std::to_string(opts.integer("seconds", 5)) + "s",
                              "-s", CREW_WRK_POST_FILE_SCRIPT,
                              "http://127.0.0.1:" + m[1].str() + "/process-image?grayscale",
                              "--", image.string(), "image/png"});
    wrk.out().on_data([&](std::string_view chunk) { wrk_out += chunk; });
    wrk.on_close([&](exit_status status) {
      print_figures(wrk_out);
      if (status.code != 0) {
        std::fprintf(stderr, "crew-bench: wrk failed (code %d)\n", status.code);
        code = 1;
      }
      server.kill(SIGTERM);
    });
  });
  server.on_close([&](exit_status status) {
    if (status.code != 0) {
      std::fprintf(stderr, "crew-bench: crew-server ended with code %d, signal %d\n", status.code, status.signal);
      code = 1;
    }
  });
  loop::current().run();
  std::filesystem::remove(image);
  return code;
}

}  // namespace crew::bench
