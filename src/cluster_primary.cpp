// The primary's side of the cluster: its workers, the ports it holds for
// them, the round-robin hand-off, and their supervision (the worker's side is
// in cluster.cpp).
//
// The primary's state is a heap block (docs/lifetime.md) whose handle is the
// memory check's timer. Everything the primary owns (workers, ports, timers,
// signal watchers) lives in the block and closes with it, so their events,
// which capture the block, never run once it is closed. Completions of sends
// to workers may run later than that: they reach the block through `link`.
//
// A connection the round-robin primary accepted is owned by exactly one side
// at every moment: the primary keeps its descriptor (in `handoffs`) until the
// worker answers that it took it. A hand-off the worker refused, never
// acknowledged (a NACK past Node's limit: its descriptor table is full), or
// could not receive (its channel closed: it died) comes back and goes to the
// next worker, or is closed when no worker is left.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>

#include "crew/cluster.hpp"
#include "crew/ipc.hpp"
#include "crew/signal.hpp"
#include "detail/cluster_wire.hpp"
#include "detail/proc.hpp"
#include "detail/tcp_state.hpp"

namespace crew::cluster {
namespace detail {
namespace {

using wire::act;
using wire::control;

// How long the primary waits for a dead worker's channel to end before closing it.
constexpr std::chrono::milliseconds departure_limit{1000};

// How many connections a worker may hold unanswered. A worker that stops
// answering (its loop hangs) gets no more; when every worker is that full,
// connections wait in the port's queue. (Node's primary holds one per worker.)
constexpr int handoff_limit = 64;

// Errors that no retry mends: a worker that cannot listen for one of them is
// not restarted, and the program ends (see listen_failed). Any other error
// (EMFILE, ENOBUFS) reaches the worker alone.
bool permanent(int listen_error) {
  return listen_error == UV_EADDRINUSE || listen_error == UV_EACCES || listen_error == UV_EADDRNOTAVAIL ||
         listen_error == UV_EINVAL;
}

}  // namespace

// A connection handed to a worker and not yet taken by it.
struct handoff {
  int fd;
  int worker;
  std::string key;
  std::vector<int> refused;  // workers that could not take it
};

struct listener;

struct primary_state final : crew::detail::handle_state {
  primary_state(crew::loop& l, settings s);
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&memory_check); }
  void on_closing() noexcept override;

  // An event: moved out while it runs, so that it may replace itself or
  // destroy the primary; kept afterwards unless replaced or closed.
  template <class Fn, class... Args>
  void fire(Fn primary_state::*slot, Args&&... args) {
    Fn running = std::move(this->*slot);
    if (!running) return;
    loop.invoke(running, std::forward<Args>(args)...);
    if (!closing && !(this->*slot)) this->*slot = std::move(running);
  }

  // Workers.
  worker_process& start(environment env, int restarts);
  void control_message(worker_process& w, message m);
  void worker_disconnected(worker_process& w);
  void process_exited(int id, exit_status status);
  void worker_exited(int id, exit_status status);

  // Ports and hand-offs.
  void query_server(worker_process& w, const control& request);
  void listen_failed(worker_process& w, const control& request, std::error_code ec);
  worker_process* pick(listener& l, const std::vector<int>& refused, bool handed_back);
  bool full(const worker_process& w) const;
  handoff settled(std::map<long, handoff>::iterator it);
  void dispatch(listener& l, int fd, bool fresh, std::vector<int> refused = {});
  void handoff_sent(long seq, std::error_code ec);
  void settle(worker_process& w, long seq, bool accepted);
  void take_back(handoff h);
  void take_back_all(int worker);
  void leave(int worker, const std::string* key = nullptr);
  void retry_waiting();

  // Supervision.
  void stop(worker_process& w);
  void disconnect_all(unique_function<void()> done);
  void shutdown(unique_function<void()> done);
  void reload(unique_function<void(std::error_code)> done);
  bool unsettled() const;
  void send_due_disconnects();
  void check_disconnected();
  void finish_shutdown();
  void replace(worker_process& old, unique_function<void(bool)> done);
  void reload_next();
  void finish_reload(std::error_code ec);
  void schedule_restart(std::chrono::steady_clock::duration lived, int restarts, environment env);
  void check_memory();

  uv_timer_t memory_check;
  std::shared_ptr<primary_state*> link;  // null once closed
  settings config;
  int next_id = 1;
  std::map<int, std::unique_ptr<worker_process>> workers;
  std::map<std::string, std::unique_ptr<listener>> listeners;  // by key
  std::map<long, handoff> handoffs;                            // by the newconn's seq
  std::map<int, int> holding;                                  // how many of them each worker holds
  long next_seq = 1;

  primary::worker_event fork_event, online_event, disconnect_event;
  unique_function<void(worker_process&, const address&)> listening_event;
  unique_function<void(worker_process&, message)> message_event;
  unique_function<void(worker_process&, exit_status)> exit_event;
  unique_function<void()> crash_loop_event;
  unique_function<void(worker_process&, const address&, std::error_code)> listen_error_event;

  int crashes_in_a_row = 0;
  std::list<timer> restarts;
  std::vector<signal_watcher> signals;
  bool shutting_down = false;
  bool reloading = false;
  std::vector<int> reload_ids;  // workers the reload in progress has yet to replace
  unique_function<void(std::error_code)> reload_done;
  std::vector<unique_function<void()>> shutdown_done;
  std::vector<unique_function<void()>> disconnect_done;
};

// A port the primary holds for its workers.
struct listener {
  listener(primary_state& p, policy k, std::string name) : owner(p), kind(k), key(std::move(name)) {}
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;
  ~listener() {
    close_socket(false);
    for (int connection : waiting) ::close(connection);
  }

  // Round robin: polls the socket while it may accept now.
  void watch() {
    if (!poll) return;
    if (backing_off || !waiting.empty()) {
      uv_poll_stop(poll);
      return;
    }
    uv_poll_start(poll, UV_READABLE, [](uv_poll_t* p, int status, int) {
      if (status == 0) static_cast<listener*>(p->data)->accept_ready();
    });
  }

  // Round robin: accepts what waits and hands each connection to the next
  // worker. dispatch() runs no callback (a send reports its failure on a
  // later turn) and never removes a listener, so this one outlives the loop.
  void accept_ready() {
    while (fd >= 0 && !backing_off && waiting.empty()) {
      int connection = tcp::detail::accept_connection(fd);
      if (connection < 0) {
        if (tcp::detail::out_of_descriptors(-connection)) back_off();
        return;  // EAGAIN: nothing more waits
      }
      owner.dispatch(*this, connection, true);
    }
  }

  // No descriptor to spare: the connections wait in the kernel's queue (or in
  // `waiting`), and accepting resumes after a pause rather than spinning.
  void back_off() {
    backing_off = true;
    watch();
    if (!pause) pause.emplace(owner.loop);
    pause->start(tcp::detail::no_descriptor_pause, {}, [this] {
      backing_off = false;
      owner.retry_waiting();
      watch();
    });
  }

  // Stops listening. At a shutdown, round robin first takes the connections
  // already in the kernel's queue and hands them out: closing the socket
  // would reset them.
  void close_socket(bool take_queued) {
    if (poll) {
      uv_close(reinterpret_cast<uv_handle_t*>(poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll = nullptr;
    }
    pause.reset();
    if (fd < 0) return;
    for (int connection; take_queued && (connection = tcp::detail::accept_connection(fd)) >= 0;)
      owner.dispatch(*this, connection, true);
    ::close(fd);
    fd = -1;
  }

  primary_state& owner;
  policy kind;
  std::string key;
  int fd = -1;  // listening (shared, round robin) or only bound (reuseport: holds the port); -1 once closed
  int port = 0;
  std::vector<int> workers;  // the workers serving it, in turn
  std::size_t next = 0;
  uv_poll_t* poll = nullptr;  // round robin: readable when connections wait; its own allocation
  std::optional<timer> pause;
  bool backing_off = false;
  std::deque<int> waiting;  // accepted; no descriptor was left for the channel's copy
};

primary_state::primary_state(crew::loop& l, settings s)
    : handle_state(l), link(std::make_shared<primary_state*>(this)), config(std::move(s)) {
  uv_timer_init(l.native(), &memory_check);
  if (config.restart.max_memory_bytes > 0) {
    uv_timer_start(&memory_check, [](uv_timer_t* t) { static_cast<primary_state*>(t->data)->check_memory(); }, 1000,
                   1000);
    uv_unref(uv());
  }
}

void primary_state::on_closing() noexcept {
  *link = nullptr;
  signals.clear();
  restarts.clear();
  listeners.clear();
  for (auto& [seq, h] : handoffs) ::close(h.fd);
  handoffs.clear();
  holding.clear();
  // Each child_process terminates its worker and hands it to the reaper.
  workers.clear();
  fork_event = {};
  online_event = {};
  disconnect_event = {};
  listening_event = {};
  message_event = {};
  exit_event = {};
  crash_loop_event = {};
  listen_error_event = {};
  // Completions still run, on a later turn: the primary is gone, so a reload
  // is cancelled, and a shutdown or disconnect is over (its workers terminated).
  if (reload_done) loop.later([done = std::move(reload_done)]() mutable { done(uv_error(UV_ECANCELED)); });
  for (auto* list : {&shutdown_done, &disconnect_done})
    for (auto& done : std::exchange(*list, {})) loop.later(std::move(done));
}

worker_process& primary_state::start(environment env, int restarts_so_far) {
  int id = next_id++;
  process_options options = config.process;
  for (const auto& [name, value] : env) options.extra_env[name] = value;
  options.extra_env["NODE_UNIQUE_ID"] = std::to_string(id);
  options.silent = config.silent;
  if (options.argv0.empty() && config.exec == "/proc/self/exe") options.argv0 = crew::detail::own_name();
  child_process process = crew::fork(config.exec, config.args, std::move(options), loop);
  auto owned = std::unique_ptr<worker_process>(new worker_process(*this, id, restarts_so_far, std::move(env),
                                                                  std::move(process)));
  worker_process& w = *owned;
  workers[id] = std::move(owned);
  // The primary answers its workers at once: no spin after each message.
  w.process_.channel().set_spin(std::chrono::microseconds(0));
  // These events come from the worker's own handles, which the block owns:
  // they never run once it is closed.
  w.process_.channel().on_internal_message([this, &w](message m) { control_message(w, std::move(m)); });
  w.process_.on_message([this, &w](message m) { fire(&primary_state::message_event, w, std::move(m)); });
  w.process_.on_disconnect([this, &w] { worker_disconnected(w); });
  w.process_.on_exit([this, id](exit_status status) { process_exited(id, status); });
  // A fork that failed (ENOENT, EMFILE) has no exit event: its error ends it.
  w.process_.on_error([this, id](std::error_code ec) { process_exited(id, {ec.value(), 0}); });
  if (fork_event)
    defer([this, id] {
      if (closing) return;
      if (auto it = workers.find(id); it != workers.end()) fire(&primary_state::fork_event, *it->second);
    });
  return w;
}

void primary_state::control_message(worker_process& w, message m) {
  for (int fd : m.fds()) ::close(fd);  // no control message of a worker carries one
  std::optional<control> c = wire::read_control(m.value());
  if (!c) return;
  switch (c->what) {
    case act::online:
      return fire(&primary_state::online_event, w);
    case act::query_server:
      return query_server(w, *c);
    case act::listening: {
      bool first = !w.listening_;
      w.listening_ = true;
      fire(&primary_state::listening_event, w, address{c->address, c->port, c->address_type});
      if (!closing && first && w.ready_) std::exchange(w.ready_, {})(true);
      return;
    }
    case act::answer:
      return settle(w, c->ack, c->accepted);
    case act::close:
      return leave(w.id(), &c->key);
    case act::exited_after_disconnect:
      // The worker disconnects itself: it refuses hand-offs from now on.
      w.exited_after_disconnect_ = w.stopping_ = w.disconnect_sent_ = true;
      return leave(w.id());
    case act::figures:
      w.requests_served_ = c->requests;
      return;
    case act::newconn:
    case act::disconnect:
      return;  // the primary's own words
  }
}

void primary_state::worker_disconnected(worker_process& w) {
  int id = w.id();
  leave(id);
  take_back_all(id);  // what it never answered goes to the others
  fire(&primary_state::disconnect_event, w);
  if (closing) return;
  if (w.exited_) return worker_exited(id, *w.exited_);
  send_due_disconnects();
  check_disconnected();
}

// The worker's process ended. Its channel may still hold its last words (a
// connection taken, a message): they are read to the end, which comes at once
// (the kernel closed the worker's side) unless some other process holds that
// side open, in which case the channel is closed after departure_limit. So the
// exit event always follows the disconnect event.
void primary_state::process_exited(int id, exit_status status) {
  auto it = workers.find(id);
  if (it == workers.end()) return;
  worker_process& w = *it->second;
  w.dead_ = true;
  w.kill_timer_.reset();
  leave(id);
  if (!w.process_.channel().is_open()) return worker_exited(id, status);
  w.exited_ = status;
  w.kill_timer_.emplace(loop);
  w.kill_timer_->start(departure_limit, {}, [this, id, status] {
    workers.at(id)->process_.channel().close();  // no disconnect event: the exit follows now
    worker_exited(id, status);
  });
}

void primary_state::worker_exited(int id, exit_status status) {
  auto it = workers.find(id);
  if (it == workers.end()) return;
  std::unique_ptr<worker_process> gone = std::move(it->second);
  workers.erase(it);
  take_back_all(id);
  bool expected = gone->exited_after_disconnect_ || gone->listen_failed_;
  auto lived = std::chrono::steady_clock::now() - gone->started_;
  fire(&primary_state::exit_event, *gone, status);
  if (closing) return;
  // A reload's replacement that died before listening is not restarted: the
  // worker it was to replace keeps serving, and the reload reports ESRCH.
  bool failed_replacement = static_cast<bool>(gone->ready_);
  if (failed_replacement) std::exchange(gone->ready_, {})(false);
  if (closing) return;
  if (gone->gone_) std::exchange(gone->gone_, {})();
  if (closing) return;
  if (!expected && !failed_replacement && config.restart.enabled && !shutting_down)
    schedule_restart(lived, gone->restarts_ + 1, gone->env_);
  if (closing) return;
  send_due_disconnects();
  check_disconnected();
  if (!closing) finish_shutdown();
  // `gone` goes here: its process has exited and its channel is closed.
}

// -- ports and hand-offs

void primary_state::query_server(worker_process& w, const control& request) {
  control reply{.what = act::answer, .ack = request.seq};
  std::string key =
      request.address + ":" + std::to_string(request.port) + ":" + std::to_string(request.address_type);
  auto it = listeners.find(key);
  if (shutting_down || w.disconnect_sent_) {
    reply.error = UV_ECANCELED;
  } else if (request.port < 0 || (!request.address.empty() && !tcp::detail::is_literal(request.address))) {
    reply.error = UV_EINVAL;
  } else if (it == listeners.end()) {
    auto l = std::make_unique<listener>(*this, config.scheduling, key);
    bool reuse = l->kind == policy::reuseport;
    result<int> fd = tcp::detail::bind_socket(
        request.address, request.port,
        {.backlog = reuse ? 0 : request.backlog, .reuse_port = reuse, .ipv6_only = request.ipv6_only});
    if (!fd) {
      reply.error = fd.error().value();  // libuv's negative code, as Node sends it
    } else {
      l->fd = *fd;
      result<tcp::address> bound = tcp::detail::endpoint_of(l->fd, false);
      l->port = bound ? bound->port : request.port;
      if (l->kind == policy::round_robin) {
        l->poll = new uv_poll_t;
        uv_poll_init(loop.native(), l->poll, l->fd);
        l->poll->data = l.get();
        l->watch();
      }
      it = listeners.emplace(key, std::move(l)).first;
    }
  }
  if (reply.error == 0) {
    listener& l = *it->second;
    if (std::find(l.workers.begin(), l.workers.end(), w.id()) == l.workers.end()) l.workers.push_back(w.id());
    reply.port = l.port;
    reply.key = key;
    reply.scheduling = l.kind;
  }
  message m(wire::write_control(reply));
  // Each worker gets its own copy of a shared listening socket.
  if (reply.error == 0 && reply.scheduling == policy::shared) m.fds().push_back(it->second->fd);
  w.process_.send(std::move(m));
  if (permanent(reply.error)) listen_failed(w, request, uv_error(reply.error));
}

// A port the primary cannot have is no crash to retry: the worker is not
// restarted, and without a listen_error handler the program ends, as an
// unhandled 'error' event ends a Node program.
void primary_state::listen_failed(worker_process& w, const control& request, std::error_code ec) {
  w.listen_failed_ = true;
  address at{request.address, request.port, request.address_type};
  if (listen_error_event) return fire(&primary_state::listen_error_event, w, at, ec);
  if (shutting_down) return;
  std::string host = at.host.empty() ? "*" : at.family == 6 ? "[" + at.host + "]" : at.host;
  std::fprintf(stderr, "cluster: cannot listen on %s:%d: %s (%s)\n", host.c_str(), at.port, error_name(ec).c_str(),
               ec.message().c_str());
  shutdown([] {
    std::fflush(nullptr);
    std::exit(1);
  });
}

// The next worker in turn that serves the port and has not refused the
// connection. A connection handed back may also go to a worker that is
// stopping but not yet told to disconnect (at a shutdown, all are): it
// still serves.
worker_process* primary_state::pick(listener& l, const std::vector<int>& refused, bool handed_back) {
  for (bool stopping_too : {false, true}) {
    if (stopping_too && !handed_back) break;
    for (std::size_t tries = 0; tries < l.workers.size(); ++tries) {
      int id = l.workers[l.next++ % l.workers.size()];
      auto it = workers.find(id);
      if (it == workers.end() || std::find(refused.begin(), refused.end(), id) != refused.end()) continue;
      worker_process& w = *it->second;
      if (!w.dead_ && !w.disconnect_sent_ && (stopping_too || !w.stopping_) && w.is_connected() && !full(w))
        return &w;
    }
  }
  return nullptr;
}

bool primary_state::full(const worker_process& w) const {
  auto it = holding.find(w.id());
  return it != holding.end() && it->second >= handoff_limit;
}

// Removes a hand-off that the worker took, refused or never got.
handoff primary_state::settled(std::map<long, handoff>::iterator it) {
  handoff h = std::move(it->second);
  handoffs.erase(it);
  if (auto held = holding.find(h.worker); held != holding.end() && --held->second == 0) holding.erase(held);
  return h;
}

// A fresh connection goes to a worker that is not stopping; one that waited
// or came back may also go to a stopping worker not yet told to disconnect.
void primary_state::dispatch(listener& l, int fd, bool fresh, std::vector<int> refused) {
  worker_process* target = pick(l, refused, !fresh);
  if (!target) {
    bool someone_will = std::any_of(l.workers.begin(), l.workers.end(), [this](int id) {
      auto it = workers.find(id);
      return it != workers.end() && full(*it->second);
    });
    if (someone_will) {
      // Every worker that could take it holds its fill: it waits for an answer.
      l.waiting.push_back(fd);
      l.watch();
    } else {
      ::close(fd);  // no worker can take it
    }
    return;
  }
  long seq = next_seq++;
  handoffs.emplace(seq, handoff{fd, target->id(), l.key, std::move(refused)});
  ++holding[target->id()];
  message m(wire::write_control({.what = act::newconn, .seq = seq, .key = l.key}));
  m.fds().push_back(fd);  // the channel sends its own copy: ours stays open until the worker answers
  target->process_.send(std::move(m), [to = link, seq](std::error_code ec) {
    if (*to) (*to)->handoff_sent(seq, ec);
  });
}

void primary_state::handoff_sent(long seq, std::error_code ec) {
  if (!ec) return;  // the worker holds it now; its answer settles the hand-off
  auto it = handoffs.find(seq);
  if (it == handoffs.end()) return;
  handoff h = settled(it);
  auto l = listeners.find(h.key);
  if (ec.value() == UV_EMFILE || ec.value() == UV_ENFILE) {
    // No descriptor was left for the channel's copy: the connection waits
    // until a hand-off settles (or a pause passes), and accepting waits too.
    if (l == listeners.end()) {
      ::close(h.fd);
    } else {
      l->second->waiting.push_front(h.fd);
      l->second->back_off();
    }
  } else {
    // ECONNABORTED: the worker refused it past Node's retries (its descriptor
    // table is full); anything else: its channel failed or closed.
    h.refused.push_back(h.worker);
    take_back(std::move(h));
  }
  send_due_disconnects();
}

void primary_state::settle(worker_process& w, long seq, bool accepted) {
  auto it = handoffs.find(seq);
  if (it == handoffs.end() || it->second.worker != w.id()) return;  // a worker answers only for its own
  handoff h = settled(it);
  if (accepted) {
    ::close(h.fd);  // the worker has its own copy
  } else {
    // It no longer serves that port (its server is closing).
    leave(w.id(), &h.key);
    h.refused.push_back(w.id());
    take_back(std::move(h));
  }
  retry_waiting();
  send_due_disconnects();
}

void primary_state::take_back(handoff h) {
  auto l = listeners.find(h.key);
  if (l == listeners.end())
    ::close(h.fd);
  else
    dispatch(*l->second, h.fd, false, std::move(h.refused));
}

void primary_state::take_back_all(int worker) {
  std::vector<handoff> back;
  for (auto it = handoffs.begin(); it != handoffs.end();) {
    if (it->second.worker != worker) {
      ++it;
      continue;
    }
    auto following = std::next(it);
    back.push_back(settled(it));
    back.back().refused.push_back(worker);
    it = following;
  }
  for (handoff& h : back) take_back(std::move(h));
}

// The worker no longer serves `key` (or any port): it gets no more
// connections there, and a port no worker serves is released, as Node's
// primary does.
void primary_state::leave(int worker, const std::string* key) {
  for (auto l = listeners.begin(); l != listeners.end();) {
    if (!key || l->first == *key) std::erase(l->second->workers, worker);
    l = l->second->workers.empty() ? listeners.erase(l) : std::next(l);
  }
}

void primary_state::retry_waiting() {
  for (auto& [key, l] : listeners) {
    if (l->waiting.empty()) continue;
    std::deque<int> again = std::exchange(l->waiting, {});
    for (int connection : again) dispatch(*l, connection, false);
    l->watch();
  }
}

// -- supervision

// Disconnects a worker: it gets no new connections at once, and is told to
// disconnect once it has answered for every connection handed to it (and,
// when no other worker is left to take one back, once every hand-off is
// settled); past kill_timeout it is killed.
void primary_state::stop(worker_process& w) {
  if (w.dead_ || w.stopping_) return;
  w.stopping_ = true;
  w.exited_after_disconnect_ = true;
  w.kill_timer_.emplace(loop);
  w.kill_timer_->start(config.process.kill_timeout, {}, [&w] { w.kill(SIGKILL); });
  send_due_disconnects();
}

void primary_state::send_due_disconnects() {
  bool others_serve = std::any_of(workers.begin(), workers.end(), [](const auto& each) {
    const worker_process& w = *each.second;
    return !w.dead_ && !w.stopping_ && !w.disconnect_sent_;
  });
  for (auto& [id, w] : workers) {
    if (!w->stopping_ || w->disconnect_sent_) continue;
    if (holding.contains(id) || (unsettled() && !others_serve)) continue;
    w->disconnect_sent_ = true;
    leave(id);
    w->process_.send(message(wire::write_control({.what = act::disconnect})));
  }
}

void primary_state::disconnect_all(unique_function<void()> done) {
  if (done) disconnect_done.push_back(std::move(done));
  for (auto& [id, w] : workers) stop(*w);
  defer([this] {
    if (!closing) check_disconnected();
  });
}

void primary_state::shutdown(unique_function<void()> done) {
  if (done) shutdown_done.push_back(std::move(done));
  if (!shutting_down) {
    shutting_down = true;
    restarts.clear();
    uv_timer_stop(&memory_check);
    // Every port stops accepting; round robin hands out what waited in its
    // queue first. The workers are told to disconnect once every hand-off is
    // taken (send_due_disconnects()).
    for (auto& [key, l] : listeners) l->close_socket(true);
    for (auto& [id, w] : workers) stop(*w);
  }
  defer([this] {
    if (!closing) finish_shutdown();
  });
}

void primary_state::reload(unique_function<void(std::error_code)> done) {
  if (reloading || shutting_down) {
    if (done)
      defer([done = std::move(done)]() mutable { done(uv_error(UV_EALREADY)); });
    return;
  }
  reloading = true;
  reload_done = std::move(done);
  for (auto& [id, w] : workers)
    if (!w->stopping_ && !w->replacing_) reload_ids.push_back(id);
  defer([this] {
    if (!closing) reload_next();
  });
}

// Whether a connection accepted is not yet taken by a worker.
bool primary_state::unsettled() const {
  return !handoffs.empty() ||
         std::any_of(listeners.begin(), listeners.end(), [](const auto& l) { return !l.second->waiting.empty(); });
}

void primary_state::check_disconnected() {
  if (disconnect_done.empty()) return;
  for (auto& [id, w] : workers)
    if (w->is_connected()) return;
  for (auto& done : std::exchange(disconnect_done, {})) {
    loop.invoke(done);
    if (closing) return;
  }
}

void primary_state::finish_shutdown() {
  if (!shutting_down || !workers.empty()) return;
  for (auto& done : std::exchange(shutdown_done, {})) {
    loop.invoke(done);
    if (closing) return;
  }
}

// Starts old's replacement; once it listens, old is disconnected and done(true)
// runs when old has exited. done(false) if the replacement exits first.
void primary_state::replace(worker_process& old, unique_function<void(bool)> done) {
  int old_id = old.id();
  old.replacing_ = true;
  worker_process& fresh = start(old.env_, old.restarts_ + 1);
  fresh.ready_ = [this, old_id, done = std::move(done)](bool listening) mutable {
    auto it = workers.find(old_id);
    if (it != workers.end()) it->second->replacing_ = listening;
    if (!listening || it == workers.end()) return done(listening);
    it->second->gone_ = [done = std::move(done)]() mutable { done(true); };
    stop(*it->second);
  };
}

void primary_state::reload_next() {
  if (shutting_down) return finish_reload(uv_error(UV_ECANCELED));
  std::erase_if(reload_ids, [this](int id) {
    auto it = workers.find(id);
    return it == workers.end() || it->second->stopping_ || it->second->replacing_;
  });
  if (reload_ids.empty()) return finish_reload({});
  worker_process& old = *workers[reload_ids.front()];
  reload_ids.erase(reload_ids.begin());
  replace(old, [this](bool replaced) {
    if (shutting_down) return finish_reload(uv_error(UV_ECANCELED));
    if (!replaced) return finish_reload(uv_error(UV_ESRCH));
    reload_next();
  });
}

void primary_state::finish_reload(std::error_code ec) {
  reloading = false;
  reload_ids.clear();
  if (auto done = std::move(reload_done)) loop.invoke(done, ec);
}

void primary_state::check_memory() {
  if (shutting_down) return;
  for (auto& [id, w] : workers) {
    bool busy = w->stopping_ || w->replacing_ || !w->listening_;
    if (!busy && crew::detail::resident_bytes(w->pid()) > config.restart.max_memory_bytes) replace(*w, [](bool) {});
  }
}

void primary_state::schedule_restart(std::chrono::steady_clock::duration lived, int restarts_so_far, environment env) {
  const restart_policy& r = config.restart;
  if (lived >= r.stable_after) crashes_in_a_row = 0;
  if (++crashes_in_a_row > r.max_restarts) {
    if (crashes_in_a_row == r.max_restarts + 1) fire(&primary_state::crash_loop_event);
    return;
  }
  // 100 ms, 200 ms, 400 ms... up to max_delay.
  auto delay = r.first_delay;
  for (int i = 1; i < crashes_in_a_row && delay < r.max_delay; ++i) delay *= 2;
  delay = std::min(delay, r.max_delay);
  timer& t = restarts.emplace_back(loop);
  auto at = std::prev(restarts.end());
  t.start(delay, {}, [this, at, restarts_so_far, env = std::move(env)]() mutable {
    start(std::move(env), restarts_so_far);
    restarts.erase(at);  // this timer: safe from its own callback
  });
}

}  // namespace detail

// -- worker_process

worker_figures worker_process::figures() const {
  return {.id = id_,
          .pid = pid(),
          .uptime = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_),
          .restarts = restarts_,
          .memory_bytes = dead_ ? 0 : crew::detail::resident_bytes(pid()),
          .requests_served = requests_served_};
}

void worker_process::disconnect() { owner_.stop(*this); }

// -- primary

primary::primary(settings s, loop& l) { adopt(new detail::primary_state(l, std::move(s))); }

detail::primary_state* primary::state() const noexcept { return state_as<detail::primary_state>(); }

worker_process& primary::fork(environment extra_env) {
  detail::primary_state* s = state();
  if (!s) throw std::system_error(uv_error(UV_EBADF), "cluster::primary::fork");
  return s->start(std::move(extra_env), 0);
}

void primary::on_fork(worker_event fn) {
  if (auto* s = state()) s->fork_event = std::move(fn);
}
void primary::on_online(worker_event fn) {
  if (auto* s = state()) s->online_event = std::move(fn);
}
void primary::on_listening(unique_function<void(worker_process&, const address&)> fn) {
  if (auto* s = state()) s->listening_event = std::move(fn);
}
void primary::on_message(unique_function<void(worker_process&, message)> fn) {
  if (auto* s = state()) s->message_event = std::move(fn);
}
void primary::on_disconnect(worker_event fn) {
  if (auto* s = state()) s->disconnect_event = std::move(fn);
}
void primary::on_exit(unique_function<void(worker_process&, exit_status)> fn) {
  if (auto* s = state()) s->exit_event = std::move(fn);
}
void primary::on_crash_loop(unique_function<void()> fn) {
  if (auto* s = state()) s->crash_loop_event = std::move(fn);
}
void primary::on_listen_error(unique_function<void(worker_process&, const address&, std::error_code)> fn) {
  if (auto* s = state()) s->listen_error_event = std::move(fn);
}

const std::map<int, std::unique_ptr<worker_process>>& primary::workers() const noexcept {
  static const std::map<int, std::unique_ptr<worker_process>> none;
  detail::primary_state* s = state();
  return s ? s->workers : none;
}

std::vector<worker_figures> primary::figures() const {
  std::vector<worker_figures> all;
  for (const auto& [id, w] : workers()) all.push_back(w->figures());
  return all;
}

// A completion on a closed primary: nothing to wait for, on the next turn.
template <class... Args>
static void finished(unique_function<void(Args...)> done, Args... args) {
  if (done) loop::current().later([done = std::move(done), args...]() mutable { done(args...); });
}

void primary::disconnect(unique_function<void()> done) {
  if (detail::primary_state* s = state()) return s->disconnect_all(std::move(done));
  finished(std::move(done));
}

void primary::shutdown(unique_function<void()> done) {
  if (detail::primary_state* s = state()) return s->shutdown(std::move(done));
  finished(std::move(done));
}

void primary::reload(unique_function<void(std::error_code)> done) {
  if (detail::primary_state* s = state()) return s->reload(std::move(done));
  finished(std::move(done), uv_error(UV_ECANCELED));
}

void primary::handle_signals() {
  detail::primary_state* s = state();
  if (!s) return;
  s->signals.push_back(on_signal(SIGTERM, [s](int) { s->shutdown({}); }, s->loop));
  s->signals.push_back(on_signal(SIGINT, [s](int) { s->shutdown({}); }, s->loop));
  s->signals.push_back(on_signal(SIGHUP, [s](int) { s->reload({}); }, s->loop));
}

}  // namespace crew::cluster
