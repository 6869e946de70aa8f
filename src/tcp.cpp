#include "crew/tcp.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

#include "crew/timer.hpp"
#include "detail/tcp_state.hpp"

namespace crew::tcp {

using crew::detail::stream_state;

namespace {

// libuv's UV_TCP_SINGLE_ACCEPT: take one connection per wake-up (see
// server_state::single_accept), for every server of the process.
bool single_accept_by_environment() {
  static const bool on = [] {
    const char* value = std::getenv("UV_TCP_SINGLE_ACCEPT");
    return value && std::atoi(value) != 0;
  }();
  return on;
}

address to_address(const sockaddr_storage& storage) {
  char text[INET6_ADDRSTRLEN] = "";
  if (storage.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(storage);
    inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    return {text, ntohs(in6.sin6_port), 6};
  }
  const auto& in = reinterpret_cast<const sockaddr_in&>(storage);
  inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
  return {text, ntohs(in.sin_port), 4};
}

// host:port as a socket address: an IPv4 or IPv6 literal, "" for every
// interface (IPv6, which takes IPv4 too), or a name looked up now.
result<sockaddr_storage> resolve_now(const std::string& host, int port) {
  if (port < 0 || port > 65535) return uv_error(UV_EINVAL);
  sockaddr_storage storage{};
  std::string any_or_host = host.empty() ? "::" : host;
  if (uv_ip4_addr(any_or_host.c_str(), port, reinterpret_cast<sockaddr_in*>(&storage)) == 0) return storage;
  if (uv_ip6_addr(any_or_host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&storage)) == 0) return storage;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || !found) return uv_error(UV_EINVAL);
  std::memcpy(&storage, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  reinterpret_cast<sockaddr_in&>(storage).sin_port = htons(static_cast<uint16_t>(port));  // same place in sockaddr_in6
  return storage;
}

}  // namespace

namespace detail {

result<int> bind_socket(const std::string& host, int port, const bind_options& options) {
  result<sockaddr_storage> where = resolve_now(host, port);
  if (!where) return where.error();
  sockaddr_storage address = *where;
  int fd = ::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 && errno == EAFNOSUPPORT && host.empty()) {
    // No IPv6 on this machine: "every interface" is IPv4's.
    address = {};
    uv_ip4_addr("0.0.0.0", port, reinterpret_cast<sockaddr_in*>(&address));
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) return uv_error(-errno);
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (options.reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
  if (address.ss_family == AF_INET6) {
    int only = options.ipv6_only ? 1 : 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &only, sizeof only);
  }
  socklen_t length = address.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      (options.backlog > 0 && ::listen(fd, options.backlog) != 0)) {
    int error = errno;
    ::close(fd);
    return uv_error(-error);
  }
  return fd;
}

bool is_literal(const std::string& host) {
  sockaddr_storage address{};
  return uv_ip4_addr(host.c_str(), 0, reinterpret_cast<sockaddr_in*>(&address)) == 0 ||
         uv_ip6_addr(host.c_str(), 0, reinterpret_cast<sockaddr_in6*>(&address)) == 0;
}

int accept_connection(int listening_fd) {
  for (;;) {
    int connection = accept4(listening_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (connection >= 0) return connection;
    // A connection the peer reset before we took it, or a signal: try the next.
    if (errno == ECONNABORTED || errno == EINTR) continue;
    return -errno;
  }
}

bool out_of_descriptors(int error) { return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM; }

result<address> endpoint_of(int fd, bool peer) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&storage), &length)
                : getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length);
  if (rc != 0) return uv_error(-errno);
  if (storage.ss_family != AF_INET && storage.ss_family != AF_INET6) return uv_error(UV_EINVAL);
  return to_address(storage);
}

server_state::server_state(crew::loop& l, server::connection_callback fn, server_options o)
    : handle_state(l), on_connection(std::move(fn)), options(o) {
  uv_timer_init(l.native(), &backoff);
}

std::error_code server_state::start(int listening_fd) {
  poll = new uv_poll_t;
  if (int rc = uv_poll_init(loop.native(), poll, listening_fd)) {
    delete poll;
    poll = nullptr;
    ::close(listening_fd);
    return uv_error(rc);
  }
  poll->data = this;
  fd = listening_fd;
  watch();
  return {};
}

void server_state::watch() noexcept {
  if (!poll) return;
  if (paused || backing_off || draining || closing) {
    uv_poll_stop(poll);
    return;
  }
  uv_poll_start(poll, UV_READABLE, [](uv_poll_t* p, int status, int) {
    auto* s = static_cast<server_state*>(p->data);
    if (status < 0) {
      if (s->error_event) s->loop.invoke(s->error_event, uv_error(status));
      return;
    }
    s->accept_ready();
  });
  // The listening socket keeps the loop alive, as a Node server's does, unless unref()'d.
  if (referenced)
    uv_ref(reinterpret_cast<uv_handle_t*>(poll));
  else
    uv_unref(reinterpret_cast<uv_handle_t*>(poll));
}

void server_state::accept_ready() {
  while (!closing && !draining && !paused && !backing_off) {
    int connection = accept_connection(fd);
    if (connection == -EAGAIN || connection == -EWOULDBLOCK) return;
    if (connection < 0) {
      if (out_of_descriptors(-connection)) {
        // No descriptor for it: the connection waits in the kernel's queue.
        // Polling again at once would spin, so accepting pauses.
        backing_off = true;
        watch();
        uv_timer_start(&backoff, [](uv_timer_t* t) {
          auto* s = static_cast<server_state*>(t->data);
          s->backing_off = false;
          s->watch();
        }, static_cast<uint64_t>(no_descriptor_pause.count()), 0);
      }
      if (error_event) loop.invoke(error_event, uv_error(connection));
      return;
    }
    take(connection);
    deliver_pending();
    if (single_accept || single_accept_by_environment()) {
      // As libuv does for UV_TCP_SINGLE_ACCEPT: yield, so that another process
      // sharing the socket takes the next connection of a burst.
      timespec yield{0, 1};
      nanosleep(&yield, nullptr);
    }
  }
}

void server_state::take(int connection) {
  if (options.max_connections > 0 && sockets.size() >= options.max_connections) {
    ::close(connection);  // refused: the established connections keep working
    return;
  }
  std::optional<socket> s;
  try {
    s.emplace(loop, connection);
  } catch (const std::system_error&) {
    return;  // libuv refused the descriptor (closed by the socket's constructor)
  }
  stream_state* state = s->state();
  ++taken;
  sockets.insert(state);
  state->closed_hook = [this, state] { socket_closed(state); };
  if (options.no_delay) s->set_no_delay(true);
  s->set_allow_half_open(options.allow_half_open);
  pending.push_back(std::move(*s));
}

void server_state::deliver_pending() {
  // The callback may close or destroy the server: check before each one.
  while (!pending.empty() && !closing) {
    socket s = std::move(pending.front());
    pending.erase(pending.begin());
    if (on_connection) loop.invoke(on_connection, std::move(s));
  }
}

void server_state::socket_closed(stream_state* s) noexcept {
  sockets.erase(s);
  // The last connection of a draining server: done runs on a later turn, never
  // inside the close() that a socket's owner is calling now.
  if (draining && sockets.empty() && !drain_scheduled) {
    drain_scheduled = true;
    defer([this] { finish_drain(); });
  }
}

void server_state::finish_drain() {
  drain_scheduled = false;
  if (closing || !sockets.empty()) return;
  auto done = std::move(drained);
  close();
  if (done) loop.invoke(done);
}

void server_state::close_listener() noexcept {
  if (!poll) return;
  uv_close(reinterpret_cast<uv_handle_t*>(poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  poll = nullptr;
  ::close(fd);
  fd = -1;
}

void server_state::on_closing() noexcept {
  close_listener();
  for (stream_state* s : sockets) s->closed_hook = nullptr;
  sockets.clear();
  pending.clear();  // closes them: they were never given out
  if (closed_hook) closed_hook();
}

// connect(): one attempt in flight, owning itself until its completion has run.
struct connector {
  uv_connect_t request;
  uv_getaddrinfo_t lookup;
  crew::loop& l;
  int port;
  socket sock;
  unique_function<void(result<socket>)> done;
  connect_options options;
  std::optional<timer> deadline;
  bool timed_out = false;

  connector(crew::loop& lp, int p, unique_function<void(result<socket>)> d, connect_options o)
      : l(lp), port(p), sock(lp), done(std::move(d)), options(o) {}

  // Ends the attempt: done gets the outcome, the connector goes.
  static void complete(connector* c, result<socket> outcome) {
    std::unique_ptr<connector> owned(c);
    owned->deadline.reset();
    owned->l.invoke(owned->done, std::move(outcome));
  }

  void start(const sockaddr* address) {
    stream_state* s = sock.state();
    if (!s) return complete(this, uv_error(UV_ECANCELED));  // the loop closed it meanwhile
    request.data = this;
    int rc = uv_tcp_connect(&request, &s->handle.tcp, address, [](uv_connect_t* req, int status) {
      auto* c = static_cast<connector*>(req->data);
      if (status == UV_ECANCELED && c->timed_out) return complete(c, uv_error(UV_ETIMEDOUT));
      if (status < 0) return complete(c, uv_error(status));
      if (c->options.no_delay) c->sock.set_no_delay(true);
      c->sock.set_allow_half_open(c->options.allow_half_open);
      complete(c, std::move(c->sock));
    });
    if (rc != 0) {
      deadline.reset();
      // Reported on a later turn, like every failure found inside a call.
      l.later([this, rc] { complete(this, uv_error(rc)); });
      return;
    }
    if (options.timeout.count() > 0)
      deadline.emplace(scoped_timeout(options.timeout, [this] {
        timed_out = true;
        sock.close();  // libuv completes the request with ECANCELED
      }, l));
  }
};

}  // namespace detail

// -- socket

socket::socket(loop& l, int fd) {
  auto* s = new stream_state(l);
  uv_tcp_init(l.native(), &s->handle.tcp);
  s->handle.tcp.data = s;
  if (int rc = uv_tcp_open(&s->handle.tcp, fd)) {
    ::close(fd);
    s->closing = true;
    uv_close(s->uv(), &stream_state::on_uv_close);
    throw std::system_error(uv_error(rc), "uv_tcp_open");
  }
  s->writable = true;
  s->allow_half_open = false;
  adopt(s);
}

socket::socket(loop& l) {
  auto* s = new stream_state(l);
  uv_tcp_init(l.native(), &s->handle.tcp);
  s->writable = true;
  s->allow_half_open = false;
  adopt(s);
}

result<address> socket::remote_address() const {
  stream_state* s = state();
  if (!s) return uv_error(UV_EBADF);
  sockaddr_storage storage{};
  int length = sizeof storage;
  if (int rc = uv_tcp_getpeername(&s->handle.tcp, reinterpret_cast<sockaddr*>(&storage), &length)) return uv_error(rc);
  return to_address(storage);
}

result<address> socket::local_address() const {
  stream_state* s = state();
  if (!s) return uv_error(UV_EBADF);
  sockaddr_storage storage{};
  int length = sizeof storage;
  if (int rc = uv_tcp_getsockname(&s->handle.tcp, reinterpret_cast<sockaddr*>(&storage), &length)) return uv_error(rc);
  return to_address(storage);
}

std::error_code socket::set_no_delay(bool enable) noexcept {
  stream_state* s = state();
  return s ? uv_error(uv_tcp_nodelay(&s->handle.tcp, enable ? 1 : 0)) : uv_error(UV_EBADF);
}

std::error_code socket::set_keep_alive(bool enable, std::chrono::seconds initial_delay) noexcept {
  stream_state* s = state();
  if (!s) return uv_error(UV_EBADF);
  if (!enable || initial_delay.count() > 0)
    return uv_error(uv_tcp_keepalive(&s->handle.tcp, enable ? 1 : 0, static_cast<unsigned>(initial_delay.count())));
  // Keep-alive with the system's idle delay: libuv would set a delay of 0.
  uv_os_fd_t fd;
  if (int rc = uv_fileno(s->uv(), &fd)) return uv_error(rc);
  int on = 1;
  return setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == 0 ? std::error_code{} : uv_error(-errno);
}

void socket::set_allow_half_open(bool allow) noexcept {
  if (stream_state* s = state()) s->allow_half_open = allow;
}

void connect(const std::string& host, int port, unique_function<void(result<socket>)> done, connect_options options,
             loop& l) {
  auto* c = new detail::connector(l, port, std::move(done), options);
  if (port <= 0 || port > 65535) {
    l.later([c] { detail::connector::complete(c, uv_error(UV_EINVAL)); });
    return;
  }
  sockaddr_storage literal{};
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&literal)) == 0 ||
      uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&literal)) == 0)
    return c->start(reinterpret_cast<const sockaddr*>(&literal));
  // A name: looked up on libuv's thread pool.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  c->lookup.data = c;
  int rc = uv_getaddrinfo(l.native(), &c->lookup, [](uv_getaddrinfo_t* req, int status, addrinfo* found) {
    auto* self = static_cast<detail::connector*>(req->data);
    if (status < 0 || !found) {
      uv_freeaddrinfo(found);
      return detail::connector::complete(self, uv_error(status < 0 ? status : UV_EAI_NONAME));
    }
    sockaddr_storage address{};
    std::memcpy(&address, found->ai_addr, found->ai_addrlen);
    uv_freeaddrinfo(found);
    reinterpret_cast<sockaddr_in&>(address).sin_port = htons(static_cast<uint16_t>(self->port));
    self->start(reinterpret_cast<const sockaddr*>(&address));
  }, host.c_str(), nullptr, &hints);
  if (rc != 0) l.later([c, rc] { detail::connector::complete(c, uv_error(rc)); });
}

// -- server

server::server(connection_callback on_connection, server_options options, loop& l) {
  handle_owner::adopt(new detail::server_state(l, std::move(on_connection), options));
}

detail::server_state* server::state() const noexcept { return state_as<detail::server_state>(); }

detail::server_state* detail::state_of(server& s) noexcept { return s.state(); }

server* detail::server_of(server_state* s) noexcept { return s && s->owner ? static_cast<server*>(s->owner) : nullptr; }

result<int> server::listen(int port, const std::string& host) {
  detail::server_state* s = state();
  if (!s) return uv_error(UV_EBADF);
  if (s->poll) return uv_error(UV_EALREADY);
  result<int> fd = detail::bind_socket(host, port, {.backlog = s->options.backlog,
                                                    .reuse_port = s->options.reuse_port,
                                                    .ipv6_only = s->options.ipv6_only});
  if (!fd) return fd.error();
  result<address> bound = detail::endpoint_of(*fd, false);
  if (std::error_code ec = s->start(*fd)) return ec;
  return bound ? bound->port : port;
}

std::error_code server::listen_fd(int fd) {
  detail::server_state* s = state();
  if (!s || s->poll) {
    ::close(fd);
    return uv_error(s ? UV_EALREADY : UV_EBADF);
  }
  return s->start(fd);
}

std::error_code server::adopt_connection(int fd) {
  detail::server_state* s = state();
  if (!s || s->draining) {
    ::close(fd);
    return uv_error(UV_EBADF);
  }
  s->take(fd);
  s->defer([s] {
    if (!s->closing) s->deliver_pending();
  });
  return {};
}

void server::ref() noexcept {
  if (detail::server_state* s = state()) {
    s->referenced = true;
    uv_ref(s->uv());
    s->watch();
  }
}

void server::unref() noexcept {
  if (detail::server_state* s = state()) {
    s->referenced = false;
    uv_unref(s->uv());
    s->watch();
  }
}

bool server::has_ref() const noexcept {
  detail::server_state* s = state();
  return s && s->referenced;
}

void server::pause() noexcept {
  if (detail::server_state* s = state()) {
    s->paused = true;
    s->watch();
  }
}

void server::resume() noexcept {
  if (detail::server_state* s = state()) {
    s->paused = false;
    s->watch();
  }
}

void server::on_error(unique_function<void(std::error_code)> fn) {
  if (detail::server_state* s = state()) s->error_event = std::move(fn);
}

void server::on_draining(unique_function<void()> fn) {
  if (detail::server_state* s = state()) s->draining_event = std::move(fn);
}

void server::close(unique_function<void()> done) {
  detail::server_state* s = state();
  if (!s) {  // closed already (or never opened): nothing to wait for
    if (done) loop::current().later(std::move(done));
    return;
  }
  s->draining = true;
  s->drained = std::move(done);
  release();  // the block closes itself once the last connection has
  // Connections already in the kernel's queue would be reset with the
  // listener: they are taken and served first.
  if (s->fd >= 0)
    for (int connection; (connection = detail::accept_connection(s->fd)) >= 0;) s->take(connection);
  s->close_listener();
  uv_timer_stop(&s->backoff);
  s->defer([s] {
    if (s->closing) return;
    s->deliver_pending();
    if (s->closing) return;
    if (s->draining_event) s->loop.invoke(s->draining_event);
    if (!s->closing && s->sockets.empty()) s->finish_drain();
  });
}

bool server::listening() const noexcept {
  detail::server_state* s = state();
  return s && s->poll;
}

std::size_t server::connections() const noexcept {
  detail::server_state* s = state();
  return s ? s->sockets.size() : 0;
}

result<address> server::local_address() const {
  detail::server_state* s = state();
  if (!s || s->fd < 0) return uv_error(UV_ENOTCONN);
  return detail::endpoint_of(s->fd, false);
}

}  // namespace crew::tcp
