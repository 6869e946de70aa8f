#include "crew/cluster.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

#include "crew/ipc.hpp"

namespace crew::cluster {
namespace {

using json = message::value_type;

// NODE_UNIQUE_ID, read and removed from the environment before main(), as
// Node's worker bootstrap does, so the worker's own children do not inherit it.
int read_unique_id() {
  const char* id = std::getenv("NODE_UNIQUE_ID");
  if (!id) return 0;
  int value = std::atoi(id);
  unsetenv("NODE_UNIQUE_ID");
  return value;
}
const int unique_id = read_unique_id();

json control(std::string act) { return json{{"cmd", "NODE_CLUSTER"}, {"act", std::move(act)}}; }

// A TCP socket bound to host:port (listening unless `listen_backlog` is 0).
result<int> bound_socket(const std::string& host, int port, bool reuse_port, int listen_backlog) {
  if (port < 0 || port > 65535) return uv_error(UV_EINVAL);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_error(-errno);
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) {
    ::close(fd);
    return uv_error(UV_EINVAL);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      (listen_backlog > 0 && ::listen(fd, listen_backlog) != 0)) {
    int error = errno;
    ::close(fd);
    return uv_error(-error);
  }
  return fd;
}

int port_of(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// Worker side: the servers listening through the primary, by key, and the
// answers awaited, by sequence number.
struct worker_side {
  std::map<std::string, http::server*> servers;
  std::map<long, detail::unique_function<void(message)>> awaiting;
  std::vector<loop::keep_alive> round_robin;  // a round-robin server listens through the primary: nothing of ours keeps the loop
  long next_seq = 1;
  bool hooked = false;

  static worker_side& get() {
    static worker_side* side = new worker_side;  // never destroyed: it refers to the loop, which may go first
    return *side;
  }

  void hook(ipc_channel& channel) {
    if (hooked) return;
    hooked = true;
    // The primary is gone: a worker has nothing left to serve for (Node exits
    // with 0). Its loop stops, so main() carries on after run() and returns.
    channel.on_disconnect([this] {
      servers.clear();
      round_robin.clear();
      awaiting.clear();
      loop::current().stop();
    });
    channel.on_internal_message([this, &channel](message m) {
      const json& v = m.value();
      if (v.value("cmd", "") != "NODE_CLUSTER") return;
      if (v.contains("ack")) {
        auto it = awaiting.find(v["ack"].get<long>());
        if (it == awaiting.end()) return;
        auto fn = std::move(it->second);
        awaiting.erase(it);
        return fn(std::move(m));
      }
      if (v.value("act", "") == "newconn" && !m.fds().empty()) {
        auto it = servers.find(v.value("key", ""));
        bool accepted = it != servers.end() && !it->second->serve_fd(m.fds()[0]);
        if (!accepted) ::close(m.fds()[0]);
        json reply = control("accepted");
        reply["ack"] = v.value("seq", 0L);
        reply["accepted"] = accepted;
        channel.send(std::move(reply));
      }
    });
  }
};

}  // namespace

// A worker reports online the first time it asks what it is (every cluster
// program asks first thing), as Node's worker does at bootstrap.
void announce_online() noexcept {
  static bool announced = false;
  if (announced || unique_id == 0) return;
  announced = true;
  if (ipc_channel* channel = parent_channel()) channel->send(control("online"));
}

bool is_worker() noexcept {
  announce_online();
  return unique_id != 0;
}

bool is_primary() noexcept { return !is_worker(); }
int worker_id() noexcept { return unique_id; }

void worker_process::disconnect() {
  exited_after_disconnect_ = true;
  process_.channel().disconnect();
}

// A port the primary holds for its workers.
struct primary::listener {
  policy kind;
  int fd = -1;  // listening (shared, round robin) or only bound (reuseport, to hold the port)
  int port = 0;
  std::string key;
  std::vector<int> workers;  // the workers serving it (round robin: in turn)
  std::size_t next = 0;
  uv_poll_t* poll = nullptr;  // round robin: readable when a connection waits
  primary* owner = nullptr;

  ~listener() {
    if (poll) uv_close(reinterpret_cast<uv_handle_t*>(poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    if (fd >= 0) ::close(fd);
  }

  // Round robin: accept what waits and hand each connection to the next worker.
  void dispatch() {
    for (;;) {
      int connection = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (connection < 0) return;  // EAGAIN, or EMFILE: the rest waits in the kernel's queue
      worker_process* target = nullptr;
      for (std::size_t tries = 0; tries < workers.size() && !target; ++tries) {
        int id = workers[next++ % workers.size()];
        auto it = owner->workers_.find(id);
        if (it != owner->workers_.end() && !it->second->is_dead()) target = it->second.get();
      }
      if (!target) {
        ::close(connection);
        continue;
      }
      message m(control("newconn"));
      m.value()["key"] = key;
      m.fds().push_back(connection);
      // The worker gets its own copy of the descriptor; ours closes once it is sent.
      target->process_.channel().send(std::move(m), [connection](std::error_code) { ::close(connection); });
    }
  }
};

primary::primary(settings s, loop& l) : settings_(std::move(s)), loop_(l) {}

primary::~primary() = default;

worker_process& primary::fork(environment extra_env) {
  int id = next_id_++;
  extra_env["NODE_UNIQUE_ID"] = std::to_string(id);
  child_process process =
      crew::fork(settings_.exec, settings_.args, {.extra_env = std::move(extra_env), .silent = settings_.silent}, loop_);
  auto owned = std::unique_ptr<worker_process>(new worker_process(id, std::move(process)));
  worker_process& w = *owned;
  workers_[id] = std::move(owned);
  w.process_.channel().on_internal_message([this, &w](message m) { handle_internal(w, std::move(m)); });
  w.process_.on_message([this, &w](message m) {
    if (on_message_) on_message_(w, std::move(m));
  });
  w.process_.on_disconnect([this, &w] {
    if (on_disconnect_) on_disconnect_(w);
  });
  w.process_.on_exit([this, id](exit_status status) {
    auto it = workers_.find(id);
    if (it == workers_.end()) return;
    std::unique_ptr<worker_process> gone = std::move(it->second);
    workers_.erase(it);
    gone->dead_ = true;
    // A port no worker serves any more is released, as Node's primary does.
    for (auto l = listeners_.begin(); l != listeners_.end();) {
      std::erase(l->second->workers, id);
      l = l->second->workers.empty() ? listeners_.erase(l) : std::next(l);
    }
    bool expected = gone->exited_after_disconnect_;
    auto lived = std::chrono::steady_clock::now() - gone->started_;
    if (on_exit_) on_exit_(*gone, status);
    if (!expected && settings_.restart.enabled) schedule_restart(lived);
    // `gone` dies here: its process handle closes after its exit was reported.
  });
  if (on_fork_) loop_.post([this, id] {
    if (auto it = workers_.find(id); it != workers_.end() && on_fork_) on_fork_(*it->second);
  });
  return w;
}

void primary::schedule_restart(std::chrono::steady_clock::duration lived) {
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
  raw->start(delay, {}, [this, raw] {
    fork();
    std::erase_if(restarts_, [raw](const auto& p) { return p.get() == raw; });  // this timer: safe from its own callback
  });
}

void primary::handle_internal(worker_process& w, message m) {
  const json& v = m.value();
  if (v.value("cmd", "") != "NODE_CLUSTER") return;
  std::string act = v.value("act", "");
  if (act == "online") {
    if (on_online_) on_online_(w);
  } else if (act == "queryServer") {
    query_server(w, v);
  } else if (act == "listening") {
    if (on_listening_) on_listening_(w, v.value("port", 0));
  }
}

void primary::query_server(worker_process& w, const json& request) {
  std::string host = request.value("address", "127.0.0.1");
  int port = request.value("port", 0);
  std::string key = host + ":" + std::to_string(port);
  json reply = control("queryServer");
  reply["ack"] = request.value("seq", 0L);
  reply["key"] = key;

  auto it = listeners_.find(key);
  if (it == listeners_.end()) {
    auto l = std::make_unique<listener>();
    l->kind = settings_.scheduling;
    l->key = key;
    l->owner = this;
    bool reuse = l->kind == policy::reuseport;
    result<int> fd = bound_socket(host, port, reuse, reuse ? 0 : 511);
    if (!fd) {
      reply["errno"] = fd.error().value();  // libuv's negative code, as Node sends it
      w.process_.channel().send(std::move(reply));
      return;
    }
    l->fd = *fd;
    l->port = port_of(l->fd);
    if (l->kind == policy::round_robin) {
      l->poll = new uv_poll_t;
      uv_poll_init(loop_.native(), l->poll, l->fd);
      l->poll->data = l.get();
      uv_poll_start(l->poll, UV_READABLE, [](uv_poll_t* p, int status, int) {
        if (status == 0) static_cast<listener*>(p->data)->dispatch();
      });
    }
    it = listeners_.emplace(key, std::move(l)).first;
  }
  listener& l = *it->second;
  reply["port"] = l.port;
  l.workers.push_back(w.id());
  switch (l.kind) {
    case policy::round_robin:
      reply["policy"] = "round_robin";
      w.process_.channel().send(std::move(reply));
      break;
    case policy::shared: {
      reply["policy"] = "shared";
      message m(std::move(reply));
      m.fds().push_back(l.fd);  // each worker gets its own copy of the listening socket
      w.process_.channel().send(std::move(m));
      break;
    }
    case policy::reuseport:
      reply["policy"] = "reuseport";
      w.process_.channel().send(std::move(reply));
      break;
  }
}

void listen(http::server& server, int port, detail::unique_function<void(result<int>)> done, const std::string& host) {
  ipc_channel* channel = is_worker() ? parent_channel() : nullptr;
  if (!channel) {
    result<int> r = server.listen(port, host);
    loop::current().post([done = std::move(done), r]() mutable { done(r); });
    return;
  }
  worker_side& side = worker_side::get();
  side.hook(*channel);
  long seq = side.next_seq++;
  json request = control("queryServer");
  request["seq"] = seq;
  request["address"] = host;
  request["port"] = port;
  request["addressType"] = 4;
  side.awaiting[seq] = [&server, channel, done = std::move(done), host,
                        hold = loop::keep_alive(loop::current())](message reply) mutable {
    const json& v = reply.value();
    if (v.contains("errno")) return done(uv_error(v["errno"].get<int>()));
    int bound = v.value("port", 0);
    std::string kind = v.value("policy", "");
    std::error_code ec;
    if (kind == "shared") {
      ec = reply.fds().empty() ? uv_error(UV_EBADF) : server.listen_fd(reply.fds()[0]);
    } else if (kind == "reuseport") {
      result<int> fd = bound_socket(host, bound, true, 511);
      ec = fd ? server.listen_fd(*fd) : fd.error();
    } else {  // round robin: connections arrive as newconn messages
      worker_side::get().servers[v.value("key", "")] = &server;
      worker_side::get().round_robin.push_back(std::move(hold));
    }
    if (!ec) {
      json listening = control("listening");
      listening["port"] = bound;
      channel->send(std::move(listening));
    }
    if (ec) return done(ec);
    done(bound);
  };
  channel->send(std::move(request));
}

}  // namespace crew::cluster
