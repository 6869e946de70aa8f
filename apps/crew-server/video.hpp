// /convert-video: the seeds' FFmpeg conversion through spawn, run as a job.
//
//   POST   /convert-video?format=mp4|webm|gif[&size=WxH]   the video as the body
//          -> 202 {"id":"...","job":"/jobs/ID"}: the upload is in, the job queued
//   GET    /jobs/ID         {"id","state":"queued|running|done|failed|cancelled","percent",...}
//   GET    /jobs/ID/output  the converted file once the job is done (409 before)
//   DELETE /jobs/ID         cancels it: FFmpeg's whole process tree is killed, its files removed
//
// A job is owned by the worker that took the upload: that worker runs ffprobe
// (the input's duration; a file that is not a video fails there) and FFmpeg,
// reads FFmpeg's -progress output, and writes the job's state to a directory
// that every worker of the server reads (jobs.dir), so any worker answers for
// any job. A DELETE that reaches another worker leaves a mark there, which the
// owner sees at FFmpeg's next progress report (twice a second).
//
// Files: the upload (removed when FFmpeg ends), the output (removed when the
// job is deleted, an hour after it ended, or when the worker stops). A job
// past its timeout, cancelled, or running at shutdown has FFmpeg's tree killed.
#pragma once

#include <chrono>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include <sys/types.h>

#include <crew/child_process.hpp>
#include <crew/http.hpp>
#include <crew/timer.hpp>

namespace crew_server {

struct conversion_options {
  std::size_t running = 2;                   // conversions at once, per worker
  std::size_t queue = 8;                     // conversions waiting, per worker; past it 503
  std::chrono::milliseconds timeout{300'000};  // a conversion's FFmpeg run at most
  std::uint64_t max_upload = 1ull << 30;     // bytes of an upload; past it 413
};

class conversions {
 public:
  /// `dir`: the jobs' directory, shared by the server's workers.
  conversions(std::filesystem::path dir, conversion_options options);
  conversions(const conversions&) = delete;
  conversions& operator=(const conversions&) = delete;
  /// Kills every FFmpeg still running and removes this worker's files.
  ~conversions();

  void upload(crew::http::request& req, crew::http::response& res);  // POST /convert-video
  void job(crew::http::request& req, crew::http::response& res);     // GET and DELETE /jobs/*

 private:
  struct job_state;
  void start_next();
  void convert(const std::shared_ptr<job_state>& j);
  void on_progress(const std::shared_ptr<job_state>& j, std::string_view chunk);
  void finish(const std::shared_ptr<job_state>& j, std::string state, std::string error = {});
  void forget(const std::shared_ptr<job_state>& j);
  void save(job_state& j);
  void sweep();

  std::filesystem::path dir_;
  conversion_options options_;
  std::map<std::string, std::shared_ptr<job_state>> mine_;  // this worker's jobs, until their files go
  std::deque<std::shared_ptr<job_state>> waiting_;
  std::size_t running_ = 0;
  std::size_t arriving_ = 0;  // uploads still arriving or being probed
  crew::timer sweeper_;
};

/// The jobs' directory of the server whose primary is `primary`; a worker's is
/// its parent's (jobs_directory()).
std::filesystem::path jobs_directory_of(pid_t primary);
std::filesystem::path jobs_directory();

}  // namespace crew_server
