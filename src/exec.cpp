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

  // Ends the command and everything it started (its own process group):
  // kill_signal, then SIGKILL after kill_timeout.
  void kill_all(std::error_code why) {
    if (result.error) return;
    result.error = why;
    result.killed = true;
    child.terminate();  // ESRCH: the group is gone already
  }

  void collect(std::string& into, std::string_view chunk) {
    std::size_t room = max_buffer - std::min(max_buffer, into.size());
    into.append(chunk.substr(0, room));
    if (chunk.size() > room) kill_all(make_error_code(errc::child_process_stdio_maxbuffer));
  }
};

// exec() and exec_sync() run a shell unless told which.
void default_to_shell(process_options& options) {
  if (options.shell.empty()) options.shell = "/bin/sh";
}

// Starts an exec, which owns itself until `done` has run. The _sync forms
// (`sync`) get pipes on all three fds by default; exec gets /dev/null as
// stdin, since nobody can write to it. A stdin pipe receives options.input and
// then closes.
std::shared_ptr<exec_run> start(std::string command, std::vector<std::string> args, process_options options,
                                bool sync, exec_callback done, loop& l) {
  auto run = std::make_shared<exec_run>();
  run->done = std::move(done);
  run->max_buffer = options.max_buffer;
  run->result.command = command;
  for (const auto& a : args) run->result.command += " " + a;

  if (options.stdio.empty()) options.stdio = {sync ? stdio::pipe() : stdio::ignore(), stdio::pipe(), stdio::pipe()};
  options.process_group = true;
  // The run applies timeout and stop itself, to know why the command ended.
  std::chrono::milliseconds timeout = options.timeout;
  std::stop_token stop = std::move(options.stop);
  options.timeout = {};
  std::string input = std::move(options.input);
  run->child = spawn(std::move(command), std::move(args), std::move(options), l);
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
  if (timeout.count() > 0)
    run->deadline.emplace(scoped_timeout(timeout, [raw] { raw->kill_all(uv_error(UV_ETIMEDOUT)); }, l));
  if (stop.stop_possible())
    run->stop.emplace(l, std::move(stop), [raw] { raw->kill_all(uv_error(UV_ECANCELED)); });
  if (run->child.in().is_open()) {
    if (!input.empty()) run->child.in().write(buffer(input));
    run->child.in().end();
  }
  return run;
}

// co_await crew::exec(...): the run starts when awaited; an awaiter that goes
// first (when_any's loser) ends the command as a stop request would.
struct exec_operation final : detail::operation<exec_result> {
  exec_operation(std::string c, std::vector<std::string> a, process_options o, bool shell, loop& l)
      : operation(l), command(std::move(c)), args(std::move(a)), options(std::move(o)) {
    if (shell) default_to_shell(options);
  }

  void start() override {
    auto self = std::static_pointer_cast<exec_operation>(shared_from_this());
    run = crew::start(std::move(command), std::move(args), std::move(options), false,
                      [weak = std::weak_ptr<exec_operation>(self)](exec_result r) {
                        if (auto op = weak.lock()) op->complete(std::move(r));
                      },
                      loop_);
  }

  void cancel() noexcept override {
    if (auto r = run.lock()) r->kill_all(uv_error(UV_ECANCELED));
  }

  std::string command;
  std::vector<std::string> args;
  process_options options;
  std::weak_ptr<exec_run> run;
};

awaitable<exec_result> exec_awaitable(std::string command, std::vector<std::string> args, process_options options,
                                      bool shell, loop& l) {
  return awaitable<exec_result>(
      std::make_shared<exec_operation>(std::move(command), std::move(args), std::move(options), shell, l));
}

}  // namespace

void exec(std::string command, process_options options, exec_callback done, loop& l) {
  default_to_shell(options);
  start(std::move(command), {}, std::move(options), false, std::move(done), l);
}

void exec_file(std::string file, std::vector<std::string> args, process_options options, exec_callback done, loop& l) {
  start(std::move(file), std::move(args), std::move(options), false, std::move(done), l);
}

awaitable<exec_result> exec(std::string command, loop& l) {
  return exec_awaitable(std::move(command), {}, process_options(), true, l);
}

awaitable<exec_result> exec(std::string command, const process_options& options, loop& l) {
  return exec_awaitable(std::move(command), {}, options, true, l);
}

awaitable<exec_result> exec_file(std::string file, std::vector<std::string> args, loop& l) {
  return exec_awaitable(std::move(file), std::move(args), process_options(), false, l);
}

awaitable<exec_result> exec_file(std::string file, std::vector<std::string> args, const process_options& options,
                                 loop& l) {
  return exec_awaitable(std::move(file), std::move(args), options, false, l);
}

spawn_sync_result spawn_sync(std::string command, std::vector<std::string> args, process_options options) {
  // A private loop on this thread: the caller's loop, if any, does not run meanwhile.
  loop private_loop;
  spawn_sync_result out;
  out.pid = start(std::move(command), std::move(args), std::move(options), true, [&out](exec_result r) {
    out.out = std::move(r.out);
    out.err = std::move(r.err);
    out.status = r.status;
    out.error = r.error;
  }, private_loop)->child.pid();
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

std::string exec_sync(std::string command, process_options options) {
  default_to_shell(options);
  std::string what = command;
  return checked_output(spawn_sync(std::move(command), {}, std::move(options)), what);
}

std::string exec_file_sync(std::string file, std::vector<std::string> args, process_options options) {
  std::string what = file;
  for (const auto& a : args) what += " " + a;
  return checked_output(spawn_sync(std::move(file), std::move(args), std::move(options)), what);
}

}  // namespace crew
