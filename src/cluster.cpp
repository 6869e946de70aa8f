// The worker's side of the cluster (the primary's is in cluster_primary.cpp).
//
// The side is a heap block of the loop it runs on (docs/lifetime.md): made
// when the cluster is first used on a thread, closed with that loop. It keeps
// no pointer to a server object: its registry holds each tcp::server's block,
// which stays put when the server moves, and the block's closed_hook tells it
// when the server closes or is destroyed.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <csignal>
#include <cstdlib>

#include "crew/cluster.hpp"
#include "crew/ipc.hpp"
#include "crew/signal.hpp"
#include "detail/cluster_wire.hpp"
#include "detail/proc.hpp"
#include "detail/tcp_state.hpp"

namespace crew::cluster {

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

using wire::act;
using wire::control;
using server_block = tcp::detail::server_state;

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

// The channel to the primary goes to the first side made (the main thread's,
// in practice): a side on another thread works as outside a cluster.
std::atomic<bool> channel_claimed{false};

// A server that listens through listen(), or waits for the primary's answer.
struct registered {
  server_block* block;
  std::string host;
  int port = 0;               // as asked for (0: any)
  std::string key;            // the primary's name for the port; round robin: connections arrive by it
  long seq = -1;              // the queryServer awaiting its answer; -1 once answered
  unique_function<void(result<int>)> done;  // listen()'s, until the answer
  loop::keep_alive hold;      // the answer, and round robin's connections, come by the channel only
  std::uint64_t served = 0;   // what it had served when last read
};

struct worker_side final : crew::detail::handle_state {
  explicit worker_side(crew::loop& l);
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&report); }
  void on_closing() noexcept override;

  static worker_side& current();

  registered* find(server_block* block);
  void add(registered entry);
  void control_message(message m);
  void answered(const control& c, int fd);
  void take_connection(const control& c, int fd);
  void server_closed(server_block* block);
  void channel_ended();
  void begin_disconnect(bool worker_initiated);
  void finish_disconnect();
  std::uint64_t served(registered& r);
  void report_figures();
  void send(const control& c);

  uv_timer_t report;  // the figures, each second while serving
  std::shared_ptr<worker_side*> link;  // null once closed: the channel may outlive the side
  ipc_channel* channel = nullptr;      // null outside a cluster
  std::vector<registered> servers;
  long next_seq = 1;
  bool disconnecting = false;
  bool finishing = false;
  bool ended = false;  // the disconnect is over
  std::vector<unique_function<void()>> disconnected;  // disconnect()'s callers
  std::uint64_t closed_served = 0;  // what servers already closed served
  std::uint64_t reported = 0;
  bool reporting = false;
  std::vector<signal_watcher> signals;
};

thread_local worker_side* side_of_thread = nullptr;

worker_side::worker_side(crew::loop& l) : handle_state(l), link(std::make_shared<worker_side*>(this)) {
  uv_timer_init(l.native(), &report);
  attach(nullptr);  // the loop's: it closes the side with itself
  if (unique_id == 0 || channel_claimed.exchange(true)) return;
  channel = parent_channel();
  if (!channel) return;
  channel->on_internal_message([to = link](message m) {
    if (*to) (*to)->control_message(std::move(m));
  });
  // The primary is gone, or our own disconnect finished.
  channel->on_disconnect([to = link] {
    if (*to) (*to)->channel_ended();
  });
  send({.what = act::online});
}

// Only the loop's destruction closes the side: completions are dropped then,
// as the loop drops its posts.
void worker_side::on_closing() noexcept {
  if (side_of_thread == this) side_of_thread = nullptr;
  *link = nullptr;
  for (registered& r : servers) r.block->closed_hook = nullptr;
  servers.clear();
  disconnected.clear();
  signals.clear();
}

worker_side& worker_side::current() {
  if (!side_of_thread) side_of_thread = new worker_side(loop::current());
  return *side_of_thread;
}

registered* worker_side::find(server_block* block) {
  auto it = std::find_if(servers.begin(), servers.end(), [block](const registered& r) { return r.block == block; });
  return it == servers.end() ? nullptr : &*it;
}

void worker_side::add(registered entry) {
  server_block* block = entry.block;
  servers.push_back(std::move(entry));
  block->closed_hook = [to = link, block] {
    if (*to) (*to)->server_closed(block);
  };
}

void worker_side::send(const control& c) {
  if (channel) channel->send(message(wire::write_control(c)));
}

void worker_side::control_message(message m) {
  int fd = m.fds().empty() ? -1 : m.fds()[0];
  for (std::size_t i = 1; i < m.fds().size(); ++i) ::close(m.fds()[i]);
  std::optional<control> c = wire::read_control(m.value());
  if (c && c->what == act::answer) return answered(*c, fd);
  if (c && c->what == act::newconn) return take_connection(*c, fd);
  if (fd >= 0) ::close(fd);
  if (c && c->what == act::disconnect) begin_disconnect(false);
}

// The primary's answer to a queryServer.
void worker_side::answered(const control& c, int fd) {
  registered* r = nullptr;
  for (registered& each : servers)
    if (each.seq == c.ack && c.ack >= 0) r = &each;
  if (!r) {
    // The server closed meanwhile: the primary must not count on this worker.
    if (fd >= 0) ::close(fd);
    if (c.error == 0) send({.what = act::close, .key = c.key});
    return;
  }
  server_block* block = r->block;
  tcp::server* server = tcp::detail::server_of(block);
  std::error_code ec = c.error != 0 ? uv_error(c.error) : std::error_code{};
  if (!ec && !server) ec = uv_error(UV_ECANCELED);  // closing already
  // A primary that leaves the port out of its answer is taken to have bound
  // the one asked for; a shared socket tells its own.
  int port = c.port >= 0 ? c.port : r->port > 0 ? r->port : -1;
  if (!ec && port < 0 && c.scheduling != policy::shared) ec = uv_error(UV_EPROTO);
  if (!ec && c.scheduling == policy::shared) {
    // A server accepts every connection waiting when woken, so on a shared
    // socket the first worker to wake would take a whole burst: each worker
    // takes one per wake-up instead, and the burst spreads.
    block->single_accept = true;
    ec = fd < 0 ? uv_error(UV_EBADF) : server->listen_fd(fd);  // takes the fd, also on error
    fd = -1;
    if (!ec && port < 0) {
      result<tcp::address> own = server->local_address();
      if (own) port = own->port;
      else ec = own.error();
    }
  } else if (!ec && c.scheduling == policy::reuseport) {
    result<int> own = tcp::detail::bind_socket(
        r->host, port,
        {.backlog = block->options.backlog, .reuse_port = true, .ipv6_only = block->options.ipv6_only});
    ec = own ? server->listen_fd(*own) : own.error();
  }
  if (fd >= 0) ::close(fd);
  auto done = std::move(r->done);
  r->seq = -1;
  r->key = c.key;
  if (c.scheduling != policy::round_robin || ec) r->hold = {};  // its own socket keeps the loop going
  if (ec) {
    block->closed_hook = nullptr;
    std::erase_if(servers, [block](const registered& each) { return each.block == block; });
    if (c.error == 0) send({.what = act::close, .key = c.key});
  } else {
    std::string host = r->host;
    send({.what = act::listening,
          .address = host,
          .port = port,
          .address_type = host.find(':') == std::string::npos ? 4 : 6});
    if (!reporting) {
      reporting = true;
      uv_timer_start(&report, [](uv_timer_t* t) { static_cast<worker_side*>(t->data)->report_figures(); }, 1000, 1000);
      uv_unref(uv());
    }
  }
  if (done) loop.invoke(done, ec ? result<int>(ec) : result<int>(port));
}

// A connection the round-robin primary hands over. A worker that no longer
// serves that port refuses it, and the primary hands it to another.
void worker_side::take_connection(const control& c, int fd) {
  tcp::server* server = nullptr;
  if (!disconnecting)
    for (registered& r : servers)
      if (r.seq < 0 && r.key == c.key) server = tcp::detail::server_of(r.block);
  bool accepted = false;
  if (fd >= 0 && server)
    accepted = !server->adopt_connection(fd);  // takes the fd, also on error
  else if (fd >= 0)
    ::close(fd);
  send({.what = act::answer, .ack = c.seq, .accepted = accepted});
}

std::uint64_t worker_side::served(registered& r) {
  server_block* b = r.block;
  r.served = std::max(r.served, b->served_hook ? b->served_hook() : b->taken);
  return r.served;
}

// Told by the server's block as it closes (its owner's close() or
// destruction, or the end of its drain): the side forgets it now.
void worker_side::server_closed(server_block* block) {
  registered* r = find(block);
  if (!r) return;
  closed_served += served(*r);
  auto done = std::move(r->done);
  bool answered = r->seq < 0;
  std::string key = r->key;
  std::erase_if(servers, [block](const registered& each) { return each.block == block; });
  if (answered && !key.empty()) send({.what = act::close, .key = key});
  // listen() still waiting for the primary: its done on a later turn (this
  // may be inside the call that destroyed the server).
  if (done) defer([done = std::move(done)]() mutable { done(uv_error(UV_ECANCELED)); });
  if (disconnecting)
    defer([this] {
      if (!closing) finish_disconnect();
    });
}

// The channel to the primary closed: the primary is gone, or our own
// disconnect finished. The worker has nothing left to serve for: its loop
// stops, so main() carries on after run().
void worker_side::channel_ended() {
  ended = true;
  uv_timer_stop(&report);
  std::vector<unique_function<void(result<int>)>> waiting;
  for (registered& r : servers) {
    r.hold = {};
    if (r.done) waiting.push_back(std::move(r.done));
  }
  std::erase_if(servers, [](registered& r) {
    if (r.seq < 0) return false;
    r.block->closed_hook = nullptr;
    return true;
  });
  loop.stop();
  for (auto& done : waiting) {
    loop.invoke(done, make_error_code(errc::ipc_channel_closed));
    if (closing) return;
  }
  for (auto& done : std::exchange(disconnected, {})) {
    loop.invoke(done);
    if (closing) return;
  }
}

// Node's worker._disconnect: close every server, then the channel.
void worker_side::begin_disconnect(bool worker_initiated) {
  if (disconnecting) return;
  disconnecting = true;
  // Tell the primary first, so that it stops handing over connections and
  // does not restart this worker when it exits.
  if (worker_initiated) send({.what = act::exited_after_disconnect});
  report_figures();
  std::vector<server_block*> blocks;
  for (registered& r : servers) blocks.push_back(r.block);
  // Each closes (a server draining already has no owner: it closes by itself),
  // and its closed_hook counts it out.
  for (server_block* b : blocks)
    if (tcp::server* s = tcp::detail::server_of(b)) s->close();
  defer([this] {
    if (!closing) finish_disconnect();  // never inside this call
  });
}

void worker_side::finish_disconnect() {
  if (!servers.empty() || finishing) return;
  finishing = true;
  report_figures();
  if (channel && channel->connected()) return channel->disconnect();  // channel_ended() follows
  ended = true;
  for (auto& done : std::exchange(disconnected, {})) {
    loop.invoke(done);
    if (closing) return;
  }
}

// Each second, what the servers served so far (the primary's figures), if changed.
void worker_side::report_figures() {
  std::uint64_t total = closed_served;
  for (registered& r : servers) total += served(r);
  if (total == reported || !channel || !channel->connected()) return;
  reported = total;
  send({.what = act::figures, .requests = total});
}

}  // namespace

// A worker reports online the first time it asks what it is or listens (every
// cluster program does one of them first thing), as Node's worker does at bootstrap.
bool is_worker() noexcept {
  if (unique_id != 0) worker_side::current();
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

std::vector<std::string> arguments() {
  std::vector<std::string> all = crew::detail::command_line();
  if (!all.empty()) all.erase(all.begin());  // the program's own name
  return all;
}

void listen(tcp::server& server, int port, unique_function<void(result<int>)> done, const std::string& host) {
  worker_side& side = worker_side::current();
  auto later = [&side](unique_function<void(result<int>)> fn, result<int> outcome) {
    if (fn) side.defer([fn = std::move(fn), outcome]() mutable { fn(outcome); });
  };
  server_block* block = tcp::detail::state_of(server);
  if (!block) return later(std::move(done), uv_error(UV_EBADF));
  if (side.find(block) || block->poll) return later(std::move(done), uv_error(UV_EALREADY));
  if (!side.channel) {
    // Outside a cluster: the server listens on its own.
    result<int> bound = server.listen(port, host);
    if (bound) side.add({.block = block, .host = host});
    return later(std::move(done), bound);
  }
  if (side.disconnecting || !side.channel->connected()) return later(std::move(done), uv_error(UV_ECANCELED));
  long seq = side.next_seq++;
  side.add({.block = block, .host = host, .port = port, .seq = seq, .done = std::move(done), .hold = loop::keep_alive(side.loop)});
  side.send({.what = act::query_server,
             .seq = seq,
             .address = host,
             .port = port,
             .address_type = host.find(':') == std::string::npos ? 4 : 6,
             .backlog = block->options.backlog,
             .ipv6_only = block->options.ipv6_only});
}

void disconnect(unique_function<void()> done) {
  worker_side& side = worker_side::current();
  if (side.ended) {
    if (done) side.defer(std::move(done));
    return;
  }
  if (done) side.disconnected.push_back(std::move(done));
  side.begin_disconnect(true);
}

bool disconnecting() noexcept { return side_of_thread && side_of_thread->disconnecting; }

void handle_signals() {
  worker_side& side = worker_side::current();
  for (int signum : {SIGTERM, SIGINT})
    side.signals.push_back(on_signal(signum, [&side](int) { side.begin_disconnect(true); }, side.loop));
}

}  // namespace crew::cluster
