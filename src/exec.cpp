// exec, exec_file and the _sync forms, all on top of spawn().
#include <memory>

#include "crew/child_process.hpp"
#include "crew/error.hpp"
#include "crew/timer.hpp"
#include "detail/stop_relay.hpp"

namespace crew {
namespace {

// One exec in flight: owns itself until its completion has run.
struct exec_run {
  exec_result result;
  exec_callback done;
  child_process child;
  std::optional<timer> deadline;
  std::optional<detail::stop_relay> stop;
  std::size_t max_buffer = 0;
  int kill_signal = SIGTERM;

  // Ends the command and everything it started (its own process group).
  void kill_all(std::error_code why) {
    if (result.error) return;
    result.error = why;
    result.killed = true;
    if (child.kill_tree(kill_signal)) child.kill(kill_signal);
  }

  void collect(std::string& into, std::string_view chunk) {
    std::size_t room = max_buffer - std::min(max_buffer, into.size());
    into.append(chunk.substr(0, room));
    if (chunk.size() > room) kill_all(make_error_code(errc::child_process_stdio_maxbuffer));
  }
};

// Starts an exec; returns the child's pid (0 when it failed to start). With
// `feed_stdin`, stdin is a pipe that receives `input` and then closes; without,
// /dev/null.
pid_t start(std::string command, std::vector<std::string> args, exec_options options, std::string shell,
            bool feed_stdin, std::string input, exec_callback done, loop& l) {
  auto run = std::make_shared<exec_run>();
  run->done = std::move(done);
  run->max_buffer = options.max_buffer;
  run->kill_signal = options.kill_signal;
  run->result.command = command;
  for (const auto& a : args) run->result.command += " " + a;

  spawn_options spawn_opts{
      .cwd = std::move(options.cwd),
      .env = std::move(options.env),
      .extra_env = std::move(options.extra_env),
      // Nobody can write to an exec'd command's stdin: give it /dev/null, not a
      // pipe that would never close.
      .stdio = {feed_stdin ? stdio::pipe() : stdio::ignore(), stdio::pipe(), stdio::pipe()},
      .process_group = true,
      .uid = options.uid,
      .gid = options.gid,
      .shell = std::move(shell),
  };
  run->child = spawn(std::move(command), std::move(args), std::move(spawn_opts), l);
  exec_run* raw = run.get();
  run->child.out().on_data([raw](std::string_view chunk) { raw->collect(raw->result.out, chunk); });
  run->child.err().on_data([raw](std::string_view chunk) { raw->collect(raw->result.err, chunk); });
  run->child.on_error([raw](std::error_code ec) {
    if (!raw->result.error) raw->result.error = ec;
  });
  // The run keeps itself alive through this callback until close, its last
  // event; the child's block drops the callback after calling it.
  run->child.on_close([run](exit_status status) {
    run->result.status = status;
    run->deadline.reset();
    run->stop.reset();
    run->done(std::move(run->result));
  });
  if (options.timeout.count() > 0)
    run->deadline.emplace(set_timeout(options.timeout, [raw] { raw->kill_all(uv_error(UV_ETIMEDOUT)); }, l));
  if (options.stop.stop_possible())
    run->stop.emplace(l, std::move(options.stop), [raw] { raw->kill_all(uv_error(UV_ECANCELED)); });
  if (feed_stdin) {
    if (!input.empty()) run->child.in().write(buffer(input));
    run->child.in().end();
  }
  return run->child.pid();
}

}  // namespace

void exec(std::string command, exec_options options, exec_callback done, loop& l) {
  std::string shell = options.shell;
  start(std::move(command), {}, std::move(options), std::move(shell), false, {}, std::move(done), l);
}

void exec_file(std::string file, std::vector<std::string> args, exec_options options, exec_callback done, loop& l) {
  start(std::move(file), std::move(args), std::move(options), "", false, {}, std::move(done), l);
}

void exec_awaitable::await_suspend(std::coroutine_handle<> awaiting) {
  request& r = *request_;
  exec_callback resume = [&r, awaiting](exec_result outcome) {
    r.result = std::move(outcome);
    awaiting.resume();
  };
  std::string shell = r.shell ? r.options.shell : std::string();
  start(std::move(r.command), std::move(r.args), std::move(r.options), std::move(shell), false, {}, std::move(resume),
        *r.l);
}

spawn_sync_result spawn_sync(std::string command, std::vector<std::string> args, spawn_sync_options options) {
  // A private loop on this thread: the caller's loop, if any, does not run meanwhile.
  loop private_loop;
  exec_options exec_opts{
      .cwd = std::move(options.cwd),
      .env = std::move(options.env),
      .extra_env = std::move(options.extra_env),
      .timeout = options.timeout,
      .kill_signal = options.kill_signal,
      .max_buffer = options.max_buffer,
  };
  spawn_sync_result out;
  out.pid = start(std::move(command), std::move(args), std::move(exec_opts), std::move(options.shell),
                  true, std::move(options.input), [&out](exec_result r) {
                    out.out = std::move(r.out);
                    out.err = std::move(r.err);
                    out.status = r.status;
                    out.error = r.error;
                  }, private_loop);
  private_loop.run();
  return out;
}

namespace {

std::string checked_output(spawn_sync_result r, const std::string& what) {
  if (r.error) throw std::system_error(r.error, "Command failed: " + what);
  if (!r.ok()) {
    std::string message = "Command failed: " + what;
    if (r.status.signal) message += " (killed by signal " + std::to_string(r.status.signal) + ")";
    else message += " (exit code " + std::to_string(r.status.code) + ")";
    if (!r.err.empty()) message += "\n" + r.err;
    throw std::system_error(std::make_error_code(std::errc::io_error), message);
  }
  return std::move(r.out);
}

}  // namespace

std::string exec_sync(std::string command, spawn_sync_options options) {
  if (options.shell.empty()) options.shell = "/bin/sh";
  std::string what = command;
  return checked_output(spawn_sync(std::move(command), {}, std::move(options)), what);
}

std::string exec_file_sync(std::string file, std::vector<std::string> args, spawn_sync_options options) {
  std::string what = file;
  for (const auto& a : args) what += " " + a;
  options.shell.clear();
  return checked_output(spawn_sync(std::move(file), std::move(args), std::move(options)), what);
}

}  // namespace crew
