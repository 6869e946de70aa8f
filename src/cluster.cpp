// The worker's side of the cluster (the primary's is in cluster_primary.cpp).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <climits>
#include <csignal>
#include <cstdlib>

#include "crew/cluster.hpp"
#include "crew/ipc.hpp"
#include "detail/cluster_wire.hpp"

namespace crew::cluster {
namespace wire {

result<int> bound_socket(const std::string& host, int port, bool reuse_port, int backlog) {
  if (port < 0 || port > 65535) return uv_error(UV_EINVAL);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) return uv_error(UV_EINVAL);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_error(-errno);
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      (backlog > 0 && ::listen(fd, backlog) != 0)) {
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

}  // namespace wire

std::string_view policy_name(policy p) noexcept {
  switch (p) {
    case policy::shared: return "shared";
    case policy::reuseport: return "reuseport";
    case policy::round_robin: break;
  }
  return "round_robin";
}

std::optional<policy> policy_named(std::string_view name) noexcept {
  for (policy p : {policy::round_robin, policy::shared, policy::reuseport})
    if (policy_name(p) == name) return p;
  return std::nullopt;
}

namespace {

using json = message::value_type;
using wire::control;
using wire::number_at;
using wire::text_at;

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

// A worker's cluster state: its servers, the answers it awaits from the
// primary, and its disconnect in progress.
struct worker_side {
  ipc_channel* channel = nullptr;  // null outside a cluster
  std::vector<http::server*> servers;                     // listening through listen()
  std::map<std::string, http::server*> round_robin;       // by the primary's key: connections arrive as messages
  std::map<long, unique_function<void(message)>> awaiting;  // by sequence number
  loop::keep_alive hold;  // a round-robin server has no listener of its own to keep the loop going
  long next_seq = 1;
  bool disconnecting = false;
  std::vector<unique_function<void()>> disconnected;  // disconnect()'s callers
  std::uint64_t closed_served = 0;  // requests served by servers already closed
  std::uint64_t reported = 0;
  std::unique_ptr<timer> report;
  std::vector<signal_watcher> signals;

  static worker_side& get() {
    static worker_side* side = [] {
      auto* s = new worker_side;  // never destroyed: the loop's own end closes its handles
      if (unique_id != 0) s->channel = parent_channel();
      if (s->channel) {
        s->hook();
        s->channel->send(control("online"));
      }
      return s;
    }();
    return *side;
  }

  std::uint64_t served() const {
    std::uint64_t total = closed_served;
    for (http::server* s : servers) total += s->requests_served();
    return total;
  }

  // Each second, the requests served so far (the primary's figures), if changed.
  void report_figures() {
    std::uint64_t now = served();
    if (now == reported || !channel) return;
    reported = now;
    json figures = control("crew:figures");
    figures["requests"] = now;
    channel->send(std::move(figures));
  }

  void hook() {
    // The primary is gone, or our own disconnect finished: the worker has
    // nothing left to serve for. Its loop stops, so main() carries on after run().
    channel->on_disconnect([this] {
      round_robin.clear();
      awaiting.clear();
      hold = {};
      report.reset();
      loop::current().stop();
      for (auto& done : std::exchange(disconnected, {})) done();
    });
    channel->on_internal_message([this](message m) {
      const json& v = m.value();
      if (text_at(v, "cmd") != "NODE_CLUSTER") return;
      if (v.contains("ack")) {
        auto it = awaiting.find(number_at(v, "ack"));
        if (it == awaiting.end()) return;
        auto fn = std::move(it->second);
        awaiting.erase(it);
        return fn(std::move(m));
      }
      std::string act = text_at(v, "act");
      if (act == "newconn") return accept(v, m);
      if (act == "disconnect") begin_disconnect(false);
    });
  }

  // A connection handed over by the round-robin primary. A worker that no
  // longer serves that port refuses it, and the primary hands it to another.
  void accept(const json& v, message& m) {
    if (m.fds().empty()) return;
    int fd = m.fds()[0];
    auto it = round_robin.find(text_at(v, "key"));
    bool served = it != round_robin.end() && !disconnecting;
    // adopt_connection takes the fd, also when it fails.
    bool accepted = served && !it->second->tcp().adopt_connection(fd);
    if (!served) ::close(fd);
    json reply = control("accepted");
    reply["ack"] = number_at(v, "seq");
    reply["accepted"] = accepted;
    channel->send(std::move(reply));
  }

  // Node's worker._disconnect: close every server, then the channel.
  void begin_disconnect(bool worker_initiated) {
    if (disconnecting) return;
    disconnecting = true;
    // Tell the primary first, so that it stops handing over connections and
    // does not restart this worker when it exits.
    if (worker_initiated && channel) channel->send(control("exitedAfterDisconnect"));
    auto pending = std::make_shared<std::size_t>(servers.size() + 1);
    auto one_closed = [this, pending] {
      if (--*pending > 0) return;
      report_figures();
      if (channel && channel->connected())
        channel->disconnect();  // on_disconnect above finishes
      else
        for (auto& done : std::exchange(disconnected, {})) done();
    };
    for (http::server* s : std::exchange(servers, {})) {
      closed_served += s->requests_served();
      s->close(one_closed);
    }
    loop::current().post(one_closed);  // the "+ 1": never finishes inside this call
  }
};

}  // namespace

// A worker reports online the first time it asks what it is or listens (every
// cluster program does one of them first thing), as Node's worker does at bootstrap.
bool is_worker() noexcept {
  worker_side::get();
  return unique_id != 0;
}

bool is_primary() noexcept { return !is_worker(); }
int worker_id() noexcept { return unique_id; }

std::string exec_path() {
  char path[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) return "/proc/self/exe";
  std::string text(path, static_cast<std::size_t>(n));
  // A program replaced on disk since it started reads as "path (deleted)":
  // the path is where the new one is.
  constexpr std::string_view deleted = " (deleted)";
  if (text.ends_with(deleted)) text.resize(text.size() - deleted.size());
  return text;
}

void listen(http::server& server, int port, unique_function<void(result<int>)> done,
            const std::string& host) {
  worker_side& side = worker_side::get();
  if (!side.channel) {
    result<int> r = server.listen(port, host);
    if (r) side.servers.push_back(&server);
    loop::current().post([done = std::move(done), r]() mutable { done(r); });
    return;
  }
  long seq = side.next_seq++;
  json request = control("queryServer");
  request["seq"] = seq;
  request["address"] = host;
  request["port"] = port;
  request["addressType"] = 4;
  side.awaiting[seq] = [&side, &server, done = std::move(done), host,
                        hold = loop::keep_alive(loop::current())](message reply) mutable {
    const json& v = reply.value();
    if (v.contains("errno")) return done(uv_error(static_cast<int>(number_at(v, "errno", UV_EINVAL))));
    int bound = static_cast<int>(number_at(v, "port"));
    std::optional<policy> kind = policy_named(text_at(v, "policy"));
    std::error_code ec;
    if (kind == policy::shared) {
      ec = reply.fds().empty() ? uv_error(UV_EBADF) : server.tcp().listen_fd(reply.fds()[0]);
    } else if (kind == policy::reuseport) {
      result<int> fd = wire::bound_socket(host, bound, true, 511);
      ec = fd ? server.tcp().listen_fd(*fd) : fd.error();
    } else {
      side.round_robin[text_at(v, "key")] = &server;
      side.hold = std::move(hold);
    }
    if (ec) return done(ec);
    side.servers.push_back(&server);
    json listening = control("listening");
    listening["addressType"] = 4;
    listening["address"] = host;
    listening["port"] = bound;
    side.channel->send(std::move(listening));
    if (!side.report) {
      side.report = std::make_unique<timer>();
      side.report->start(std::chrono::seconds(1), std::chrono::seconds(1), [&side] { side.report_figures(); });
      side.report->unref();
    }
    done(bound);
  };
  side.channel->send(std::move(request));
}

void disconnect(unique_function<void()> done) {
  worker_side& side = worker_side::get();
  if (done) side.disconnected.push_back(std::move(done));
  side.begin_disconnect(true);
}

void handle_signals() {
  worker_side& side = worker_side::get();
  for (int signum : {SIGTERM, SIGINT}) side.signals.push_back(on_signal(signum, [](int) { disconnect(); }));
}

}  // namespace crew::cluster
