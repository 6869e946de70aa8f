// cluster: Node's cluster module, with the supervision PM2 adds. The primary
// re-executes the program as workers (with NODE_UNIQUE_ID in their
// environment); a server in a worker listens through the primary, which
// shares one port among all of them. Any crew::tcp::server can be shared (an
// http::server is one).
//
//   if (crew::cluster::is_primary()) {
//     crew::cluster::primary primary({.restart = {.enabled = true}});
//     for (int i = 0; i < 2; ++i) primary.fork();
//     primary.handle_signals();  // SIGTERM/SIGINT: graceful shutdown; SIGHUP: rolling reload
//     crew::loop::current().run();
//   } else {
//     crew::http::server server(std::move(routes));
//     crew::cluster::listen(server, 8000, [](crew::result<int> port) { ... });
//     crew::cluster::handle_signals();  // SIGTERM/SIGINT: finish what is in flight, then exit
//     crew::loop::current().run();
//   }
//
// Lifetime and callbacks follow docs/lifetime.md and docs/callbacks.md: the
// primary is an RAII object whose state lives in a heap block; destroying it in
// any state (before or after fork(), inside its own callbacks, during a
// shutdown or a reload) closes its ports, terminates and reaps its workers, and
// runs no event afterwards. A worker's side of the cluster belongs to the loop
// it runs on and closes with it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "crew/child_process.hpp"
#include "crew/detail/handle.hpp"
#include "crew/error.hpp"
#include "crew/loop.hpp"
#include "crew/message.hpp"
#include "crew/tcp.hpp"
#include "crew/timer.hpp"
#include "crew/unique_function.hpp"

namespace crew::cluster {

namespace detail {
struct primary_state;
}

/// How workers share a listening port.
enum class policy {
  round_robin,  ///< the primary accepts and hands each connection to the next worker (Node's default)
  shared,       ///< the primary sends the listening socket to every worker; the kernel distributes
  reuseport,    ///< each worker binds its own SO_REUSEPORT socket (nginx-style; beyond Node)
};

/// "round_robin", "shared" or "reuseport" (the names on the wire and on command lines).
std::string_view policy_name(policy p) noexcept;
/// The policy of that name; nothing for another name.
std::optional<policy> policy_named(std::string_view name) noexcept;

/// Restarting workers that exit unexpectedly (PM2's job; Node leaves it to you).
struct restart_policy {
  bool enabled = false;                            ///< default: false (Node's behaviour)
  std::chrono::milliseconds first_delay{100};      ///< before the first restart; doubles each time; default 100 ms
  std::chrono::milliseconds max_delay{10'000};     ///< the doubling stops here; default 10 s
  std::chrono::milliseconds stable_after{30'000};  ///< a worker that lived this long resets the delay; default 30 s
  int max_restarts = 10;  ///< restarts in a row (none stable) after which the primary gives up; default 10
  /// A worker whose resident memory passes this many bytes is replaced (a new
  /// one started, the old one disconnected once the new one listens); checked
  /// each second. Default 0: never. Works whether or not `enabled` is set.
  std::uint64_t max_memory_bytes = 0;
};

/// This program's arguments, without its own name, as /proc/self/cmdline
/// lists them: Node's process.argv.slice(2). Empty when they cannot be read.
std::vector<std::string> arguments();

/// Node's cluster settings, and the supervision's.
struct settings {
  std::string exec = "/proc/self/exe";  ///< the worker program; default: this one (see exec_path())
  std::vector<std::string> args = arguments();  ///< its arguments; default: the primary's own, as in Node
  bool silent = false;                  ///< pipe the workers' stdio instead of inheriting it; default: false
  policy scheduling = policy::round_robin;  ///< default: round_robin (Node's)
  restart_policy restart;                   ///< default: no restart
  /// How each worker is started, as for crew::fork(): cwd, env and extra_env
  /// (fork()'s own extra_env is added on top), uid/gid, stdio, kill_signal...
  /// `silent` above takes the place of process.silent. kill_signal and
  /// kill_timeout also end a disconnected worker that does not exit: it gets
  /// SIGKILL kill_timeout after its disconnect (shutdown, reload, memory
  /// replacement), and destroying the primary terminates every worker that
  /// way (docs/reaping.md). Default: process_options{} (SIGTERM, 5 s).
  process_options process;
};

/// This program's path as a file name (the target of /proc/self/exe), so that a
/// rolling reload starts the program now at that path, a rebuilt one included.
std::string exec_path();

/// Whether this process is a worker (NODE_UNIQUE_ID in its environment at start).
bool is_worker() noexcept;
bool is_primary() noexcept;
/// A worker's id (1, 2, ...); 0 in the primary.
int worker_id() noexcept;

/// Where a worker listens (Node's address object of the 'listening' event).
struct address {
  std::string host;  ///< "127.0.0.1", "::1"
  int port = 0;      ///< the port every worker shares
  int family = 4;    ///< 4 or 6
};

/// One worker's figures, as the primary sees them.
struct worker_figures {
  int id = 0;
  pid_t pid = 0;
  std::chrono::milliseconds uptime{0};
  int restarts = 0;                  ///< how many workers came before this one in its place
  std::uint64_t memory_bytes = 0;    ///< resident set size, read from /proc now
  /// What its servers served (the answers of an http::server, the connections
  /// of another tcp::server), reported by the worker each second while it serves.
  std::uint64_t requests_served = 0;
};

/// One worker, seen from the primary. The primary owns it: the reference its
/// events give stays valid until the worker's exit event has returned (and
/// while the primary lives).
class worker_process {
 public:
  int id() const noexcept { return id_; }
  pid_t pid() const noexcept { return process_.pid(); }
  /// A message to the worker (its parent_channel()). done as ipc_channel::send.
  bool send(message m, ipc_channel::error_callback done = {}) { return process_.send(std::move(m), std::move(done)); }
  std::error_code kill(int signal = SIGTERM) { return process_.kill(signal); }
  /// Node's worker.disconnect(): no new connections go to the worker, which
  /// takes those already handed to it, closes its servers, lets the requests
  /// in flight finish and exits; SIGKILL after settings::process.kill_timeout.
  void disconnect();
  bool is_dead() const noexcept { return dead_; }
  bool is_connected() noexcept { return process_.channel().connected(); }
  /// Whether it was disconnected on purpose (by the primary or by itself), so
  /// that its exit is expected and not restarted.
  bool exited_after_disconnect() const noexcept { return exited_after_disconnect_; }
  /// With settings::silent, the worker's stdout and stderr (Node's
  /// worker.process.stdout): read them, or a worker that writes much blocks
  /// once the pipe is full. Closed streams otherwise.
  stream& out() noexcept { return process_.out(); }
  stream& err() noexcept { return process_.err(); }
  /// When it was started.
  std::chrono::steady_clock::time_point started() const noexcept { return started_; }
  worker_figures figures() const;

 private:
  friend struct detail::primary_state;
  worker_process(detail::primary_state& owner, int id, int restarts, environment env, child_process process)
      : owner_(owner), id_(id), restarts_(restarts), env_(std::move(env)), process_(std::move(process)) {}
  detail::primary_state& owner_;
  int id_;
  int restarts_;
  environment env_;  // what it was forked with, for its replacement
  child_process process_;
  bool dead_ = false;
  std::optional<exit_status> exited_;  // its process exited; its channel is read to the end first
  bool exited_after_disconnect_ = false;
  bool listen_failed_ = false;  // the primary could not have a port for it: no restart
  bool listening_ = false;
  bool replacing_ = false;        // its replacement is starting
  bool stopping_ = false;         // disconnected by the primary: no new connections
  bool disconnect_sent_ = false;  // told to disconnect (or disconnecting itself): no connection at all
  std::uint64_t requests_served_ = 0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::optional<timer> kill_timer_;              // armed by disconnect(); after its exit, the wait for its channel
  unique_function<void(bool listening)> ready_;  // a replacement in progress waits for this one
  unique_function<void()> gone_;                 // ... and for the one it replaces to exit
};

/// The primary: forks workers, serves their listen requests, supervises them.
/// Loop thread only. Move-only.
///
/// Events (on_fork ... on_crash_loop) run on the loop, never inside the call
/// that caused them, and never after the primary is destroyed. Completions
/// (the `done` of disconnect(), shutdown() and reload()) run exactly once, on
/// a later turn, also when the primary is destroyed first (reload's then gets
/// ECANCELED); only the loop's destruction drops them (docs/callbacks.md).
///
/// Destroying the primary in any state closes the ports it holds, closes each
/// worker's channel, and terminates every worker (settings::process.kill_signal,
/// then SIGKILL after kill_timeout), which is reaped in the background
/// (docs/reaping.md). shutdown() is the graceful way.
class primary : private crew::detail::handle_owner {
 public:
  explicit primary(settings s = {}, loop& l = loop::current());
  primary(primary&&) noexcept = default;
  /// Closes this primary first, as its destruction does.
  primary& operator=(primary&&) noexcept = default;
  ~primary() = default;

  /// Starts a worker with `extra_env` added to settings::process's environment.
  /// On a closed primary: throws std::system_error (EBADF).
  worker_process& fork(environment extra_env = {});

  using worker_event = unique_function<void(worker_process&)>;
  void on_fork(worker_event fn);
  void on_online(worker_event fn);
  void on_listening(unique_function<void(worker_process&, const address&)> fn);
  void on_message(unique_function<void(worker_process&, message)> fn);
  void on_disconnect(worker_event fn);
  void on_exit(unique_function<void(worker_process&, exit_status)> fn);

  /// Called when the restart policy gives up after max_restarts crashes in a row.
  void on_crash_loop(unique_function<void()> fn);

  /// A worker's listen failed because the primary could not have the port
  /// for it: EADDRINUSE (another program holds it), EACCES (a privileged
  /// port), EADDRNOTAVAIL (not an address of this machine), EINVAL (no such
  /// port). The worker's cluster::listen() gets the same error, and the worker
  /// is not restarted when it exits: another would fail the same way.
  ///
  /// Without this event, the primary does what an unhandled 'error' event
  /// does in Node: it prints "cluster: cannot listen on HOST:PORT: EADDRINUSE
  /// (address already in use)" on stderr, shuts down (see shutdown()), and
  /// once every worker has exited ends the process with exit code 1.
  void on_listen_error(unique_function<void(worker_process&, const address&, std::error_code)> fn);

  /// The live workers by id (empty on a closed primary).
  const std::map<int, std::unique_ptr<worker_process>>& workers() const noexcept;
  std::vector<worker_figures> figures() const;

  /// Node's cluster.disconnect(): disconnects every worker; done runs once
  /// none is connected. Restarts still apply to workers that crash meanwhile.
  void disconnect(unique_function<void()> done = {});

  /// Graceful shutdown: no more restarts; the ports stop accepting (in round
  /// robin, connections already waiting in the port's queue are accepted and
  /// handed out first); every connection handed to a worker is taken by one;
  /// then every worker is disconnected (it finishes its requests in flight and
  /// exits), and one still alive settings::process.kill_timeout after the
  /// shutdown began is killed with SIGKILL. done once every worker has exited.
  void shutdown(unique_function<void()> done = {});

  /// Zero-downtime rolling reload, one worker at a time: start its
  /// replacement, wait until that one listens, disconnect the old one and wait
  /// for its exit. done gets ESRCH if a replacement exits before it listens
  /// (the reload stops there; the old worker keeps serving), EALREADY if a
  /// reload or shutdown is under way, ECANCELED if a shutdown began during it
  /// or the primary was destroyed.
  void reload(unique_function<void(std::error_code)> done = {});

  /// SIGTERM and SIGINT: shutdown(); SIGHUP: reload(). The watchers do not
  /// keep the loop alive, so run() returns once the last worker has exited.
  void handle_signals();

 private:
  detail::primary_state* state() const noexcept;
};

/// In a worker: makes `server` listen on host:port through the primary, with
/// the primary's policy (round_robin: connections arrive through
/// server.adopt_connection(); shared: server.listen_fd() on the primary's
/// socket; reuseport: the worker binds a SO_REUSEPORT socket of its own).
/// `host` is an IPv4 or IPv6 literal, or "" for every interface. done gets the
/// port (the same in every worker, port 0 included) or the error (EADDRINUSE,
/// EINVAL, EALREADY when the server listens already, EBADF for a closed
/// server, ECANCELED when the server closes, or the worker disconnects, before
/// the primary answers). Outside a cluster: server.listen(port, host).
///
/// The worker's figures count what the server serves: the answers of an
/// http::server, the connections of another tcp::server.
///
/// Callback contract: done runs exactly once, on a later turn. The server may
/// move or be destroyed at any time: the cluster keeps no pointer to it past
/// its close.
void listen(tcp::server& server, int port, unique_function<void(result<int>)> done,
            const std::string& host = "127.0.0.1");

/// In a worker, Node's worker.disconnect(): closes the servers that listen
/// through cluster::listen (requests in flight finish), then the channel to
/// the primary, then stops the loop, so run() returns. Outside a cluster it
/// closes those servers and runs done. done runs once, on a later turn.
void disconnect(unique_function<void()> done = {});

/// Whether this thread's disconnect() has begun (a reload or a shutdown from
/// the primary, SIGTERM, or the program's own call): its servers take no new
/// connections and finish what they serve. A readiness check answers 503 then,
/// so that a load balancer in front routes around the worker while it drains.
bool disconnecting() noexcept;

/// In a worker: SIGTERM and SIGINT call disconnect(), so a worker finishes
/// what it is serving before it exits.
void handle_signals();

}  // namespace crew::cluster
