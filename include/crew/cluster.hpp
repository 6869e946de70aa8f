// cluster: Node's cluster module, with the supervision PM2 adds. The primary
// re-executes the program as workers (with NODE_UNIQUE_ID in their
// environment); a server in a worker listens through the primary, which
// shares one port among all of them.
//
//   if (crew::cluster::is_primary()) {
//     crew::cluster::primary primary({.restart = {.enabled = true}});
//     for (int i = 0; i < 2; ++i) primary.fork();
//     primary.handle_signals();  // SIGTERM/SIGINT: graceful shutdown; SIGHUP: rolling reload
//     crew::loop::current().run();
//   } else {
//     crew::http::server server(routes);
//     crew::cluster::listen(server, 8000, [](crew::result<int> port) { ... });
//     crew::cluster::handle_signals();  // SIGTERM/SIGINT: finish what is in flight, then exit
//     crew::loop::current().run();
//   }
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
#include "crew/unique_function.hpp"
#include "crew/http.hpp"
#include "crew/loop.hpp"
#include "crew/message.hpp"
#include "crew/signal.hpp"
#include "crew/timer.hpp"

namespace crew::cluster {

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

/// Node's cluster settings, and the supervision's.
struct settings {
  std::string exec = "/proc/self/exe";  ///< the worker program; default: this one (see exec_path())
  std::vector<std::string> args;        ///< its arguments; default: none
  bool silent = false;                  ///< pipe the workers' stdio instead of inheriting it; default: false
  policy scheduling = policy::round_robin;  ///< default: round_robin (Node's)
  restart_policy restart;                   ///< default: no restart
  /// How long a disconnected worker may take to finish and exit before it is
  /// killed with SIGKILL (shutdown, reload, memory replacement). Default 10 s.
  std::chrono::milliseconds kill_timeout{10'000};
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
  std::string host;  ///< "127.0.0.1"
  int port = 0;      ///< the port every worker shares
};

/// One worker's figures, as the primary sees them.
struct worker_figures {
  int id = 0;
  pid_t pid = 0;
  std::chrono::milliseconds uptime{0};
  int restarts = 0;                  ///< how many workers came before this one in its place
  std::uint64_t memory_bytes = 0;    ///< resident set size, read from /proc now
  std::uint64_t requests_served = 0;  ///< reported by the worker each second while it serves
};

class primary;

/// One worker, seen from the primary.
class worker_process {
 public:
  int id() const noexcept { return id_; }
  pid_t pid() const noexcept { return process_.pid(); }
  bool send(message m) { return process_.send(std::move(m)); }
  [[nodiscard]] std::error_code kill(int signal = SIGTERM) { return process_.kill(signal); }
  /// Node's worker.disconnect(): no new connections go to the worker, which
  /// closes its servers, lets the requests in flight finish and exits.
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
  friend class primary;
  worker_process(primary& owner, int id, int restarts, environment env, child_process process)
      : owner_(owner), id_(id), restarts_(restarts), env_(std::move(env)), process_(std::move(process)) {}
  primary& owner_;
  int id_;
  int restarts_;
  environment env_;  // what it was forked with, for its replacement
  child_process process_;
  bool dead_ = false;
  bool exited_after_disconnect_ = false;
  bool listening_ = false;
  bool replacing_ = false;  // its replacement is starting
  std::uint64_t requests_served_ = 0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::unique_ptr<timer> kill_timer_;                   // armed by disconnect()
  unique_function<void(bool listening)> ready_;  // a replacement in progress waits for this one
  unique_function<void()> gone_;                 // ... and for the one it replaces to exit
};

/// The primary: forks workers, serves their listen requests, supervises them.
class primary {
 public:
  explicit primary(settings s = {}, loop& l = loop::current());
  ~primary();
  primary(const primary&) = delete;
  primary& operator=(const primary&) = delete;

  /// Starts a worker with `extra_env` added to this process's environment.
  worker_process& fork(environment extra_env = {});

  using worker_event = unique_function<void(worker_process&)>;
  void on_fork(worker_event fn) { on_fork_ = std::move(fn); }
  void on_online(worker_event fn) { on_online_ = std::move(fn); }
  void on_listening(unique_function<void(worker_process&, const address&)> fn) { on_listening_ = std::move(fn); }
  void on_message(unique_function<void(worker_process&, message)> fn) { on_message_ = std::move(fn); }
  void on_disconnect(worker_event fn) { on_disconnect_ = std::move(fn); }
  void on_exit(unique_function<void(worker_process&, exit_status)> fn) { on_exit_ = std::move(fn); }

  /// Called when the restart policy gives up after max_restarts crashes in a row.
  void on_crash_loop(unique_function<void()> fn) { on_crash_loop_ = std::move(fn); }

  /// The live workers by id.
  const std::map<int, std::unique_ptr<worker_process>>& workers() const noexcept { return workers_; }
  std::vector<worker_figures> figures() const;

  /// Node's cluster.disconnect(): disconnects every worker; done runs once
  /// none is connected. Restarts still apply to workers that crash meanwhile.
  void disconnect(unique_function<void()> done = {});

  /// Graceful shutdown: no more restarts; every worker disconnected (stops
  /// accepting, finishes in-flight requests, exits), SIGKILL for any still
  /// alive after settings::kill_timeout; done once every worker has exited.
  void shutdown(unique_function<void()> done = {});

  /// Zero-downtime rolling reload, one worker at a time: start its
  /// replacement, wait until that one listens, disconnect the old one and wait
  /// for its exit. done gets ESRCH if a replacement exits before it listens
  /// (the reload stops there; the old worker keeps serving), EALREADY if a
  /// reload or shutdown is under way, ECANCELED if a shutdown began during it.
  void reload(unique_function<void(std::error_code)> done = {});

  /// SIGTERM and SIGINT: shutdown(); SIGHUP: reload(). The watchers do not
  /// keep the loop alive, so run() returns once the last worker has exited.
  void handle_signals();

 private:
  friend class worker_process;
  struct listener;
  struct handoff {
    int fd;
    int worker;
    std::string key;
  };
  worker_process& start(environment env, int restarts);
  void handle_internal(worker_process& w, message m);
  void query_server(worker_process& w, const message::value_type& request);
  void dispatch(listener& l, int connection);
  void settle(long seq, bool accepted);
  void forget(int worker);
  void stop(worker_process& w);
  void replace(worker_process& old, unique_function<void(bool)> done);
  void reload_next(std::vector<int> ids, unique_function<void(std::error_code)> done);
  void schedule_restart(std::chrono::steady_clock::duration lived, int restarts, environment env);
  void check_memory();
  void check_disconnected();

  settings settings_;
  loop& loop_;
  int next_id_ = 1;
  std::map<int, std::unique_ptr<worker_process>> workers_;
  std::map<std::string, std::unique_ptr<listener>> listeners_;  // by "host:port"
  std::map<long, handoff> handoffs_;  // round robin: connections sent, awaiting the worker's answer
  long next_seq_ = 1;
  worker_event on_fork_, on_online_, on_disconnect_;
  unique_function<void(worker_process&, const address&)> on_listening_;
  unique_function<void(worker_process&, message)> on_message_;
  unique_function<void(worker_process&, exit_status)> on_exit_;
  unique_function<void()> on_crash_loop_;
  // Supervision.
  int crashes_in_a_row_ = 0;
  std::vector<std::unique_ptr<timer>> restarts_;
  timer memory_check_;
  bool shutting_down_ = false;
  bool reloading_ = false;
  unique_function<void()> shutdown_done_;
  unique_function<void()> disconnect_done_;
  std::vector<signal_watcher> signals_;
};

/// In a worker: makes `server` listen on host:port through the primary, with
/// the primary's policy; done gets the port (the same in every worker, port 0
/// included) or the error (EADDRINUSE...). Outside a cluster, plain listen.
/// The server must stay alive while it listens.
void listen(http::server& server, int port, unique_function<void(result<int>)> done,
            const std::string& host = "127.0.0.1");

/// In a worker, Node's worker.disconnect(): closes the servers that listen
/// through cluster::listen (requests in flight finish), then the channel to
/// the primary, then stops the loop, so run() returns. Outside a cluster it
/// closes those servers and runs done.
void disconnect(unique_function<void()> done = {});

/// In a worker: SIGTERM and SIGINT call disconnect(), so a worker finishes
/// what it is serving before it exits.
void handle_signals();

}  // namespace crew::cluster
