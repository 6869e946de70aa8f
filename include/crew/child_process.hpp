// Node's child_process for C++: spawn, exec, exec_file and their _sync forms.
//
//   crew::child_process ls = crew::spawn("ls", {"-lh", "/usr"});
//   ls.out().on_data([](std::string_view chunk) { std::fwrite(chunk.data(), 1, chunk.size(), stdout); });
//   ls.on_close([](crew::exit_status s) { std::printf("child exited with code %d\n", s.code); });
//
//   crew::exec("ps aux | head -10", {}, [](crew::exec_result r) {
//     if (r.ok()) std::fputs(r.out.c_str(), stdout);
//   });
//
// Processes start through a vfork-class clone on Linux: the cost does not grow
// with the parent's memory. Exit is watched through a pidfd: no SIGCHLD handler,
// no PID-reuse race. Every child is reaped, also one whose object or loop goes
// first: docs/reaping.md gives that contract. `stdin`, `stdout` and `stderr`
// are macros in C, so the child's pipes are in(), out() and err().
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <system_error>
#include <vector>

#include "crew/detail/handle.hpp"
#include "crew/unique_function.hpp"
#include "crew/error.hpp"
#include "crew/ipc.hpp"
#include "crew/loop.hpp"
#include "crew/stream.hpp"
#include "crew/task.hpp"

namespace crew {

/// How one of the child's file descriptors is set up (Node's stdio entries).
struct stdio {
  enum class kind { pipe, inherit, ignore, fd, ipc };
  kind how = kind::pipe;
  int fd = -1;  // for kind::fd: our descriptor, which becomes the child's

  static stdio pipe() noexcept { return {kind::pipe}; }        ///< a pipe to a crew::stream
  static stdio inherit() noexcept { return {kind::inherit}; }  ///< the parent's own fd of that number
  static stdio ignore() noexcept { return {kind::ignore}; }    ///< /dev/null
  static stdio from_fd(int fd) noexcept { return {kind::fd, fd}; }  ///< one of our fds
  /// The IPC channel (at most one): a Unix socket speaking Node's protocol; the
  /// child finds it through NODE_CHANNEL_FD, as a Node child does.
  static stdio ipc() noexcept { return {kind::ipc}; }
};

using environment = std::map<std::string, std::string>;

/// Options of every call that starts a process: spawn(), fork(), exec(),
/// exec_file() and the _sync forms. A field that applies to some calls only says
/// so; the others ignore it.
struct process_options {
  std::string cwd;                  ///< working directory; default: the parent's
  std::optional<environment> env;   ///< the whole environment; default: the parent's
  environment extra_env;            ///< added to env (or to the parent's); default: none
  std::string argv0;                ///< argv[0] seen by the program; default: the command
  /// One entry per fd of the child; default: empty, meaning the call's own: spawn three
  /// pipes; fork inherit x3 (pipes when silent) and ipc(); exec and exec_file ignore, pipe,
  /// pipe; the _sync forms three pipes. fork adds an ipc() entry when the list has none.
  std::vector<crew::stdio> stdio;
  bool detached = false;            ///< new session and process group (setsid), and close() does not kill it; default: false
  bool process_group = false;       ///< own process group, so kill_tree() reaches its descendants; default: false (exec and _sync: always)
  std::optional<uid_t> uid;         ///< run as this user; default: ours
  std::optional<gid_t> gid;         ///< run as this group; default: ours
  std::string shell;                ///< run `shell -c "command args..."`, not for fork; default: "" (none; exec and exec_sync: /bin/sh)
  std::chrono::milliseconds timeout{0};  ///< terminate (see kill_signal) after this long; default: 0 (never)
  int kill_signal = SIGTERM;        ///< sent by timeout, stop, terminate(), close() and destruction; default: SIGTERM
  std::chrono::milliseconds kill_timeout{5000};  ///< SIGKILL follows kill_signal after this long; default: 5 s
  std::stop_token stop;             ///< a stop request terminates the child; default: none
  bool die_with_parent = false;     ///< the child gets SIGKILL when the thread that spawned it ends; default: false
  std::size_t max_buffer = 1024 * 1024;  ///< exec and _sync: bytes of stdout or stderr kept; default: 1 MiB
  std::string input;                ///< _sync: written to the child's stdin (a pipe), which then closes; default: ""
  std::string exec_path;            ///< fork: the program that runs `module`, e.g. "node"; default: "" (run `module` itself)
  std::vector<std::string> exec_args;  ///< fork: arguments before `module`, e.g. {"--no-warnings"}; default: none
  bool silent = false;              ///< fork: pipe stdin/stdout/stderr instead of inheriting them; default: false
  ipc_options ipc;                  ///< limits of the IPC channel (stdio::ipc(), fork); default: ipc_options{}
};

/// How a child ended: its exit code, or the signal that killed it (code -1 then).
struct exit_status {
  int code = 0;
  int signal = 0;
  bool operator==(const exit_status&) const = default;
};

/// A running (or finished) child process. Loop thread only. Move-only.
///
/// Events, each on the loop and never inside spawn(), kill(), terminate() or
/// close(): spawn (started), exit (the process ended), close (it ended and
/// every output pipe and the channel closed: the last event), each at most
/// once. A failed spawn gives error, then close with code = the negative error
/// number, and no spawn or exit, as in Node; with an IPC channel (fork()) the
/// channel's disconnect comes between them (Node emits it after close). A callback may destroy or close its
/// own child_process; no event of it runs afterwards.
///
/// Children are always reaped (docs/reaping.md): closing or destroying the
/// object, or destroying its loop, while the child runs sends it kill_signal
/// (its whole group when it leads one), SIGKILL after kill_timeout, and waits
/// for it in the background. A detached child is not signalled (it may outlive
/// us) but is still reaped if it exits while we run.
class child_process : private detail::handle_owner {
 public:
  /// Whether this object still tracks its process: false after the close event,
  /// close(), a move from it, or its loop closing.
  using handle_owner::is_open;
  /// Node's subprocess.ref()/unref(): a referenced child keeps its loop's run()
  /// going until it exits (the default).
  using handle_owner::ref;
  using handle_owner::unref;
  using handle_owner::has_ref;

  using error_callback = unique_function<void(std::error_code)>;
  using exit_callback = unique_function<void(exit_status)>;
  using event_callback = unique_function<void()>;

  child_process() noexcept = default;
  child_process(child_process&& other) noexcept;
  /// Closes this object's process first (see close()).
  child_process& operator=(child_process&&) noexcept;
  /// Closes (see close()).
  ~child_process();

  /// Lets go of the process: no event runs afterwards and the pipes and the
  /// channel close. A child still running gets kill_signal at once (its whole
  /// group when it leads one; nothing when detached), SIGKILL after
  /// kill_timeout, and is reaped in the background (docs/reaping.md). pid(),
  /// status() and killed() stay readable. Idempotent.
  void close() noexcept;

  /// The process id; 0 when the spawn failed.
  pid_t pid() const noexcept;

  /// The child's stdin (write to it), stdout and stderr (read them); closed
  /// streams when that fd was not a pipe. Output is read from the start and
  /// kept until on_data is set, so a late reader loses nothing: up to
  /// stream::high_water_mark while the child runs (then the child blocks on
  /// the full pipe, as in Node; use stdio::ignore() for output nobody reads),
  /// and, once it has exited, the rest of what it left in the pipe, so that
  /// the close event comes.
  stream& in() noexcept { return stdio(0); }
  stream& out() noexcept { return stdio(1); }
  stream& err() noexcept { return stdio(2); }
  /// Pipe i of options.stdio; a closed stream when fd i is not a pipe.
  stream& stdio(std::size_t i) noexcept { return i < stdio_.size() ? stdio_[i] : no_pipe_; }

  /// The IPC channel (spawned with stdio::ipc(), or by fork()); closed otherwise.
  ipc_channel& channel() noexcept { return channel_; }
  /// Node's child.send(), child.on('message'), child.disconnect(),
  /// child.on('disconnect') and child.connected, through channel().
  bool send(message m, ipc_channel::error_callback done = {}) { return channel_.send(std::move(m), std::move(done)); }
  void on_message(ipc_channel::message_callback fn) { channel_.on_message(std::move(fn)); }
  void on_disconnect(event_callback fn) { channel_.on_disconnect(std::move(fn)); }
  void disconnect() { channel_.disconnect(); }
  bool connected() const noexcept { return channel_.connected(); }
  /// A request to the child and its reply, through channel(): see ipc_channel::request().
  awaitable<result<message>> request(message m, request_options options = {}, std::stop_token stop = {}) {
    return channel_.request(std::move(m), options, std::move(stop));
  }
  awaitable<result<message>> request(std::initializer_list<message::value_type> m,  // GCC 12: name the message first
                                     request_options options = {}, std::stop_token stop = {}) = delete;

  /// Node's `await once(child, 'exit')`: co_await gives the exit status once
  /// the process has exited (at once, without suspending, if it has already).
  /// Errors: the spawn's error (ENOENT, EACCES, ...) when it never started;
  /// ECANCELED when this object is closed or destroyed first. Does not replace
  /// on_exit(); several coroutines may await it.
  awaitable<result<exit_status>> exited();

  void on_spawn(event_callback fn);
  /// The spawn failed (ENOENT, EACCES, EMFILE, ...). kill() reports its own
  /// errors by its return value, not here.
  void on_error(error_callback fn);
  void on_exit(exit_callback fn);
  void on_close(exit_callback fn);

  /// Sends `signal` (0 only checks that the process exists) through the pidfd,
  /// so never to a recycled pid. Errors: EINVAL for a bad signal number, ESRCH
  /// when the process is gone (exited, failed to spawn, or closed), EPERM.
  /// As with Node's child.kill(), a call may ignore the result (ESRCH is the
  /// usual one: the child exited first).
  std::error_code kill(int signal = SIGTERM);

  /// Sends `signal` to the child's whole process group (spawned with detached or
  /// process_group), reaching the grandchildren too. Errors: EINVAL for a bad
  /// signal number or when the child does not lead a group of its own, ESRCH
  /// when the group is gone, EPERM.
  std::error_code kill_tree(int signal = SIGTERM);

  /// Ends the child the way close() does, but keeps watching it: kill_signal now
  /// (to its whole group when it leads one), SIGKILL after kill_timeout unless
  /// the child has exited (or, for a group, until close). Its exit and close
  /// events come as usual. Errors as kill(). exec()'s timeouts use this.
  std::error_code terminate();

  /// Whether kill(), kill_tree(), terminate() or a timeout delivered a signal.
  bool killed() const noexcept;

  /// The exit status, once the exit event has happened.
  std::optional<exit_status> status() const noexcept;

 private:
  struct state;
  void adopt_pipe(std::size_t index, int fd);
  void adopt_channel(int fd, ipc_options limits);
  void take_the_rest_of_the_output() noexcept;
  friend child_process spawn(std::string, std::vector<std::string>, process_options, loop&);
  std::vector<stream> stdio_;
  stream no_pipe_;  // always closed
  ipc_channel channel_;
  // Kept here because the block goes once the child is finished.
  pid_t pid_ = 0;
  std::optional<exit_status> status_;
  bool killed_ = false;
};

// Options default to `process_options()`, never `{}`: GCC 12 mis-compiles a
// braced default argument inside co_await (`co_await run(crew::fork(path))`
// would free memory twice; docs/async.md).

/// Starts `command` with `args`. Never throws for a missing program or a failed
/// start: they arrive as an error event (ENOENT, EACCES, EMFILE, ...).
child_process spawn(std::string command, std::vector<std::string> args = {},
                    process_options options = process_options(), loop& l = loop::current());

/// Node's fork(): starts `module` (a crew program, or a script run by
/// options.exec_path, such as node) with an IPC channel on fd 3, and stdio
/// inherited (or piped, when silent). Talk to it with send() and on_message(),
/// or request().
child_process fork(std::string module, std::vector<std::string> args = {},
                   process_options options = process_options(), loop& l = loop::current());

/// What exec() and exec_file() report. `error` holds a failure to start (ENOENT),
/// ETIMEDOUT when the timeout killed the command, ECANCELED when a stop request
/// did, ERR_CHILD_PROCESS_STDIO_MAXBUFFER when output passed max_buffer (the
/// command is killed then).
struct exec_result {
  std::error_code error;
  exit_status status;
  bool killed = false;
  std::string out;      ///< everything the command wrote on stdout (up to max_buffer)
  std::string err;      ///< everything it wrote on stderr (up to max_buffer)
  std::string command;  ///< the command line, for messages

  /// No error, exit code 0, no signal.
  bool ok() const noexcept { return !error && status.code == 0 && status.signal == 0; }
};

using exec_callback = unique_function<void(exec_result)>;

/// Runs `command` through options.shell (/bin/sh by default) and calls `done`
/// with its output when it has finished. The command runs in its own process
/// group: a timeout, a stop request or max_buffer terminates the whole tree it
/// started, not only the shell (kill_signal, then SIGKILL after kill_timeout).
/// `done` runs exactly once, on the loop, never inside exec().
void exec(std::string command, process_options options, exec_callback done, loop& l = loop::current());

/// Like exec() without a shell (unless options.shell names one): `args` reach the
/// program literally, whatever characters they contain.
void exec_file(std::string file, std::vector<std::string> args, process_options options, exec_callback done,
               loop& l = loop::current());

/// `co_await crew::exec("ls -lh /usr")`: exec() as an awaitable; co_await gives
/// the exec_result. The command starts when awaited; destroying the awaitable
/// before it completes (when_any does, for the losers) terminates the command
/// as a stop request would (ECANCELED).
awaitable<exec_result> exec(std::string command, loop& l = loop::current());
awaitable<exec_result> exec(std::string command, const process_options& options, loop& l = loop::current());
/// Rejected at build time: an options struct made in the co_await expression
/// (`co_await crew::exec(cmd, {.timeout = 1s})`) is what GCC 12 destroys
/// twice. Name it first: `crew::process_options o{.timeout = 1s};`.
awaitable<exec_result> exec(std::string command, process_options&& options,  // GCC 12: name the options first
                            loop& l = loop::current()) = delete;

/// `co_await crew::exec_file("ls", args)`: exec_file() as an awaitable, as exec().
awaitable<exec_result> exec_file(std::string file, std::vector<std::string> args = {}, loop& l = loop::current());
awaitable<exec_result> exec_file(std::string file, std::vector<std::string> args, const process_options& options,
                                 loop& l = loop::current());
/// Rejected at build time, as exec()'s: name the options first.
awaitable<exec_result> exec_file(std::string file, std::vector<std::string> args,
                                 process_options&& options,  // GCC 12: name the options first
                                 loop& l = loop::current()) = delete;

/// What spawn_sync() reports (Node's {pid, output, stdout, stderr, status, signal, error}).
struct spawn_sync_result {
  pid_t pid = 0;
  std::string out;
  std::string err;
  exit_status status;
  std::error_code error;  ///< as exec_result::error
  bool ok() const noexcept { return !error && status.code == 0 && status.signal == 0; }
};

/// Runs a program to completion, blocking the calling thread (no loop needed).
/// Never throws for the child's failure: it is in the result. The program runs
/// in its own process group; a timeout, a stop request or max_buffer terminates
/// that group as exec() does, so a child that ignores SIGTERM cannot hang the
/// call and leaves no zombie.
spawn_sync_result spawn_sync(std::string command, std::vector<std::string> args = {},
                             process_options options = process_options());

/// Runs `command` through /bin/sh (or options.shell) and returns its stdout.
/// Throws std::system_error when it fails to start, times out, passes max_buffer
/// or exits with a non-zero code (the message carries its stderr).
std::string exec_sync(std::string command, process_options options = process_options());

/// Like exec_sync() without a shell (unless options.shell names one).
std::string exec_file_sync(std::string file, std::vector<std::string> args = {},
                           process_options options = process_options());

}  // namespace crew
