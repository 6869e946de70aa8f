// cluster: Node's cluster module. The primary re-executes the program as
// workers (with NODE_UNIQUE_ID in their environment); a server in a worker
// listens through the primary, which shares one port among all of them.
//
//   if (crew::cluster::is_primary()) {
//     crew::cluster::primary primary({.scheduling = crew::cluster::policy::round_robin});
//     for (int i = 0; i < 2; ++i) primary.fork();
//     primary.on_exit([&](crew::cluster::worker_process& w, crew::exit_status) { primary.fork(); });
//     crew::loop::current().run();
//   } else {
//     crew::http::server server(routes);
//     crew::cluster::listen(server, 8000, [](crew::result<int> port) { ... });
//     crew::loop::current().run();
//   }
//
// Built so far: the primary, its workers, Node's NODE_CLUSTER messages, the
// three listening policies and restarts with backoff. Not yet: graceful
// shutdown and rolling reload (docs/cluster.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "crew/child_process.hpp"
#include "crew/detail/unique_function.hpp"
#include "crew/http.hpp"
#include "crew/loop.hpp"
#include "crew/message.hpp"
#include "crew/timer.hpp"

namespace crew::cluster {

/// How workers share a listening port.
enum class policy {
  round_robin,  ///< the primary accepts and hands each connection to the next worker (Node's default)
  shared,       ///< the primary sends the listening socket to every worker; the kernel distributes
  reuseport,    ///< each worker binds its own SO_REUSEPORT socket (nginx-style; beyond Node)
};

/// Restarting workers that exit unexpectedly (PM2's job; Node leaves it to you).
struct restart_policy {
  bool enabled = false;                          ///< default: false (Node's behaviour)
  std::chrono::milliseconds first_delay{100};    ///< before the first restart; doubles each time; default 100 ms
  std::chrono::milliseconds max_delay{10'000};   ///< the doubling stops here; default 10 s
  std::chrono::milliseconds stable_after{30'000};  ///< a worker that lived this long resets the delay; default 30 s
  int max_restarts = 10;  ///< restarts in a row (none stable) after which the primary gives up; default 10
};

/// Node's cluster settings.
struct settings {
  std::string exec = "/proc/self/exe";  ///< the worker program; default: this one
  std::vector<std::string> args;        ///< its arguments; default: none
  bool silent = false;                  ///< pipe the workers' stdio instead of inheriting it; default: false
  policy scheduling = policy::round_robin;  ///< default: round_robin (Node's)
  restart_policy restart;                ///< default: no restart
};

/// Whether this process is a worker (NODE_UNIQUE_ID in its environment at start).
bool is_worker() noexcept;
bool is_primary() noexcept;
/// A worker's id (1, 2, ...); 0 in the primary.
int worker_id() noexcept;

/// One worker, seen from the primary.
class worker_process {
 public:
  int id() const noexcept { return id_; }
  pid_t pid() const noexcept { return process_.pid(); }
  bool send(message m) { return process_.send(std::move(m)); }
  void kill(int signal = SIGTERM) { process_.kill(signal); }
  void disconnect();
  bool is_dead() const noexcept { return dead_; }
  bool is_connected() noexcept { return process_.channel().connected(); }
  bool exited_after_disconnect() const noexcept { return exited_after_disconnect_; }
  /// When it was started.
  std::chrono::steady_clock::time_point started() const noexcept { return started_; }

 private:
  friend class primary;
  worker_process(int id, child_process process) : id_(id), process_(std::move(process)) {}
  int id_;
  child_process process_;
  bool dead_ = false;
  bool exited_after_disconnect_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

/// The primary: forks workers and serves their listen requests.
class primary {
 public:
  explicit primary(settings s = {}, loop& l = loop::current());
  ~primary();
  primary(const primary&) = delete;
  primary& operator=(const primary&) = delete;

  /// Starts a worker with `extra_env` added to this process's environment.
  worker_process& fork(environment extra_env = {});

  using worker_event = detail::unique_function<void(worker_process&)>;
  void on_fork(worker_event fn) { on_fork_ = std::move(fn); }
  void on_online(worker_event fn) { on_online_ = std::move(fn); }
  void on_listening(detail::unique_function<void(worker_process&, int port)> fn) { on_listening_ = std::move(fn); }
  void on_message(detail::unique_function<void(worker_process&, message)> fn) { on_message_ = std::move(fn); }
  void on_disconnect(worker_event fn) { on_disconnect_ = std::move(fn); }
  void on_exit(detail::unique_function<void(worker_process&, exit_status)> fn) { on_exit_ = std::move(fn); }

  /// Called when the restart policy gives up after max_restarts crashes in a row.
  void on_crash_loop(detail::unique_function<void()> fn) { on_crash_loop_ = std::move(fn); }

  /// The live workers by id.
  const std::map<int, std::unique_ptr<worker_process>>& workers() const noexcept { return workers_; }

 private:
  struct listener;
  void handle_internal(worker_process& w, message m);
  void query_server(worker_process& w, const message::value_type& request);

  settings settings_;
  loop& loop_;
  int next_id_ = 1;
  std::map<int, std::unique_ptr<worker_process>> workers_;
  std::map<std::string, std::unique_ptr<listener>> listeners_;  // by "host:port"
  worker_event on_fork_, on_online_, on_disconnect_;
  detail::unique_function<void(worker_process&, int)> on_listening_;
  detail::unique_function<void(worker_process&, message)> on_message_;
  detail::unique_function<void(worker_process&, exit_status)> on_exit_;
  detail::unique_function<void()> on_crash_loop_;
  // Supervision: crashes in a row and the pending restart timers.
  int crashes_in_a_row_ = 0;
  std::vector<std::unique_ptr<timer>> restarts_;
  void schedule_restart(std::chrono::steady_clock::duration lived);
};

/// In a worker: makes `server` listen on host:port through the primary, with
/// the primary's policy; done gets the port (the same in every worker, port 0
/// included) or the error (EADDRINUSE...). Outside a cluster, plain listen.
void listen(http::server& server, int port, detail::unique_function<void(result<int>)> done,
            const std::string& host = "127.0.0.1");

}  // namespace crew::cluster
