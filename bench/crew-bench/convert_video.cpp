// convert-video: crew-server's POST /convert-video against running FFmpeg directly.
//
//   crew-bench convert-video [--count 5] [--seconds 60] [--direct yes]
//
// Makes a clip with FFmpeg's testsrc (SECONDS long, 640x480, H.264), then
// converts it COUNT times, one after another, to WebM: through crew-server (the
// upload with curl, the job polled every 100 ms, the output fetched), or, with
// --direct yes, by running ffmpeg with the arguments crew-server gives it
// (apps/crew-server/video.cpp). convert_video_s: seconds per conversion.
#include <unistd.h>

#include <crew/crew.hpp>

#include <filesystem>
#include <regex>
#include <thread>

#include "workload.hpp"

namespace crew::bench {
namespace {

namespace fs = std::filesystem;

// What crew-server runs for ?format=webm (video.cpp's formats table), minus the progress pipe.
std::vector<std::string> direct_args(const std::string& input, const std::string& output) {
  return {"-v", "error", "-nostdin", "-y", "-i", input, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
          "-b:v", "1M", "-c:a", "libvorbis", output};
}

std::string curl(std::vector<std::string> args) { return exec_file_sync("curl", std::move(args)); }

}  // namespace

int convert_video(const options& opts) {
  long count = opts.integer("count", 5);
  fs::path dir = fs::temp_directory_path() / ("crew-bench-video-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::string clip = (dir / "clip.mp4").string(), out = (dir / "out.webm").string();
  (void)exec_file_sync("ffmpeg", {"-v", "error", "-y", "-f", "lavfi", "-i",
                                  "testsrc=duration=" + std::to_string(opts.integer("seconds", 60)) + ":size=640x480:rate=25",
                                  "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", clip});
  if (opts.text("direct", "no") == "yes") {
    clock::time_point start = clock::now();
    for (long i = 0; i < count; ++i) (void)exec_file_sync("ffmpeg", direct_args(clip, out));
    report("convert_video_s", seconds_since(start) / static_cast<double>(count), "s");
    fs::remove_all(dir);
    return 0;
  }
  std::string server_path = (fs::read_symlink("/proc/self/exe").parent_path() / "crew-server").string();
  child_process server = crew::spawn(server_path, {"--port", "0", "--workers", "1"});
  std::string server_out;
  int code = 0;
  pid_t server_pid = server.pid();
  std::thread runner;
  server.out().on_data([&](std::string_view data) {
    server_out += data;
    static const std::regex listening("on http://127\\.0\\.0\\.1:([0-9]+)/");
    std::smatch m;
    if (runner.joinable() || !std::regex_search(server_out, m, listening)) return;
    std::string base = "http://127.0.0.1:" + m[1].str();
    // The conversions run on a thread of their own: curl and the polling block.
    runner = std::thread([&, base] {
      static const std::regex id_field("\"id\":\"([0-9a-f]+)\"");
      clock::time_point start = clock::now();
      for (long i = 0; i < count && code == 0; ++i) {
        std::string posted = curl({"-s", "--data-binary", "@" + clip, base + "/convert-video?format=webm"});
        std::smatch id;
        if (!std::regex_search(posted, id, id_field)) {
          std::fprintf(stderr, "crew-bench: convert-video refused: %s\n", posted.c_str());
          code = 1;
          break;
        }
        for (;;) {
          std::string state = curl({"-s", base + "/jobs/" + id[1].str()});
          if (state.find("\"state\":\"done\"") != std::string::npos) break;
          if (state.find("\"state\":\"failed\"") != std::string::npos) {
            std::fprintf(stderr, "crew-bench: conversion failed: %s\n", state.c_str());
            code = 1;
            break;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(100));  // each poll is a curl process: CPU FFmpeg would use
        }
        (void)curl({"-s", "-o", out, base + "/jobs/" + id[1].str() + "/output"});
        (void)curl({"-s", "-X", "DELETE", base + "/jobs/" + id[1].str()});
      }
      if (code == 0) report("convert_video_s", seconds_since(start) / static_cast<double>(count), "s");
      ::kill(server_pid, SIGTERM);
    });
  });
  loop::current().run();
  runner.join();
  fs::remove_all(dir);
  return code;
}

}  // namespace crew::bench
