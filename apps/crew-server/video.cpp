#include "video.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <system_error>

#include "number.hpp"

namespace crew_server {
namespace {

using json = crew::message::value_type;
using steady = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr std::size_t stderr_kept = 4096;  // the end of FFmpeg's stderr, for a failed job's error

struct format_info {
  const char* name;
  const char* content_type;
  std::vector<std::string> args;  // FFmpeg's output options
};

const format_info formats[] = {
    {"mp4", "video/mp4", {"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart"}},
    {"webm", "video/webm", {"-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M", "-c:a", "libvorbis"}},
    {"gif", "image/gif", {"-an"}},
};

// The containers an upload may be: a playlist (HLS, concat) would have FFmpeg
// read other files of this machine, and no other format is let in.
const std::vector<std::string> input_formats = {
    "-format_whitelist", "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,flv,ogg,gif,mpeg,asf,wav"};

const format_info* format_named(std::string_view name) {
  for (const format_info& f : formats)
    if (name == f.name) return &f;
  return nullptr;
}

std::string new_id() {
  static thread_local std::mt19937_64 random{std::random_device{}()};
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(random()));
  return text;
}

bool valid_id(std::string_view id) {
  return id.size() == 16 && id.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// Whether `program` is an executable file in a directory of PATH.
bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && ::access((fs::path(dir) / program).c_str(), X_OK) == 0) return true;
  return false;
}

void error_answer(crew::http::response& res, int status, const std::string& message) {
  res.status(status).json({{"error", message}});
}

}  // namespace

struct conversions::job_state {
  std::string id;
  fs::path dir;
  const format_info* format = nullptr;
  int width = 0, height = 0;
  std::string state = "uploading";
  double percent = 0;
  double seconds = 0;  // the input's duration, 0 when unknown
  std::string error;
  std::string log;  // the end of FFmpeg's stderr
  std::string progress_line;
  int input = -1;  // the upload's file while it arrives
  std::uint64_t received = 0;
  std::optional<crew::child_process> ffmpeg;
  std::optional<crew::timer> deadline;
  steady::time_point ended{};

  fs::path input_path() const { return dir / "input"; }
  fs::path output_path() const { return dir / (std::string("output.") + format->name); }
  bool cancel_marked() const {
    std::error_code ec;
    return fs::exists(dir / "cancel", ec);
  }
};

fs::path jobs_directory_of(pid_t primary) {
  return fs::temp_directory_path() / ("crew-server-" + std::to_string(primary) + "-jobs");
}

fs::path jobs_directory() { return jobs_directory_of(::getppid()); }

conversions::conversions(fs::path dir, conversion_options options) : dir_(std::move(dir)), options_(options) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  fs::permissions(dir_, fs::perms::owner_all, ec);  // jobs are the server's: no other user lists or reads them
  // Ended jobs' files go an hour after; marks from other workers are looked at too.
  sweeper_.start(std::chrono::seconds(10), std::chrono::seconds(10), [this] { sweep(); });
  sweeper_.unref();
}

conversions::~conversions() {
  for (auto& [id, j] : mine_) {
    if (j->state == "running") (void)j->ffmpeg->kill_tree(SIGKILL);
    if (j->input >= 0) ::close(j->input);
    std::error_code ec;
    fs::remove_all(j->dir, ec);
  }
}

void conversions::upload(crew::http::request& req, crew::http::response& res) {
  crew::url_search_params query = req.search_params();
  const format_info* format = format_named(query.get("format").value_or("mp4"));
  if (!format) return error_answer(res, 400, "format must be mp4, webm or gif");
  int width = 0, height = 0;
  if (auto size = query.get("size")) {
    std::string_view text = *size;
    std::size_t x = text.find('x');
    if (x == std::string_view::npos || !parse_number(text.substr(0, x), 2, 4096, width) ||
        !parse_number(text.substr(x + 1), 2, 4096, height) || width % 2 || height % 2)
      return error_answer(res, 400, "size must be WxH, each side an even number from 2 to 4096");
  }
  if (!on_path("ffmpeg") || !on_path("ffprobe") || !on_path("setpriv"))
    return error_answer(res, 503, "ffmpeg is not installed: ffmpeg, ffprobe and setpriv (util-linux) must be on PATH");
  // Uploads still arriving or being probed hold their place too.
  if (running_ + waiting_.size() + arriving_ >= options_.running + options_.queue) {
    res.set_header("Retry-After", "5");
    return error_answer(res, 503, "busy: every conversion slot and queue place is taken; try again");
  }
  std::uint64_t declared = 0;
  if (parse_number<std::uint64_t>(req.header("content-length"), 0, UINT64_MAX, declared) && declared > options_.max_upload)
    return error_answer(res, 413, "the upload is over " + std::to_string(options_.max_upload >> 20) + " MiB");

  auto j = std::make_shared<job_state>();
  j->id = new_id();
  j->dir = dir_ / j->id;
  j->format = format;
  j->width = width;
  j->height = height;
  std::error_code ec;
  if (!fs::create_directory(j->dir, ec) ||
      (j->input = ::open(j->input_path().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
    fs::remove_all(j->dir, ec);
    return error_answer(res, 500, "cannot make the job's files: " + std::system_category().message(errno));
  }
  mine_[j->id] = j;
  ++arriving_;
  struct upload {
    crew::http::response res;
    bool refused = false;
  };
  auto up = std::make_shared<upload>(upload{std::move(res), false});
  // The upload goes to its file as it arrives (a local disk keeps up with the network).
  req.on_data([this, j, up](std::string_view chunk) {
    if (up->refused) return;
    j->received += chunk.size();
    int error = 0;
    if (j->received > options_.max_upload) error = EFBIG;
    while (!error && !chunk.empty()) {
      ssize_t n = ::write(j->input, chunk.data(), chunk.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) error = errno;
      else chunk.remove_prefix(static_cast<std::size_t>(n));
    }
    if (!error) return;
    up->refused = true;
    if (error == EFBIG)
      error_answer(up->res, 413, "the upload is over " + std::to_string(options_.max_upload >> 20) + " MiB");
    else
      error_answer(up->res, error == ENOSPC ? 507 : 500, "cannot keep the upload: " + std::system_category().message(error));
    forget(j);
  });
  req.on_end([this, j, up](std::error_code cut) {
    if (up->refused) return;
    ::close(std::exchange(j->input, -1));
    if (cut) return forget(j);  // the client went away, or the upload was cut short
    // ffprobe reads the duration, for the percentage; what it cannot read is no video.
    j->state = "probing";
    std::vector<std::string> probe = {"-v", "error"};
    probe.insert(probe.end(), input_formats.begin(), input_formats.end());
    probe.insert(probe.end(), {"-show_entries", "format=duration", "-of", "csv=p=0", j->input_path().string()});
    crew::exec_file("ffprobe", std::move(probe),
                    {.timeout = std::chrono::seconds(30)}, [this, j, up](crew::exec_result r) {
                      if (j->state != "probing") return;  // cancelled meanwhile
                      if (!r.ok()) {
                        std::string why = r.err.empty() ? crew::error_name(r.error) : r.err;
                        if (std::size_t at = why.find(j->input_path().string()); at != std::string::npos)
                          why.replace(at, j->input_path().string().size(), "the upload");  // no server paths
                        error_answer(up->res, 415, "not a video FFmpeg can read: " + why);
                        return forget(j);
                      }
                      double seconds = 0;
                      std::istringstream(r.out) >> seconds;
                      j->seconds = seconds > 0 ? seconds : 0;
                      --arriving_;
                      j->state = "queued";
                      save(*j);
                      up->res.status(202).json({{"id", j->id}, {"job", "/jobs/" + j->id}, {"state", j->state}});
                      waiting_.push_back(j);
                      start_next();
                    });
  });
}

void conversions::start_next() {
  while (running_ < options_.running && !waiting_.empty()) {
    std::shared_ptr<job_state> j = waiting_.front();
    waiting_.pop_front();
    if (j->cancel_marked()) {
      finish(j, "cancelled");
      continue;
    }
    convert(j);
  }
}

void conversions::convert(const std::shared_ptr<job_state>& j) {
  ++running_;
  j->state = "running";
  // setpriv: FFmpeg gets SIGKILL if this worker dies first (a crash, the
  // cluster's kill after a drain too long), so no conversion outlives it.
  std::vector<std::string> args = {"--pdeathsig", "KILL", "--", "ffmpeg", "-v", "error", "-nostdin", "-y"};
  args.insert(args.end(), input_formats.begin(), input_formats.end());
  args.insert(args.end(), {"-i", j->input_path().string()});
  std::string filter = j->width ? "scale=" + std::to_string(j->width) + ":" + std::to_string(j->height) : "";
  if (std::string_view(j->format->name) == "gif") filter = "fps=10" + (filter.empty() ? "" : "," + filter);
  if (!filter.empty()) args.insert(args.end(), {"-vf", filter});
  args.insert(args.end(), j->format->args.begin(), j->format->args.end());
  args.insert(args.end(), {"-progress", "pipe:1", "-nostats", j->output_path().string()});
  // Its own process group: a timeout or a cancellation kills whatever FFmpeg started too.
  j->ffmpeg.emplace(crew::spawn("setpriv", args, {.process_group = true}));
  crew::child_process& ffmpeg = *j->ffmpeg;
  ffmpeg.out().on_data([this, j](std::string_view chunk) { on_progress(j, chunk); });
  ffmpeg.err().on_data([j](std::string_view chunk) {
    j->log += chunk;
    if (j->log.size() > stderr_kept) j->log.erase(0, j->log.size() - stderr_kept);
  });
  ffmpeg.on_error([this, j](std::error_code ec) {
    if (j->state == "running") finish(j, "failed", "cannot run ffmpeg: " + crew::error_name(ec));
  });
  ffmpeg.on_close([this, j](crew::exit_status status) {
    if (j->state != "running") return;  // ended already: a timeout, a cancellation
    if (status.code == 0 && status.signal == 0) return finish(j, "done");
    finish(j, "failed", status.signal ? "ffmpeg was killed by signal " + std::to_string(status.signal)
                                      : "ffmpeg failed with exit code " + std::to_string(status.code));
  });
  j->deadline.emplace();
  j->deadline->start(options_.timeout, {}, [this, j] {
    if (j->state == "running") finish(j, "failed", "ETIMEDOUT: the conversion took longer than " +
                                                        std::to_string(options_.timeout.count()) + " ms");
  });
  save(*j);
}

// FFmpeg's -progress output: key=value lines, a block every half second that
// ends with progress=continue (or progress=end).
void conversions::on_progress(const std::shared_ptr<job_state>& j, std::string_view chunk) {
  j->progress_line += chunk;
  std::size_t end;
  while ((end = j->progress_line.find('\n')) != std::string::npos) {
    std::string line = j->progress_line.substr(0, end);
    j->progress_line.erase(0, end + 1);
    if (line.starts_with("out_time_us=") && j->seconds > 0) {
      double done = std::atof(line.c_str() + 12) / 1e6;
      j->percent = std::clamp(done / j->seconds * 100, 0.0, 99.9);
    } else if (line.starts_with("progress=")) {
      if (j->cancel_marked()) return finish(j, "cancelled");  // a DELETE that went to another worker
      save(*j);
    }
  }
}

// Ends a job once: kills FFmpeg if it runs, removes the upload (and the output
// unless done), writes the final state.
void conversions::finish(const std::shared_ptr<job_state>& j, std::string state, std::string error) {
  if (j->state == "done" || j->state == "failed" || j->state == "cancelled") return;
  if (j->state == "uploading" || j->state == "probing") --arriving_;
  bool was_running = j->state == "running";
  j->state = std::move(state);
  j->error = std::move(error);
  if (j->state == "done") j->percent = 100;
  j->deadline.reset();
  if (was_running && j->state != "done") (void)j->ffmpeg->kill_tree(SIGKILL);
  if (j->input >= 0) ::close(std::exchange(j->input, -1));
  std::error_code ec;
  fs::remove(j->input_path(), ec);
  if (j->state != "done") fs::remove(j->output_path(), ec);
  j->ended = steady::now();
  save(*j);
  if (was_running) --running_;
  crew::loop::current().post([this] { start_next(); });  // not inside FFmpeg's own callback
}

// A job that never got an id to its client (refused, cut short, not a video): its files go now.
void conversions::forget(const std::shared_ptr<job_state>& j) {
  if (j->state == "uploading" || j->state == "probing") --arriving_;
  if (j->input >= 0) ::close(std::exchange(j->input, -1));
  j->state = "failed";
  std::error_code ec;
  fs::remove_all(j->dir, ec);
  mine_.erase(j->id);
}

// The state other workers read: written whole, then renamed into place.
void conversions::save(job_state& j) {
  json state = {{"id", j.id},           {"state", j.state},          {"format", j.format->name},
                {"percent", j.percent}, {"worker", ::getpid()}};
  if (j.seconds > 0) state["duration"] = j.seconds;
  if (!j.error.empty()) state["error"] = j.error;
  if (j.state == "failed" && !j.log.empty()) state["log"] = j.log;
  if (j.state == "done") state["output"] = "/jobs/" + j.id + "/output";
  fs::path temporary = j.dir / "state.json.new";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << state.dump();
  }
  std::error_code ec;
  fs::rename(temporary, j.dir / "state.json", ec);
}

void conversions::sweep() {
  auto now = steady::now();
  for (auto it = mine_.begin(); it != mine_.end();) {
    job_state& j = *it->second;
    std::error_code ec;
    bool ended = j.ended != steady::time_point{};
    if ((ended && now - j.ended > std::chrono::hours(1)) || (ended && !fs::exists(j.dir, ec))) {
      fs::remove_all(j.dir, ec);
      it = mine_.erase(it);
      continue;
    }
    ++it;
  }
  // A queued job cancelled from another worker goes now, not when its turn comes.
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (!(*it)->cancel_marked()) {
      ++it;
      continue;
    }
    std::shared_ptr<job_state> j = *it;
    it = waiting_.erase(it);
    finish(j, "cancelled");
  }
}

void conversions::job(crew::http::request& req, crew::http::response& res) {
  std::string_view rest = std::string_view(req.path).substr(6);  // after "/jobs/"
  bool output = rest.ends_with("/output");
  if (output) rest.remove_suffix(7);
  if (!valid_id(rest)) return error_answer(res, 404, "no such job");
  std::string id(rest);
  fs::path dir = dir_ / id;
  std::ifstream state_file(dir / "state.json");
  if (!state_file) return error_answer(res, 404, "no such job");
  json state = json::parse(state_file, nullptr, false);
  if (state.is_discarded()) return error_answer(res, 500, "the job's state cannot be read");
  std::string current = state.value("state", "");
  auto mine = mine_.find(id);

  if (req.method == "DELETE") {
    if (output) {
      res.set_header("Allow", "GET");
      return error_answer(res, 405, "DELETE /jobs/ID, not its output");
    }
    bool ended = current == "done" || current == "failed" || current == "cancelled";
    if (mine != mine_.end()) {
      std::shared_ptr<job_state> j = mine->second;
      std::erase(waiting_, j);
      finish(j, "cancelled");  // nothing when it had ended
    } else if (!ended) {
      // Another worker runs it: a mark it looks for twice a second.
      std::ofstream(dir / "cancel");
      return res.status(202).json({{"id", id}, {"state", "cancelling"}});
    }
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (mine != mine_.end()) mine_.erase(mine);
    return res.json({{"id", id}, {"state", ended ? current : "cancelled"}, {"deleted", true}});
  }

  if (!output) return res.json(state);
  if (current != "done") return error_answer(res, 409, "the job is " + current + ", not done");
  const format_info* format = format_named(state.value("format", ""));
  auto file = std::make_shared<std::ifstream>(dir / (std::string("output.") + (format ? format->name : "")), std::ios::binary);
  if (!format || !*file) return error_answer(res, 404, "the job's output is gone");
  // Streamed in 64 KiB pieces, as fast as the client reads.
  auto answer = std::make_shared<crew::http::response>(std::move(res));
  answer->set_header("Content-Type", format->content_type);
  auto pump = std::make_shared<std::function<void()>>();
  *pump = [answer, file, weak = std::weak_ptr<std::function<void()>>(pump)] {
    std::string piece(64 * 1024, '\0');
    for (;;) {
      file->read(piece.data(), static_cast<std::streamsize>(piece.size()));
      std::streamsize n = file->gcount();
      if (n <= 0) return answer->end();
      if (!answer->write(std::string_view(piece.data(), static_cast<std::size_t>(n)))) break;
    }
    if (auto again = weak.lock()) answer->on_drain([again] { (*again)(); });
  };
  (*pump)();
}

}  // namespace crew_server
