// The primary's side of the cluster: its workers, the ports it holds for
// them, and their supervision (the worker's side is in cluster.cpp).
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fstream>

#include "crew/cluster.hpp"
#include "crew/ipc.hpp"
#include "detail/cluster_wire.hpp"

namespace crew::cluster {
namespace {

using json = message::value_type;
using wire::control;
using wire::number_at;
using wire::text_at;

std::uint64_t resident_bytes(pid_t pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

// A port the primary holds for its workers.
struct primary::listener {
  policy kind;
  int fd = -1;  // listening (shared, round robin) or only bound (reuseport, to hold the port)
  int port = 0;
  std::string key;
  std::vector<int> workers;  // the workers serving it (round robin: in turn)
  std::size_t next = 0;
  uv_poll_t* poll = nullptr;  // round robin: readable when a connection waits
  std::unique_ptr<timer> pause;  // round robin: accepting again after a full descriptor table
  primary* owner = nullptr;

  ~listener() {
    if (poll) uv_close(reinterpret_cast<uv_handle_t*>(poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    if (fd >= 0) ::close(fd);
  }

  void start_accepting() {
    uv_poll_start(poll, UV_READABLE, [](uv_poll_t* p, int status, int) {
      if (status == 0) static_cast<listener*>(p->data)->accept_waiting();
    });
  }

  // Round robin: accept what waits and hand each connection to the next worker.
  void accept_waiting() {
    for (;;) {
      int connection = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (connection >= 0) {
        owner->dispatch(*this, connection);
        continue;
      }
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // No descriptor for it: the connection waits in the kernel's queue.
        // Polling again at once would spin, so accepting pauses for 100 ms.
        uv_poll_stop(poll);
        if (!pause) pause = std::make_unique<timer>(owner->loop_);
        pause->start(std::chrono::milliseconds(100), {}, [this] { start_accepting(); });
      }
      return;  // EAGAIN: nothing more waits
    }
  }
};

worker_figures worker_process::figures() const {
  return {.id = id_,
          .pid = pid(),
          .uptime = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_),
          .restarts = restarts_,
          .memory_bytes = dead_ ? 0 : resident_bytes(pid()),
          .requests_served = requests_served_};
}

void worker_process::disconnect() { owner_.stop(*this); }

primary::primary(settings s, loop& l) : settings_(std::move(s)), loop_(l), memory_check_(l) {
  if (settings_.restart.max_memory_bytes > 0) {
    memory_check_.start(std::chrono::seconds(1), std::chrono::seconds(1), [this] { check_memory(); });
    memory_check_.unref();
  }
}

primary::~primary() {
  for (auto& [seq, h] : handoffs_) ::close(h.fd);
}

worker_process& primary::fork(environment extra_env) { return start(std::move(extra_env), 0); }

worker_process& primary::start(environment env, int restarts) {
  int id = next_id_++;
  environment with_id = env;
  with_id["NODE_UNIQUE_ID"] = std::to_string(id);
  // libuv accepts every connection waiting on a readable listener, so on a
  // shared socket the first worker to wake takes a whole burst (measured: 64
  // of wrk's 64 connections). Its UV_TCP_SINGLE_ACCEPT switch makes a worker
  // yield after each accept, and the burst spreads.
  if (settings_.scheduling == policy::shared && !with_id.contains("UV_TCP_SINGLE_ACCEPT") &&
      !std::getenv("UV_TCP_SINGLE_ACCEPT"))
    with_id["UV_TCP_SINGLE_ACCEPT"] = "1";
  child_process process =
      crew::fork(settings_.exec, settings_.args, {.extra_env = std::move(with_id), .silent = settings_.silent}, loop_);
  auto owned = std::unique_ptr<worker_process>(new worker_process(*this, id, restarts, std::move(env), std::move(process)));
  worker_process& w = *owned;
  workers_[id] = std::move(owned);
  // The primary answers its workers at once: no spin after each message.
  w.process_.channel().set_spin(std::chrono::microseconds(0));
  w.process_.channel().on_internal_message([this, &w](message m) { handle_internal(w, std::move(m)); });
  w.process_.on_message([this, &w](message m) {
    if (on_message_) on_message_(w, std::move(m));
  });
  w.process_.on_disconnect([this, &w] {
    forget(w.id());
    if (on_disconnect_) on_disconnect_(w);
    check_disconnected();
  });
  w.process_.on_exit([this, id](exit_status status) {
    auto it = workers_.find(id);
    if (it == workers_.end()) return;
    std::unique_ptr<worker_process> gone = std::move(it->second);
    workers_.erase(it);
    gone->dead_ = true;
    gone->kill_timer_.reset();
    forget(id);
    bool expected = gone->exited_after_disconnect_;
    auto lived = std::chrono::steady_clock::now() - gone->started_;
    if (on_exit_) on_exit_(*gone, status);
    if (gone->ready_) gone->ready_(false);
    if (gone->gone_) gone->gone_();
    if (!expected && settings_.restart.enabled && !shutting_down_)
      schedule_restart(lived, gone->restarts_ + 1, std::move(gone->env_));
    check_disconnected();
    if (shutting_down_ && workers_.empty() && shutdown_done_) {
      auto done = std::exchange(shutdown_done_, {});
      loop_.invoke(done);
    }
    // `gone` dies here: its process handle closes after its exit was reported.
  });
  if (on_fork_) loop_.post([this, id] {
    if (auto it = workers_.find(id); it != workers_.end() && on_fork_) on_fork_(*it->second);
  });
  return w;
}

// A worker that is disconnecting or gone gets no more connections; the
// connections handed to it and not yet accepted go to the others; a port no
// worker serves any more is released, as Node's primary does.
void primary::forget(int worker) {
  for (auto l = listeners_.begin(); l != listeners_.end();) {
    std::erase(l->second->workers, worker);
    l = l->second->workers.empty() ? listeners_.erase(l) : std::next(l);
  }
  for (auto it = handoffs_.begin(); it != handoffs_.end();) {
    if (it->second.worker != worker) {
      ++it;
      continue;
    }
    handoff h = it->second;
    it = handoffs_.erase(it);
    auto l = listeners_.find(h.key);
    if (l == listeners_.end())
      ::close(h.fd);
    else
      dispatch(*l->second, h.fd);
  }
}

// Round robin: the next worker that serves the port gets the connection; it
// stays ours until the worker says it took it.
void primary::dispatch(listener& l, int connection) {
  worker_process* target = nullptr;
  for (std::size_t tries = 0; tries < l.workers.size() && !target; ++tries) {
    auto it = workers_.find(l.workers[l.next++ % l.workers.size()]);
    if (it != workers_.end()) target = it->second.get();
  }
  if (!target) {
    ::close(connection);
    return;
  }
  long seq = next_seq_++;
  message m(control("newconn"));
  m.value()["key"] = l.key;
  m.value()["seq"] = seq;
  m.fds().push_back(connection);
  handoffs_.emplace(seq, handoff{connection, target->id(), l.key});
  target->process_.channel().send(std::move(m));
}

void primary::settle(long seq, bool accepted) {
  auto it = handoffs_.find(seq);
  if (it == handoffs_.end()) return;
  handoff h = it->second;
  handoffs_.erase(it);
  if (accepted) {
    ::close(h.fd);
    return;
  }
  // Refused: the worker is closing its servers. It gets no more connections,
  // and this one (as any other it holds) goes to another worker.
  forget(h.worker);
  auto l = listeners_.find(h.key);
  if (l == listeners_.end())
    ::close(h.fd);
  else
    dispatch(*l->second, h.fd);
}

// Disconnects a worker: it gets no new connections, finishes, exits; past
// kill_timeout it is killed.
void primary::stop(worker_process& w) {
  if (w.dead_ || w.kill_timer_) return;
  w.exited_after_disconnect_ = true;
  forget(w.id());
  w.process_.channel().send(control("disconnect"));
  w.kill_timer_ = std::make_unique<timer>(loop_);
  w.kill_timer_->start(settings_.kill_timeout, {}, [&w] { (void)w.kill(SIGKILL); });
}

void primary::disconnect(unique_function<void()> done) {
  disconnect_done_ = std::move(done);
  for (auto& [id, w] : workers_) stop(*w);
  if (disconnect_done_) loop_.post([this] { check_disconnected(); });
}

void primary::check_disconnected() {
  if (!disconnect_done_) return;
  for (auto& [id, w] : workers_)
    if (w->is_connected()) return;
  auto done = std::exchange(disconnect_done_, {});
  loop_.invoke(done);
}

void primary::shutdown(unique_function<void()> done) {
  shutting_down_ = true;
  restarts_.clear();
  memory_check_.stop();
  shutdown_done_ = std::move(done);
  for (auto& [id, w] : workers_) stop(*w);
  if (workers_.empty())
    loop_.post([this] {
      if (shutdown_done_) std::exchange(shutdown_done_, {})();
    });
}

// Starts old's replacement; once it listens, old is disconnected and done(true)
// runs when old has exited. done(false) if the replacement exits first.
void primary::replace(worker_process& old, unique_function<void(bool)> done) {
  int old_id = old.id();
  old.replacing_ = true;
  worker_process& fresh = start(old.env_, old.restarts_ + 1);
  fresh.ready_ = [this, old_id, done = std::move(done)](bool listening) mutable {
    auto it = workers_.find(old_id);
    if (it != workers_.end()) it->second->replacing_ = listening;
    if (!listening || it == workers_.end()) return done(listening);
    it->second->gone_ = [done = std::move(done)]() mutable { done(true); };
    stop(*it->second);
  };
}

void primary::reload(unique_function<void(std::error_code)> done) {
  if (reloading_ || shutting_down_) {
    if (done) loop_.post([done = std::move(done)]() mutable { done(uv_error(UV_EALREADY)); });
    return;
  }
  reloading_ = true;
  std::vector<int> ids;
  for (auto& [id, w] : workers_)
    if (!w->kill_timer_ && !w->replacing_) ids.push_back(id);
  loop_.post([this, ids = std::move(ids), done = std::move(done)]() mutable { reload_next(std::move(ids), std::move(done)); });
}

void primary::reload_next(std::vector<int> ids, unique_function<void(std::error_code)> done) {
  auto finish = [this, &done](std::error_code ec) {
    reloading_ = false;
    if (done) done(ec);
  };
  if (shutting_down_) return finish(uv_error(UV_ECANCELED));
  while (!ids.empty() && (!workers_.contains(ids.front()) || workers_[ids.front()]->kill_timer_ ||
                            workers_[ids.front()]->replacing_))
    ids.erase(ids.begin());
  if (ids.empty()) return finish({});
  worker_process& old = *workers_[ids.front()];
  ids.erase(ids.begin());
  replace(old, [this, ids = std::move(ids), done = std::move(done)](bool replaced) mutable {
    if (!replaced) {
      reloading_ = false;
      if (done) done(uv_error(UV_ESRCH));
      return;
    }
    reload_next(std::move(ids), std::move(done));
  });
}

void primary::check_memory() {
  if (shutting_down_) return;
  for (auto& [id, w] : workers_) {
    bool busy = w->kill_timer_ || w->replacing_ || !w->listening_;
    if (!busy && resident_bytes(w->pid()) > settings_.restart.max_memory_bytes)
      replace(*w, [](bool) {});
  }
}

void primary::handle_signals() {
  signals_.push_back(on_signal(SIGTERM, [this](int) { shutdown(); }, loop_));
  signals_.push_back(on_signal(SIGINT, [this](int) { shutdown(); }, loop_));
  signals_.push_back(on_signal(SIGHUP, [this](int) { reload(); }, loop_));
}

std::vector<worker_figures> primary::figures() const {
  std::vector<worker_figures> all;
  for (const auto& [id, w] : workers_) all.push_back(w->figures());
  return all;
}

void primary::schedule_restart(std::chrono::steady_clock::duration lived, int restarts, environment env) {
  const restart_policy& r = settings_.restart;
  if (lived >= r.stable_after) crashes_in_a_row_ = 0;
  if (++crashes_in_a_row_ > r.max_restarts) {
    if (crashes_in_a_row_ == r.max_restarts + 1 && on_crash_loop_) on_crash_loop_();
    return;
  }
  // 100 ms, 200 ms, 400 ms... up to max_delay.
  auto delay = r.first_delay;
  for (int i = 1; i < crashes_in_a_row_ && delay < r.max_delay; ++i) delay *= 2;
  delay = std::min(delay, r.max_delay);
  auto t = std::make_unique<timer>(loop_);
  timer* raw = t.get();
  restarts_.push_back(std::move(t));
  raw->start(delay, {}, [this, raw, restarts, env = std::move(env)]() mutable {
    start(std::move(env), restarts);
    std::erase_if(restarts_, [raw](const auto& p) { return p.get() == raw; });  // this timer: safe from its own callback
  });
}

void primary::handle_internal(worker_process& w, message m) {
  const json& v = m.value();
  if (text_at(v, "cmd") != "NODE_CLUSTER") return;
  std::string act = text_at(v, "act");
  if (act == "online") {
    if (on_online_) on_online_(w);
  } else if (act == "queryServer") {
    query_server(w, v);
  } else if (act == "listening") {
    bool first = !w.listening_;
    w.listening_ = true;
    if (on_listening_) on_listening_(w, address{text_at(v, "address"), static_cast<int>(number_at(v, "port"))});
    if (first && w.ready_) std::exchange(w.ready_, {})(true);
  } else if (act == "accepted") {
    settle(number_at(v, "ack"), wire::flag_at(v, "accepted"));
  } else if (act == "exitedAfterDisconnect") {
    w.exited_after_disconnect_ = true;
    forget(w.id());
  } else if (act == "crew:figures") {
    w.requests_served_ = static_cast<std::uint64_t>(std::max(0L, number_at(v, "requests")));
  }
}

void primary::query_server(worker_process& w, const json& request) {
  std::string host = text_at(request, "address", "127.0.0.1");
  long port = number_at(request, "port", -1);
  if (port < 0 || port > 65535) port = -1;  // missing, not a number or out of range: EINVAL below
  std::string key = host + ":" + std::to_string(port);
  json reply = control("queryServer");
  reply["ack"] = number_at(request, "seq");
  reply["key"] = key;

  auto it = listeners_.find(key);
  if (it == listeners_.end()) {
    auto l = std::make_unique<listener>();
    l->kind = settings_.scheduling;
    l->key = key;
    l->owner = this;
    bool reuse = l->kind == policy::reuseport;
    result<int> fd = wire::bound_socket(host, static_cast<int>(port), reuse, reuse ? 0 : 511);
    if (!fd) {
      reply["errno"] = fd.error().value();  // libuv's negative code, as Node sends it
      w.process_.channel().send(std::move(reply));
      return;
    }
    l->fd = *fd;
    l->port = wire::port_of(l->fd);
    if (l->kind == policy::round_robin) {
      l->poll = new uv_poll_t;
      uv_poll_init(loop_.native(), l->poll, l->fd);
      l->poll->data = l.get();
      l->start_accepting();
    }
    it = listeners_.emplace(key, std::move(l)).first;
  }
  listener& l = *it->second;
  reply["port"] = l.port;
  l.workers.push_back(w.id());
  reply["policy"] = policy_name(l.kind);
  message m(std::move(reply));
  if (l.kind == policy::shared) m.fds().push_back(l.fd);  // each worker gets its own copy of the listening socket
  w.process_.channel().send(std::move(m));
}

}  // namespace crew::cluster
