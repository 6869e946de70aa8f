// TCP: Node's `net`. A server that accepts connections and a socket that is a
// crew::stream with addresses and socket options.
//
//   std::list<crew::tcp::socket> clients;
//   crew::tcp::server echo([&](crew::tcp::socket s) {
//     crew::tcp::socket& c = clients.emplace_back(std::move(s));
//     auto at = std::prev(clients.end());
//     c.on_data([&c](std::string_view bytes) {
//       if (!c.write(bytes)) c.pause();                      // back-pressure: read again
//     });                                                    // once the client has read
//     c.on_drain([&c] { c.resume(); });
//     c.on_close([&clients, at] { clients.erase(at); });  // a socket may be destroyed in its own callback
//   });
//   crew::result<int> port = echo.listen(7000);            // 127.0.0.1 by default
//
//   crew::tcp::connect("127.0.0.1", 7000, [](crew::result<crew::tcp::socket> s) { ... });
//
// The server is the piece cluster::listen shares between processes (with the
// cluster's three policies), and http::server is built on it.
//
// Lifetime and callbacks follow docs/lifetime.md and docs/callbacks.md: every
// object here is an RAII handle; events run on the loop, never inside the call
// that caused them, and never after their object is closed or destroyed.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <system_error>

#include "crew/detail/handle.hpp"
#include "crew/error.hpp"
#include "crew/loop.hpp"
#include "crew/stream.hpp"
#include "crew/unique_function.hpp"

namespace crew::tcp {

class server;

namespace detail {
struct server_state;
struct connector;
/// A server's heap block (null when closed), and the server that owns a block
/// (null once it has none: closed, or draining after close()). For the
/// cluster, whose registry keeps blocks: they stay put when their server moves.
server_state* state_of(server& s) noexcept;
server* server_of(server_state* s) noexcept;
}

/// An endpoint: Node's {address, family, port}.
struct address {
  std::string host;  ///< "127.0.0.1", "::1"
  int port = 0;
  int family = 4;  ///< 4 or 6
  bool operator==(const address&) const = default;
};

/// A connected TCP socket: a stream (read, write, pause, end = half-close) with
/// TCP's addresses and options. Loop thread only. Move-only; destroying it
/// closes it at once (end() first for a graceful close).
class socket : public stream {
 public:
  /// No socket: is_open() is false and every call does nothing.
  socket() noexcept = default;

  /// Takes ownership of `fd`, a connected TCP socket (one accepted elsewhere,
  /// or handed over by another process). Errors from libuv throw
  /// std::system_error; the fd is closed then.
  socket(loop& l, int fd);

  /// The peer's and our own endpoint. Errors: ENOTCONN, EBADF on a closed socket.
  [[nodiscard]] result<address> remote_address() const;
  [[nodiscard]] result<address> local_address() const;

  /// Node's setNoDelay: true sends small writes at once (no Nagle delay).
  std::error_code set_no_delay(bool enable = true) noexcept;
  /// Node's setKeepAlive: TCP keep-alive probes after `initial_delay` idle
  /// (0: the system's default delay).
  std::error_code set_keep_alive(bool enable = true,
                                 std::chrono::seconds initial_delay = std::chrono::seconds(0)) noexcept;
  /// Node's allowHalfOpen. When false (Node's default for sockets) the socket
  /// ends its own side once the peer has ended and its queued writes are out.
  /// When true it stays open for writing until end() or close().
  void set_allow_half_open(bool allow) noexcept;

 private:
  friend struct detail::server_state;
  friend struct detail::connector;
  explicit socket(loop& l);  // an unconnected handle, for connect()
};

/// Options of connect().
struct connect_options {
  std::chrono::milliseconds timeout{0};  ///< give up with ETIMEDOUT after this long; default: 0 (the system's)
  bool no_delay = false;                 ///< set_no_delay(true) once connected; default: false (Node's)
  bool allow_half_open = false;          ///< default: false (Node's)
};

/// Node's net.connect(port, host): done gets the connected socket, or the
/// error (ECONNREFUSED, ETIMEDOUT, EINVAL for a bad port, ENOTFOUND-like
/// EAI_* codes for a name that does not resolve). `host` is an IPv4 or IPv6
/// literal or a name (resolved on libuv's thread pool).
///
/// Callback contract: done runs exactly once, on l's thread, never inside
/// connect(); dropped, like every completion, when the loop is destroyed first
/// (lifetime.md).
void connect(const std::string& host, int port, unique_function<void(result<socket>)> done,
             connect_options options = {}, loop& l = loop::current());

/// Options of a server.
struct server_options {
  /// Connections open at once past which new ones are refused (accepted and
  /// closed at once; established ones keep working). Node's maxConnections.
  /// Default 0: no cap.
  std::size_t max_connections = 0;
  int backlog = 511;             ///< the kernel's queue of connections not yet accepted; default: 511 (Node's)
  bool no_delay = false;         ///< set_no_delay(true) on each connection; default: false (Node's)
  bool allow_half_open = false;  ///< each connection's set_allow_half_open; default: false (Node's)
  bool ipv6_only = false;        ///< for "::", refuse IPv4 clients; default: false (dual stack)
  bool reuse_port = false;       ///< SO_REUSEPORT, so that several processes bind one port; default: false
};

/// A TCP server: Node's net.Server. Loop thread only. Move-only.
///
/// Connections arrive as `socket`s through the connection callback; the
/// callback owns each one (keep it, or it closes when the callback returns).
/// The server counts the connections it gave out until they close: close()
/// waits for them.
///
/// A full descriptor table (EMFILE, ENFILE) pauses accepting for 100 ms and
/// reports the error through on_error; connections wait in the kernel's queue
/// meanwhile, and accepting resumes by itself. The loop never spins.
///
/// Destroying a server stops accepting at once; connections it gave out are
/// their owners' and carry on.
class server : private crew::detail::handle_owner {
 public:
  using connection_callback = unique_function<void(socket)>;

  /// Whether the server is open: false once closed (a close() in progress
  /// included), moved from, or closed by its loop.
  using handle_owner::is_open;

  /// A server that is not listening yet; connections go to `on_connection`.
  explicit server(connection_callback on_connection, server_options options = {}, loop& l = loop::current());

  /// Binds and listens. `host` is an IPv4 or IPv6 literal, "" for every
  /// interface (IPv6 and IPv4), or a name resolved now (blocking). Returns the
  /// port (the kernel's choice for port 0). Errors: EADDRINUSE, EACCES, EINVAL
  /// (a bad host or port), EALREADY when already listening, EBADF when closed.
  [[nodiscard]] result<int> listen(int port, const std::string& host = "127.0.0.1");

  /// Listens on `fd`, a TCP socket already bound and listening (the cluster's
  /// shared socket). The server takes ownership of fd, also on error.
  [[nodiscard]] std::error_code listen_fd(int fd);

  /// Serves `fd`, a connection accepted elsewhere (the cluster's round-robin
  /// hand-off): it arrives through the connection callback on a later loop
  /// turn, counted like any other. The server takes ownership of fd, also on
  /// error (EBADF when the server is closed or closing).
  [[nodiscard]] std::error_code adopt_connection(int fd);

  /// Node's server.ref()/unref(): a referenced, listening server keeps its
  /// loop's run() going (the default).
  void ref() noexcept;
  void unref() noexcept;
  bool has_ref() const noexcept;

  /// Stops accepting (connections wait in the kernel's queue) until resume().
  void pause() noexcept;
  void resume() noexcept;

  /// Accept errors: EMFILE and ENFILE (accepting pauses 100 ms, then resumes),
  /// and the listening socket's own failures.
  void on_error(unique_function<void(std::error_code)> fn);

  /// Called once when close() begins, after the connections already waiting in
  /// the kernel's queue have been delivered: the moment to end the connections
  /// you hold once their work is done (http::server answers what is in flight
  /// with Connection: close, then closes each).
  void on_draining(unique_function<void()> fn);

  /// Graceful close, Node's server.close(): stops accepting (connections already
  /// in the kernel's queue are accepted and delivered first, not reset), runs
  /// the draining event, and runs done once every connection the server gave
  /// out has closed. done runs exactly once, never inside close(); on a server
  /// closed already it runs on the loop's next turn. The drain goes on if the
  /// server object is destroyed meanwhile.
  void close(unique_function<void()> done = {});

  /// Whether the server accepts connections from a listening socket of its own.
  bool listening() const noexcept;
  /// Connections given out and not yet closed.
  std::size_t connections() const noexcept;
  /// The listening socket's endpoint. Errors: ENOTCONN when not listening.
  [[nodiscard]] result<address> local_address() const;

 private:
  friend detail::server_state* detail::state_of(server&) noexcept;
  friend server* detail::server_of(detail::server_state*) noexcept;
  detail::server_state* state() const noexcept;
};

}  // namespace crew::tcp
