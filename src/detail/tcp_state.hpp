// The heap block behind crew::tcp::server, and the socket helpers that the
// cluster shares (it binds the ports its workers serve).
#pragma once

#include <unordered_set>
#include <vector>

#include "crew/tcp.hpp"
#include "detail/stream_state.hpp"

namespace crew::tcp::detail {

/// How bind_socket() sets a socket up.
struct bind_options {
  int backlog = 511;        // listen() with this backlog; 0: bound only, not listening
  bool reuse_port = false;  // SO_REUSEPORT
  bool ipv6_only = false;   // IPV6_V6ONLY for an IPv6 address
};

/// A non-blocking, close-on-exec TCP socket bound to host:port, listening
/// unless options.backlog is 0. `host` as for server::listen(). Errors:
/// EINVAL (bad host or port), EADDRINUSE, EACCES, EMFILE...
result<int> bind_socket(const std::string& host, int port, const bind_options& options);

/// The local (or, with peer, the remote) endpoint of a socket.
result<address> endpoint_of(int fd, bool peer);

/// Whether `host` is an IPv4 or IPv6 literal (a name would need a lookup).
bool is_literal(const std::string& host);

/// The next connection waiting on a listening socket: its fd (non-blocking,
/// close-on-exec), or -errno (-EAGAIN when none waits). Connections the peer
/// reset before they were taken are skipped.
int accept_connection(int listening_fd);

/// Whether an accept failed for want of a descriptor (or of kernel memory):
/// the connection waits in the kernel's queue, and accepting should pause.
bool out_of_descriptors(int error);

/// How long accepting pauses then: long enough not to spin on a listener
/// that stays readable, short enough to recover quickly.
inline constexpr std::chrono::milliseconds no_descriptor_pause{100};

struct server_state final : crew::detail::handle_state {
  server_state(crew::loop& l, server::connection_callback fn, server_options o);
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&backoff); }
  void on_closing() noexcept override;

  std::error_code start(int listening_fd);
  void watch() noexcept;          // polls the listening socket iff it should accept now
  void accept_ready();            // the listening socket is readable
  void take(int fd);              // counts a connection and queues it for delivery
  void deliver_pending();         // runs the connection callback for each queued one
  void socket_closed(crew::detail::stream_state* s) noexcept;
  void close_listener() noexcept;
  void finish_drain();            // once draining and no connection is left

  uv_timer_t backoff;         // accepting again after a full descriptor table
  uv_poll_t* poll = nullptr;  // the listening socket's readiness; its own allocation
  int fd = -1;                // the listening socket
  server::connection_callback on_connection;
  unique_function<void(std::error_code)> error_event;
  unique_function<void()> draining_event;
  unique_function<void()> drained;      // close()'s done
  unique_function<void()> closed_hook;  // internal: told once when the server closes (the cluster's registry)
  // internal: what the protocol on top has served (http: answers), for the
  // cluster's figures; without it they count `taken`.
  unique_function<std::uint64_t()> served_hook;
  std::uint64_t taken = 0;  // connections given out (or about to be) since the start
  server_options options;
  std::unordered_set<crew::detail::stream_state*> sockets;  // given out (or about to be), not yet closed
  std::vector<socket> pending;  // accepted or adopted, delivered on the next turn
  bool referenced = true;    // by ref()/unref(): applies to the listening socket
  bool paused = false;       // by pause()
  bool backing_off = false;  // after EMFILE
  // One connection per wake-up, as libuv's UV_TCP_SINGLE_ACCEPT: processes
  // sharing the listening socket then share a burst (the cluster's shared policy).
  bool single_accept = false;
  bool draining = false;     // close() began
  bool drain_scheduled = false;
};

}  // namespace crew::tcp::detail
