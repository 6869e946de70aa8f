// crew-server, run as a user runs it: its routes, SIGHUP, SIGTERM with
// requests in flight, hostile clients and a full descriptor table in every
// policy, a port in use, a bad command line.
#include <gtest/gtest.h>

#include <dirent.h>
#include <poll.h>
#include <spng.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "../unit/http_client.hpp"
#include "run_program.hpp"

namespace {

using crew::message;
using namespace std::chrono_literals;

using crew::test::run_result;

// Runs crew-server; with_server(port, pid) runs once it serves.
template <class Fn>
run_result run_server(std::vector<std::string> args, Fn with_server) {
  return crew::test::run_program(CREW_SERVER, std::move(args), "on http://127\\.0\\.0\\.1:([0-9]+)/\n", with_server);
}

message::value_type json_of(const crew::test::http_answer& a) {
  return message::value_type::parse(a.body, nullptr, false);
}

TEST(crew_server, serves_every_route_and_exits_0_on_sigterm) {
  run_result r = run_server({"--port", "0", "--workers", "2"}, [](int port, pid_t server) {
    auto hello = crew::test::request(port, "GET", "/");
    EXPECT_EQ(hello.status, 200);
    EXPECT_EQ(json_of(hello)["message"], "Hello from worker");
    EXPECT_TRUE(json_of(hello)["pid"].is_number());
    EXPECT_TRUE(std::regex_match(json_of(hello)["timestamp"].get<std::string>(),
                                 std::regex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z")));

    auto heavy = json_of(crew::test::request(port, "GET", "/heavy"));
    EXPECT_GT(heavy["result"].get<double>(), 400000.0);  // the mean of a million draws in [0, 1) is 0.5
    EXPECT_LT(heavy["result"].get<double>(), 600000.0);
    EXPECT_TRUE(heavy["worker"].is_number());

    auto image = crew::test::request(port, "POST", "/process-image",
                                     R"({"imageData":[{"r":100,"g":100,"b":100},{"r":250,"g":10,"b":3}]})");
    EXPECT_EQ(image.body, R"({"success":true,"result":[{"r":120,"g":110.00000000000001,"b":90},{"r":255,"g":11,"b":2.7}]})");
    EXPECT_EQ(crew::test::request(port, "POST", "/process-image", "not json").status, 415);  // nor an image
    EXPECT_EQ(crew::test::request(port, "POST", "/process-image", "{not json").status, 400);
    EXPECT_EQ(crew::test::request(port, "POST", "/process-image", R"({"imageData":[{"r":"red"}]})").status, 400);

    auto converted = crew::test::request(port, "POST", "/convert", "caf\xe9");  // ISO-8859-1 to UTF-8
    EXPECT_EQ(converted.status, 200);
    EXPECT_EQ(converted.body, "caf\xc3\xa9");
    auto failed = crew::test::request(port, "POST", "/convert?from=UTF-8&to=ASCII", "caf\xe9");
    EXPECT_EQ(failed.status, 500);
    EXPECT_EQ(json_of(failed)["error"], "Conversion failed");
    EXPECT_NE(json_of(failed)["details"].get<std::string>().find("iconv"), std::string::npos);
    EXPECT_EQ(crew::test::request(port, "POST", "/convert?from=$(reboot)", "x").status, 400);

    auto info = json_of(crew::test::request(port, "GET", "/system-info"));
    ASSERT_TRUE(info["processes"].is_array()) << info;
    ASSERT_FALSE(info["processes"].empty());
    for (const auto& row : info["processes"]) {
      EXPECT_TRUE(row["pid"].is_number_integer()) << row;
      EXPECT_TRUE(row["%cpu"].is_number()) << row;
      EXPECT_TRUE(row["user"].is_string()) << row;
      EXPECT_FALSE(row["command"].get<std::string>().empty()) << row;
    }
    auto info_text = crew::test::request(port, "GET", "/system-info?format=text");
    EXPECT_NE(info_text.body.find("PID"), std::string::npos);
    EXPECT_NE(info_text.head.find("text/plain"), std::string::npos);

    EXPECT_EQ(json_of(crew::test::request(port, "GET", "/healthz"))["status"], "ok");
    EXPECT_EQ(json_of(crew::test::request(port, "GET", "/readyz"))["ready"], true);

    auto metrics = crew::test::request(port, "GET", "/metrics");
    EXPECT_EQ(metrics.status, 200);
    EXPECT_NE(metrics.body.find("crew_workers 2\n"), std::string::npos) << metrics.body;
    EXPECT_NE(metrics.body.find("crew_worker_memory_bytes{worker=\"1\""), std::string::npos) << metrics.body;
    // The answering worker's pool, which ran /heavy or /process-image above (or is idle).
    EXPECT_TRUE(std::regex_search(metrics.body, std::regex("\ncrew_pool_queue_size\\{pid=\"[0-9]+\"\\} 0\n"))) << metrics.body;
    EXPECT_TRUE(std::regex_search(metrics.body, std::regex("\ncrew_pool_run_seconds_count\\{pid=\"[0-9]+\"\\} [0-9]+\n")));
    EXPECT_EQ(crew::test::request(port, "GET", "/nowhere").status, 404);
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

// Test images, encoded here with the libraries crew-server decodes with.
struct test_image {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgba;
  const std::uint8_t* at(int x, int y) const { return &rgba[static_cast<std::size_t>(y * width + x) * 4]; }
};

// Red grows to the right, green downwards; blue is 128.
test_image gradient(int width, int height) {
  test_image t{width, height, std::vector<std::uint8_t>(static_cast<std::size_t>(width * height) * 4)};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      std::uint8_t* p = &t.rgba[static_cast<std::size_t>(y * width + x) * 4];
      p[0] = static_cast<std::uint8_t>(x * 4);
      p[1] = static_cast<std::uint8_t>(y * 5);
      p[2] = 128;
      p[3] = 255;
    }
  return t;
}

std::string png_of(const test_image& t) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr header{};
  header.width = static_cast<std::uint32_t>(t.width);
  header.height = static_cast<std::uint32_t>(t.height);
  header.bit_depth = 8;
  header.color_type = SPNG_COLOR_TYPE_TRUECOLOR_ALPHA;
  spng_set_ihdr(ctx, &header);
  std::string out;
  if (spng_encode_image(ctx, t.rgba.data(), t.rgba.size(), SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE) == 0) {
    std::size_t length = 0;
    int error = 0;
    void* png = spng_get_png_buffer(ctx, &length, &error);
    out.assign(static_cast<const char*>(png), length);
    std::free(png);
  }
  spng_ctx_free(ctx);
  return out;
}

std::string jpeg_of(const test_image& t) {
  tjhandle tj = tjInitCompress();
  unsigned char* jpeg = nullptr;
  unsigned long length = 0;
  std::string out;
  if (tjCompress2(tj, t.rgba.data(), t.width, 0, t.height, TJPF_RGBA, &jpeg, &length, TJSAMP_444, 95, 0) == 0)
    out.assign(reinterpret_cast<const char*>(jpeg), length);
  tjFree(jpeg);
  tjDestroy(tj);
  return out;
}

// Any PNG or JPEG as RGBA; width 0 when it does not decode.
test_image decode(const std::string& bytes) {
  test_image t;
  if (bytes.starts_with("\x89PNG")) {
    spng_ctx* ctx = spng_ctx_new(0);
    spng_set_png_buffer(ctx, bytes.data(), bytes.size());
    spng_ihdr header{};
    std::size_t size = 0;
    if (spng_get_ihdr(ctx, &header) == 0 && spng_decoded_image_size(ctx, SPNG_FMT_RGBA8, &size) == 0) {
      t.rgba.resize(size);
      if (spng_decode_image(ctx, t.rgba.data(), size, SPNG_FMT_RGBA8, 0) == 0) {
        t.width = static_cast<int>(header.width);
        t.height = static_cast<int>(header.height);
      }
    }
    spng_ctx_free(ctx);
  } else if (bytes.starts_with("\xff\xd8")) {
    tjhandle tj = tjInitDecompress();
    auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
    int width = 0, height = 0, subsampling = 0, colorspace = 0;
    if (tjDecompressHeader3(tj, data, bytes.size(), &width, &height, &subsampling, &colorspace) == 0) {
      t.rgba.resize(static_cast<std::size_t>(width * height) * 4);
      if (tjDecompress2(tj, data, bytes.size(), t.rgba.data(), width, 0, height, TJPF_RGBA, 0) == 0) {
        t.width = width;
        t.height = height;
      }
    }
    tjDestroy(tj);
  }
  return t;
}

// A PNG whose header claims width x height (its CRC made right), and no pixels.
std::string png_claiming(std::uint32_t width, std::uint32_t height) {
  std::string png = png_of(gradient(1, 1));
  for (int i = 0; i < 4; ++i) {
    png[16 + i] = static_cast<char>(width >> (24 - 8 * i));
    png[20 + i] = static_cast<char>(height >> (24 - 8 * i));
  }
  auto crc = static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(png.data() + 12), 17));
  for (int i = 0; i < 4; ++i) png[29 + i] = static_cast<char>(crc >> (24 - 8 * i));
  return png;
}

TEST(crew_server, process_image_edits_png_and_jpeg_and_refuses_what_it_cannot_take) {
  run_result r = run_server({"--port", "0", "--workers", "1"}, [](int port, pid_t server) {
    test_image source = gradient(64, 48);
    std::string png = png_of(source), jpeg = jpeg_of(source);
    ASSERT_FALSE(png.empty());
    ASSERT_FALSE(jpeg.empty());

    // No operation named: the seeds' colour scaling, in the input's format.
    auto scaled = crew::test::request(port, "POST", "/process-image", png);
    ASSERT_EQ(scaled.status, 200) << scaled.body;
    EXPECT_NE(scaled.head.find("Content-Type: image/png"), std::string::npos) << scaled.head;
    test_image out = decode(scaled.body);
    ASSERT_EQ(out.width, 64);
    ASSERT_EQ(out.height, 48);
    EXPECT_EQ(out.at(10, 10)[0], 48);   // 40 x 1.2
    EXPECT_EQ(out.at(10, 10)[1], 55);   // 50 x 1.1
    EXPECT_EQ(out.at(10, 10)[2], 115);  // 128 x 0.9 = 115.2
    EXPECT_EQ(out.at(60, 47)[0], 255);  // 240 x 1.2, at most 255

    auto grey = decode(crew::test::request(port, "POST", "/process-image?grayscale", png).body);
    ASSERT_EQ(grey.width, 64);
    const std::uint8_t* g = grey.at(10, 10);
    EXPECT_EQ(g[0], 56);  // 0.299 x 40 + 0.587 x 50 + 0.114 x 128 = 55.9
    EXPECT_EQ(g[0], g[1]);
    EXPECT_EQ(g[0], g[2]);

    auto small = crew::test::request(port, "POST", "/process-image?resize=32x24&format=jpeg", png);
    EXPECT_NE(small.head.find("Content-Type: image/jpeg"), std::string::npos) << small.head;
    test_image half = decode(small.body);
    EXPECT_EQ(half.width, 32);
    EXPECT_EQ(half.height, 24);
    EXPECT_NEAR(half.at(5, 5)[0], 40, 8);  // the mean of x = 10 and 11 (red 40, 44), give or take JPEG's loss
    EXPECT_NEAR(half.at(5, 5)[2], 128, 8);

    // A JPEG in, a PNG out (Accept), blurred: the edge of a black and white
    // image gets values between.
    test_image halves = gradient(40, 8);
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 40; ++x)
        for (int c = 0; c < 3; ++c) halves.rgba[static_cast<std::size_t>(y * 40 + x) * 4 + c] = x < 20 ? 0 : 255;
    auto blurred = decode(crew::test::request(port, "POST", "/process-image?blur=3&format=png", jpeg_of(halves)).body);
    ASSERT_EQ(blurred.width, 40);
    EXPECT_LT(blurred.at(0, 4)[0], 10);
    EXPECT_GT(blurred.at(39, 4)[0], 245);
    EXPECT_GT(blurred.at(19, 4)[0], 60);
    EXPECT_LT(blurred.at(19, 4)[0], 200);
    EXPECT_EQ(decode(crew::test::request(port, "POST", "/process-image?grayscale&format=png", jpeg).body).width, 64);

    // The seeds' JSON pixels still work, by type or by their first character.
    EXPECT_EQ(crew::test::request(port, "POST", "/process-image", R"({"imageData":[{"r":1,"g":1,"b":1}]})").status, 200);

    // Refusals: a JSON error each, and the worker goes on.
    auto refused = [&](const std::string& path, const std::string& body) {
      auto a = crew::test::request(port, "POST", path, body);
      EXPECT_TRUE(json_of(a)["error"].is_string()) << path << ": " << a.body;
      return a.status;
    };
    EXPECT_EQ(refused("/process-image", "GIF89a not a png"), 415);
    EXPECT_EQ(refused("/process-image", png.substr(0, png.size() / 2)), 400);  // cut short
    EXPECT_EQ(refused("/process-image", jpeg.substr(0, jpeg.size() / 2)), 400);
    EXPECT_EQ(refused("/process-image?resize=0x5", png), 400);
    EXPECT_EQ(refused("/process-image?resize=big", png), 400);
    EXPECT_EQ(refused("/process-image?blur=1000", png), 400);
    EXPECT_EQ(refused("/process-image?format=gif", png), 400);
    EXPECT_EQ(refused("/process-image?sharpen", png), 400);
    EXPECT_EQ(refused("/process-image?resize=16384x16384", png), 413);
    EXPECT_EQ(refused("/process-image", png_claiming(100000, 100000)), 413);

    // An upload over the limit: refused at its Content-Length, before a byte of
    // the body is read; or, chunked, once the limit is passed.
    {
      auto c = crew::test::http_connection::to(port);
      ASSERT_TRUE(c.send("POST /process-image HTTP/1.1\r\nHost: x\r\nContent-Length: 2147483648\r\n\r\n"));
      EXPECT_EQ(c.answer().status, 413);
    }
    {
      auto c = crew::test::http_connection::to(port);
      ASSERT_TRUE(c.send("POST /process-image HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
      std::string chunk(1 << 20, 'x');
      char size_line[32];
      std::snprintf(size_line, sizeof size_line, "%zx\r\n", chunk.size());
      for (int i = 0; i < 40 && c.send(size_line + chunk + "\r\n"); ++i) {
      }
      EXPECT_EQ(c.answer().status, 413);
    }
    EXPECT_EQ(crew::test::request(port, "GET", "/").status, 200);
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

// A clip made by FFmpeg's testsrc at test time, as H.264 in MP4.
std::string make_clip(int seconds, const std::string& size) {
  std::string path = testing::TempDir() + "clip-" + std::to_string(seconds) + "-" + size + ".mp4";
  (void)crew::exec_file_sync("ffmpeg", {"-v", "error", "-y", "-f", "lavfi", "-i",
                                        "testsrc=duration=" + std::to_string(seconds) + ":size=" + size + ":rate=25",
                                        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", path});
  std::ifstream file(path, std::ios::binary);
  std::stringstream bytes;
  bytes << file.rdbuf();
  return bytes.str();
}

// The job's state once `done` says so (polled: the job runs in the server).
message::value_type job_when(int port, const std::string& id,
                             const std::function<bool(const message::value_type&)>& done) {
  message::value_type state;
  for (int i = 0; i < 1200; ++i) {
    state = json_of(crew::test::request(port, "GET", "/jobs/" + id));
    if (done(state)) break;
    std::this_thread::sleep_for(50ms);
  }
  return state;
}

bool ended(const message::value_type& s) {
  std::string state = s.value("state", "");
  return state == "done" || state == "failed" || state == "cancelled";
}

// FFmpeg processes whose command line names `text` (a job's id).
int ffmpeg_running_with(const std::string& text) {
  int found = 0;
  DIR* proc = opendir("/proc");
  while (dirent* entry = readdir(proc)) {
    std::ifstream cmdline(std::string("/proc/") + entry->d_name + "/cmdline");
    std::string line((std::istreambuf_iterator<char>(cmdline)), std::istreambuf_iterator<char>());
    if (line.starts_with("ffmpeg") && line.find(text) != std::string::npos) ++found;
  }
  closedir(proc);
  return found;
}

// Whether no FFmpeg names `text` any more, waiting up to 5 s: a process sent
// SIGKILL is gone a moment later, not at once.
bool ffmpeg_gone(const std::string& text) {
  for (int i = 0; i < 100 && ffmpeg_running_with(text) > 0; ++i) std::this_thread::sleep_for(50ms);
  return ffmpeg_running_with(text) == 0;
}

TEST(crew_server, convert_video_runs_ffmpeg_as_a_job_whose_output_ffprobe_checks) {
  std::string clip = make_clip(2, "320x240");
  ASSERT_FALSE(clip.empty());
  run_result r = run_server({"--port", "0", "--workers", "2"}, [&](int port, pid_t server) {
    auto posted = crew::test::request(port, "POST", "/convert-video?format=webm&size=160x120", clip);
    ASSERT_EQ(posted.status, 202) << posted.body;
    std::string id = json_of(posted)["id"];
    EXPECT_EQ(json_of(posted)["job"], "/jobs/" + id);
    auto state = job_when(port, id, ended);  // asked of either worker: the jobs' directory is shared
    ASSERT_EQ(state["state"], "done") << state;
    EXPECT_EQ(state["percent"], 100);

    auto output = crew::test::request(port, "GET", "/jobs/" + id + "/output");
    ASSERT_EQ(output.status, 200);
    EXPECT_NE(output.head.find("Content-Type: video/webm"), std::string::npos) << output.head;
    std::string path = testing::TempDir() + "converted.webm";
    std::ofstream(path, std::ios::binary) << output.body;
    std::string probe = crew::exec_file_sync(
        "ffprobe", {"-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", path});
    EXPECT_EQ(probe, "vp8,160,120\n");
    double seconds = std::stod(crew::exec_file_sync(
        "ffprobe", {"-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path}));
    EXPECT_NEAR(seconds, 2.0, 0.1);

    auto gif = crew::test::request(port, "POST", "/convert-video?format=gif", clip);
    ASSERT_EQ(gif.status, 202) << gif.body;
    std::string gif_id = json_of(gif)["id"];
    EXPECT_EQ(job_when(port, gif_id, ended)["state"], "done");
    EXPECT_TRUE(crew::test::request(port, "GET", "/jobs/" + gif_id + "/output").body.starts_with("GIF89a"));

    EXPECT_EQ(json_of(crew::test::request(port, "DELETE", "/jobs/" + id))["deleted"], true);
    EXPECT_EQ(crew::test::request(port, "GET", "/jobs/" + id).status, 404);

    // Refusals, each a JSON error; the worker goes on.
    auto refused = [&](const std::string& path_and_query, const std::string& body) {
      auto a = crew::test::request(port, "POST", path_and_query, body);
      EXPECT_TRUE(json_of(a)["error"].is_string()) << path_and_query << ": " << a.body;
      return a.status;
    };
    EXPECT_EQ(refused("/convert-video?format=avi", clip), 400);
    EXPECT_EQ(refused("/convert-video?format=mp4;rm", clip), 400);
    EXPECT_EQ(refused("/convert-video?size=15x9", clip), 400);
    EXPECT_EQ(refused("/convert-video?size=99999x2", clip), 400);
    EXPECT_EQ(refused("/convert-video", "not a video at all"), 415);
    // A playlist naming a file of the server's own disk is no video: FFmpeg must not read that file.
    std::string playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n" + testing::TempDir() +
                           "clip-2-320x240.mp4\n#EXT-X-ENDLIST\n";
    EXPECT_EQ(refused("/convert-video", playlist), 415);
    EXPECT_EQ(refused("/convert-video", clip.substr(0, clip.size() / 3)), 415);  // cut short: no moov
    EXPECT_EQ(crew::test::request(port, "GET", "/jobs/0123456789abcdef").status, 404);
    EXPECT_EQ(crew::test::request(port, "GET", "/jobs/../../etc/passwd").status, 404);
    {
      auto c = crew::test::http_connection::to(port);
      ASSERT_TRUE(c.send("POST /convert-video HTTP/1.1\r\nHost: x\r\nContent-Length: 2147483648000\r\n\r\n"));
      EXPECT_EQ(c.answer().status, 413);
    }
    EXPECT_EQ(crew::test::request(port, "GET", "/").status, 200);
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

// A cancelled job, one past its timeout, a client gone mid-upload and a
// shutdown each end FFmpeg's process tree and remove the job's files; a full
// queue is a 503 with Retry-After.
TEST(crew_server, convert_video_kills_ffmpeg_and_removes_files_on_cancel_timeout_and_shutdown) {
  std::string clip = make_clip(60, "640x480");
  ASSERT_FALSE(clip.empty());
  run_result r = run_server({"--port", "0", "--workers", "1", "--conversions", "1", "--conversion-queue", "1",
                             "--conversion-timeout-ms", "3000"},
                            [&](int port, pid_t server) {
    std::filesystem::path jobs = std::filesystem::temp_directory_path() / ("crew-server-" + std::to_string(server) + "-jobs");
    std::string a = json_of(crew::test::request(port, "POST", "/convert-video?format=webm", clip))["id"];
    // b is made slow (a 60 s clip scaled to 2048x2048): it cannot end within its 3 s.
    std::string b = json_of(crew::test::request(port, "POST", "/convert-video?format=webm&size=2048x2048", clip))["id"];
    ASSERT_FALSE(a.empty());
    ASSERT_FALSE(b.empty());
    auto full = crew::test::request(port, "POST", "/convert-video?format=webm", clip);
    EXPECT_EQ(full.status, 503);
    EXPECT_NE(full.head.find("Retry-After: "), std::string::npos) << full.head;

    auto running = job_when(port, a, [](const auto& s) { return s.value("state", "") != "queued"; });
    ASSERT_EQ(running["state"], "running") << running;
    EXPECT_EQ(crew::test::request(port, "GET", "/jobs/" + a + "/output").status, 409);
    EXPECT_EQ(json_of(crew::test::request(port, "GET", "/jobs/" + b))["state"], "queued");
    EXPECT_EQ(ffmpeg_running_with(a), 1);
    auto cancelled = crew::test::request(port, "DELETE", "/jobs/" + a);
    EXPECT_EQ(json_of(cancelled)["state"], "cancelled") << cancelled.body;
    EXPECT_TRUE(ffmpeg_gone(a));
    EXPECT_FALSE(std::filesystem::exists(jobs / a));

    // b runs next, and goes past its 3 s.
    auto timed_out = job_when(port, b, ended);
    EXPECT_EQ(timed_out["state"], "failed");
    EXPECT_NE(timed_out["error"].get<std::string>().find("ETIMEDOUT"), std::string::npos) << timed_out;
    EXPECT_TRUE(ffmpeg_gone(b));
    EXPECT_FALSE(std::filesystem::exists(jobs / b / "input"));
    EXPECT_FALSE(std::filesystem::exists(jobs / b / "output.webm"));

    // A client gone mid-upload leaves nothing behind.
    {
      auto c = crew::test::http_connection::to(port);
      ASSERT_TRUE(c.send("POST /convert-video HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + clip.substr(0, 4096)));
    }
    auto others = [&] {  // job directories beside b's
      std::size_t left = 0;
      for (const auto& entry : std::filesystem::directory_iterator(jobs)) left += entry.path().filename() != b;
      return left;
    };
    for (int i = 0; i < 100 && others() > 0; ++i) std::this_thread::sleep_for(50ms);  // the server sees the close soon
    EXPECT_EQ(others(), 0u);

    // A conversion running at shutdown is killed, and the jobs' directory goes.
    std::string d = json_of(crew::test::request(port, "POST", "/convert-video?format=webm&size=2048x2048", clip))["id"];
    ASSERT_EQ(job_when(port, d, [](const auto& s) { return s.value("state", "") != "queued"; })["state"], "running");
    kill(server, SIGTERM);
    for (int i = 0; i < 100 && std::filesystem::exists(jobs); ++i) std::this_thread::sleep_for(50ms);
    EXPECT_TRUE(ffmpeg_gone(d));
    EXPECT_FALSE(std::filesystem::exists(jobs));
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

TEST(crew_server, convert_video_without_ffmpeg_on_path_is_503_and_says_so) {
  run_result r = crew::test::run_program(
      CREW_SERVER, {"--port", "0", "--workers", "1"}, "on http://127\\.0\\.0\\.1:([0-9]+)/\n",
      [](int port, pid_t server) {
        auto a = crew::test::request(port, "POST", "/convert-video", "anything");
        EXPECT_EQ(a.status, 503);
        EXPECT_NE(json_of(a)["error"].get<std::string>().find("ffmpeg"), std::string::npos) << a.body;
        kill(server, SIGTERM);
      },
      {{"PATH", "/nonexistent"}});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

TEST(crew_server, metrics_with_the_primary_stopped_is_503_with_the_workers_own_figures) {
  // reuseport: the workers accept by themselves, so a stopped primary still lets a request in.
  run_result r = run_server({"--port", "0", "--workers", "1", "--policy", "reuseport"}, [](int port, pid_t server) {
    kill(server, SIGSTOP);
    auto metrics = crew::test::request(port, "GET", "/metrics");  // the primary's answer times out in 2 s
    kill(server, SIGCONT);
    EXPECT_EQ(metrics.status, 503);
    EXPECT_EQ(metrics.body.rfind("# the primary cannot answer now: ETIMEDOUT\n", 0), 0U) << metrics.body;
    EXPECT_TRUE(std::regex_search(metrics.body, std::regex("\ncrew_pool_threads\\{pid=\"[0-9]+\"\\} [0-9]+\n"))) << metrics.body;
    EXPECT_EQ(crew::test::request(port, "GET", "/metrics").status, 200);  // and once it goes on, 200 again
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

TEST(crew_server, sighup_replaces_every_worker) {
  run_result r = run_server({"--port", "0", "--workers", "2"}, [](int port, pid_t server) {
    auto pids = [port] {
      std::set<int> seen;
      for (int i = 0; i < 20; ++i) {
        auto a = crew::test::request(port, "GET", "/");
        if (a.status == 200) seen.insert(json_of(a)["pid"].get<int>());
      }
      return seen;
    };
    std::set<int> before = pids();
    EXPECT_EQ(before.size(), 2u);  // round robin: both workers answer
    kill(server, SIGHUP);
    std::set<int> after;
    for (int i = 0; i < 500; ++i) {
      after = pids();
      bool all_new = true;
      for (int pid : after) all_new = all_new && !before.count(pid);
      if (all_new && after.size() == 2) break;
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_EQ(after.size(), 2u);
    for (int pid : after) EXPECT_FALSE(before.count(pid)) << pid;
    EXPECT_NE(crew::test::request(port, "GET", "/metrics").body.find("crew_worker_restarts{worker=\"3\""),
              std::string::npos);
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

// Whether the peer closes the connection (end of file) within 10 s.
bool closed_by_server(crew::test::http_connection& c) {
  pollfd p{c.fd(), POLLIN, 0};
  char byte;
  return poll(&p, 1, 10'000) == 1 && recv(c.fd(), &byte, 1, 0) == 0;
}

// The Date header of an answer.
std::string date_of(const crew::test::http_answer& a) {
  std::smatch m;
  return std::regex_search(a.head, m, std::regex("\r\nDate: ([^\r]*)")) ? m[1].str() : "";
}

class every_policy : public testing::TestWithParam<std::string> {};

// A slowloris (headers held back), an idle keep-alive connection and a body
// that never comes, through the front door in each policy: each is answered
// 408 or closed once its timeout passes, and the Date header moves on.
TEST_P(every_policy, holds_against_slow_and_idle_clients_and_keeps_its_date_current) {
  run_result r = run_server({"--port", "0", "--workers", "2", "--policy", GetParam(), "--headers-timeout-ms", "300",
                             "--request-timeout-ms", "600", "--keep-alive-timeout-ms", "300"},
                            [](int port, pid_t server) {
    auto slowloris = crew::test::http_connection::to(port);
    slowloris.send("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    pollfd p{slowloris.fd(), POLLIN, 0};
    for (int i = 0; i < 500 && poll(&p, 1, 0) == 0; ++i) {
      slowloris.send("z");
      std::this_thread::sleep_for(20ms);
    }
    std::string out = slowloris.read_to_end();
    EXPECT_EQ(out.rfind("HTTP/1.1 408 ", 0), 0u) << out;
    EXPECT_NE(out.find("Connection: close"), std::string::npos) << out;

    auto idle = crew::test::http_connection::to(port);
    EXPECT_TRUE(idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    crew::test::http_answer first = idle.answer();
    EXPECT_EQ(first.status, 200);
    EXPECT_TRUE(closed_by_server(idle)) << "an idle keep-alive connection stayed open";

    auto upload = crew::test::http_connection::to(port);
    upload.send("POST /process-image HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");  // the rest never comes
    out = upload.read_to_end();
    EXPECT_EQ(out.rfind("HTTP/1.1 408 ", 0), 0u) << out;

    std::string later;
    for (int i = 0; i < 300 && (later.empty() || later == date_of(first)); ++i) {
      std::this_thread::sleep_for(10ms);
      later = date_of(crew::test::request(port, "GET", "/"));
    }
    EXPECT_FALSE(date_of(first).empty());
    EXPECT_NE(later, date_of(first)) << "the Date header is frozen";
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

// SIGTERM while 20 requests are in flight (on their way, queued, being
// computed): all 20 are answered, none is reset, and the server exits 0.
TEST_P(every_policy, sigterm_answers_every_request_in_flight_and_exits_0) {
  std::vector<crew::test::http_answer> answers;
  run_result r = run_server({"--port", "0", "--workers", "2", "--policy", GetParam()}, [&](int port, pid_t server) {
    std::vector<crew::test::http_connection> in_flight;
    for (int i = 0; i < 20; ++i) {
      in_flight.push_back(crew::test::http_connection::to(port));
      EXPECT_TRUE(in_flight.back().send("GET /heavy HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
    kill(server, SIGTERM);
    for (auto& c : in_flight) answers.push_back(c.answer());
  });
  ASSERT_EQ(answers.size(), 20u);
  for (const auto& a : answers) {
    EXPECT_EQ(a.status, 200);
    EXPECT_TRUE(json_of(a)["worker"].is_number()) << a.body;
  }
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

// SIGTERM during a rolling reload (the replacements' listens are cancelled):
// still a graceful shutdown, exit 0, nothing on stderr.
TEST_P(every_policy, sigterm_during_a_reload_exits_0_quietly) {
  for (auto delay : {0ms, 2ms, 5ms, 10ms}) {
    run_result r = run_server({"--port", "0", "--workers", "2", "--policy", GetParam()}, [&](int, pid_t server) {
      kill(server, SIGHUP);
      std::this_thread::sleep_for(delay);
      kill(server, SIGTERM);
    });
    EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << delay.count() << " ms: " << r.err;
    EXPECT_EQ(r.err, "") << delay.count() << " ms";
  }
}

INSTANTIATE_TEST_SUITE_P(crew_server, every_policy, testing::Values("round_robin", "shared", "reuseport"),
                         [](const auto& param) { return param.param; });

// The TCP sockets of process `pid` in state CLOSE-WAIT (the peer closed, the
// process has not).
int close_wait_sockets(pid_t pid) {
  std::set<std::string> inodes;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      char target[64] = {};
      std::string link = dir + "/" + e->d_name;
      if (readlink(link.c_str(), target, sizeof target - 1) > 0 && std::string_view(target).starts_with("socket:["))
        inodes.insert(std::string(target + 8, std::strlen(target) - 9));
    }
    closedir(d);
  }
  int count = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
      count += state == "08" && inodes.count(inode);
    }
  }
  return count;
}

// Under `ulimit -n 128`, with one worker in the default policy, 400
// connections are opened, each with a request, and held: the worker takes
// what its descriptor table holds and refuses the rest, which the primary
// closes; every connection is answered or closed, none is left hanging. Then
// all are closed: afterwards the primary holds no socket in CLOSE-WAIT, and
// the server answers again.
TEST(crew_server, past_its_descriptor_limit_it_recovers) {
  int left = -1;
  std::size_t settled = 0, answered = 0;
  crew::test::http_answer again;
  run_result r = crew::test::run_program(
      "/bin/sh", {"-c", "ulimit -n 128 && exec \"$0\" \"$@\"", CREW_SERVER, "--port", "0", "--workers", "1"},
      "on http://127\\.0\\.0\\.1:([0-9]+)/\n", [&](int port, pid_t server) {
        std::vector<pollfd> open;
        for (int i = 0; i < 400; ++i) {
          int fd = crew::test::connect_to(port);
          const char request[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
          if (fd >= 0 && send(fd, request, sizeof request - 1, MSG_NOSIGNAL) > 0) open.push_back({fd, POLLIN, 0});
        }
        std::vector<pollfd> waiting = open;
        auto deadline = std::chrono::steady_clock::now() + crew::test::scaled(30s);
        while (!waiting.empty() && std::chrono::steady_clock::now() < deadline) {
          poll(waiting.data(), waiting.size(), 100);
          std::erase_if(waiting, [&](const pollfd& p) {
            if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) return false;
            char head[16] = {};
            ssize_t n = recv(p.fd, head, sizeof head - 1, 0);
            answered += n > 0 && std::string_view(head).starts_with("HTTP/1.1 200");
            return true;
          });
        }
        settled = open.size() - waiting.size();
        for (const pollfd& p : open) close(p.fd);
        // Served again: with one worker, hand-offs go out in turn, so every
        // connection before this one has been settled by then.
        for (int i = 0; i < 200 && (again = crew::test::request(port, "GET", "/")).status != 200; ++i)
          std::this_thread::sleep_for(50ms);
        for (int i = 0; i < 1000 && (left = close_wait_sockets(server)) != 0; ++i) std::this_thread::sleep_for(10ms);
        kill(server, SIGTERM);
      });
  EXPECT_EQ(settled, 400u) << "connections neither answered nor closed";
  EXPECT_GT(answered, 0u);
  EXPECT_LT(answered, 128u);  // the worker's table cannot hold them all: the others were refused
  EXPECT_EQ(left, 0) << "sockets left in CLOSE-WAIT in the primary";
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

TEST(crew_server, a_port_in_use_is_a_clear_error_and_exit_code_1) {
  crew::test::held_port holder;
  ASSERT_NE(holder.port(), 0);
  std::string port = std::to_string(holder.port());
  for (const char* policy : {"round_robin", "shared", "reuseport"}) {
    run_result r = run_server({"--port", port, "--workers", "2", "--policy", policy}, [](int, pid_t) {});
    EXPECT_EQ(r.status.code, 1) << policy;
    // One line, whichever worker fails first (the others' cancelled listens are not errors).
    EXPECT_EQ(r.err, "cluster: cannot listen on 127.0.0.1:" + port + ": EADDRINUSE (address already in use)\n")
        << policy;
  }
}

// A worker told to stop finishes what it serves; meanwhile /readyz, asked on a
// connection it still serves, answers 503.
TEST(crew_server, readyz_is_503_while_a_worker_drains) {
  run_result r = run_server({"--port", "0", "--workers", "1"}, [](int port, pid_t server) {
    pid_t worker = json_of(crew::test::request(port, "GET", "/"))["pid"].get<pid_t>();
    auto c = crew::test::http_connection::to(port);
    ASSERT_TRUE(c.send("GET /readyz HTTP/1.1\r\nHost: x\r\n"));  // a request begun: the drain waits for it
    std::this_thread::sleep_for(100ms);  // not timing: the bytes are in before the signal either way
    kill(worker, SIGTERM);
    std::this_thread::sleep_for(1s);  // for the worker to take the signal; it waits for this request
    ASSERT_TRUE(c.send("\r\n"));
    auto draining = c.answer();
    EXPECT_EQ(draining.status, 503) << draining.head;
    EXPECT_EQ(json_of(draining)["reason"], "draining");
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

// PORT and WORKERS come from the environment, as Node programs take them; flags win.
TEST(crew_server, port_and_workers_come_from_the_environment_and_flags_win) {
  run_result from_env = crew::test::run_program(
      CREW_SERVER, {}, "([0-9]+) workers on http://127\\.0\\.0\\.1:[0-9]+/\n",
      [](int workers, pid_t server) {
        EXPECT_EQ(workers, 3);
        kill(server, SIGTERM);
      },
      {{"PORT", "0"}, {"WORKERS", "3"}});
  EXPECT_EQ(from_env.status, (crew::exit_status{0, 0})) << from_env.err;
  run_result flags_win = crew::test::run_program(
      CREW_SERVER, {"--workers", "1"}, "([0-9]+) workers on http://",
      [](int workers, pid_t server) {
        EXPECT_EQ(workers, 1);
        kill(server, SIGTERM);
      },
      {{"PORT", "0"}, {"WORKERS", "3"}});
  EXPECT_EQ(flags_win.status, (crew::exit_status{0, 0})) << flags_win.err;
  run_result bad = crew::test::run_program(CREW_SERVER, {}, "$^", [](int, pid_t) {}, {{"PORT", "http"}});
  EXPECT_EQ(bad.status.code, 2);
  EXPECT_NE(bad.err.find("bad PORT in the environment: http"), std::string::npos) << bad.err;
}

// /dashboard: the page and its script come from crew-server itself; its event
// stream gives one entry per worker each second, and the figures move under load.
TEST(crew_server, the_dashboard_streams_every_workers_figures_each_second) {
  run_result r = run_server({"--port", "0", "--workers", "2"}, [](int port, pid_t server) {
    auto page = crew::test::request(port, "GET", "/dashboard");
    EXPECT_EQ(page.status, 200);
    EXPECT_NE(page.head.find("text/html"), std::string::npos);
    EXPECT_NE(page.body.find("<script src=\"/dashboard.js\">"), std::string::npos);
    EXPECT_NE(crew::test::request(port, "GET", "/dashboard.js").body.find("EventSource('/dashboard/events')"),
              std::string::npos);

    auto stream = crew::test::http_connection::to(port);
    ASSERT_TRUE(stream.send("GET /dashboard/events HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::atomic<bool> loading{true};
    std::thread load([&] {
      crew::test::http_client client(port);
      for (int i = 0; i < 20000 && loading; ++i) (void)client.get("/");
    });
    // Events until one shows both workers answering (bounded: 20 events, one a second).
    std::string text;
    double busiest = 0;
    std::set<pid_t> pids;
    for (int events = 0; events < 20 && busiest == 0;) {  // busiest < 0: a failure
      std::string chunk = stream.read_some();
      if (chunk.empty()) break;
      text += chunk;
      for (std::size_t at; (at = text.find("data: ")) != std::string::npos;) {
        std::size_t end = text.find('\n', at);
        if (end == std::string::npos) break;
        auto snapshot = message::value_type::parse(text.substr(at + 6, end - at - 6), nullptr, false);
        text.erase(0, end + 1);
        ++events;
        if (snapshot.is_array()) {  // the first event: the last minutes' snapshots, one a second
          EXPECT_EQ(events, 1);
          continue;
        }
        EXPECT_TRUE(snapshot.is_object());
        if (!snapshot.is_object() || snapshot["workers"].size() != 2u) {
          ADD_FAILURE() << "not two workers: " << snapshot;
          busiest = -1;  // ends the loop; the load thread is joined below
          break;
        }
        double least = 1e9;
        for (const auto& w : snapshot["workers"]) {
          pids.insert(w["pid"].get<pid_t>());
          EXPECT_GE(w["uptime_s"].get<double>(), 0);
          EXPECT_GT(w["rss_bytes"].get<double>(), 0);
          least = std::min(least, w.value("rps", 0.0));  // absent until the worker's first report
        }
        busiest = std::max(busiest, least);
      }
    }
    loading = false;
    load.join();
    EXPECT_GT(busiest, 0) << "no event showed both workers answering under load";
    EXPECT_EQ(pids.size(), 2u);
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

// --access-log: one JSON line per request from every worker, appended to one file.
TEST(crew_server, the_access_log_has_a_json_line_per_request) {
  std::string path = testing::TempDir() + "crew-server-access.log";
  std::filesystem::remove(path);
  run_result r = run_server({"--port", "0", "--workers", "2", "--access-log", path}, [](int port, pid_t server) {
    EXPECT_EQ(crew::test::request(port, "GET", "/").status, 200);
    EXPECT_EQ(crew::test::request(port, "GET", "/nowhere?x=1").status, 404);
    EXPECT_EQ(crew::test::request(port, "POST", "/process-image", "neither").status, 415);
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  std::ifstream log(path);
  std::multiset<std::string> lines;
  for (std::string line; std::getline(log, line);) {
    auto entry = message::value_type::parse(line, nullptr, false);
    ASSERT_TRUE(entry.is_object()) << line;
    EXPECT_TRUE(entry["time"].is_string());
    EXPECT_TRUE(entry["worker"].is_number_integer());
    EXPECT_GE(entry["ms"].get<double>(), 0);
    lines.insert(entry["method"].get<std::string>() + " " + entry["target"].get<std::string>() + " " +
                 std::to_string(entry["status"].get<int>()));
  }
  EXPECT_EQ(lines, (std::multiset<std::string>{"GET / 200", "GET /nowhere?x=1 404", "POST /process-image 415"}));
  EXPECT_EQ(run_server({"--access-log", "/nonexistent/access.log"}, [](int, pid_t) {}).status.code, 2);
}

TEST(crew_server, a_bad_command_line_is_exit_code_2) {
  run_result r = run_server({"--workers", "none"}, [](int, pid_t) {});
  EXPECT_EQ(r.status.code, 2);
  EXPECT_NE(r.err.find("usage: crew-server"), std::string::npos);
  EXPECT_EQ(run_server({"--policy", "fastest"}, [](int, pid_t) {}).status.code, 2);
  EXPECT_EQ(run_server({"--headers-timeout-ms", "-1"}, [](int, pid_t) {}).status.code, 2);
  run_result help = run_server({"--help"}, [](int, pid_t) {});
  EXPECT_EQ(help.status.code, 0);
  EXPECT_NE(help.out.find("--keep-alive-timeout-ms"), std::string::npos) << help.out;
}

}  // namespace
