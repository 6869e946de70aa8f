// A small, fast HTTP/1.1 server on llhttp (Node's own parser).
//
//   crew::http::router routes;
//   routes.get("/", [](crew::http::request&, crew::http::response& res) { res.send("hello\n"); });
//   routes.post("/echo", [](crew::http::request& req, crew::http::response& res) {
//     auto body = req.json();
//     if (!body) return res.status(400).send("bad json\n");
//     res.json(*body);
//   });
//   crew::http::server server(std::move(routes));
//   crew::result<int> port = server.listen(8000);          // 127.0.0.1 by default
//   crew::loop::current().run();
//
// Keep-alive and pipelining (answers go out in request order), Content-Length
// and chunked request bodies, limits answered with the right status (431
// headers too large, 413 body too large, 408 headers too slow), malformed
// requests answered 400 and closed without disturbing other connections, idle
// keep-alive connections closed, and a graceful close().
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "crew/detail/handle.hpp"
#include "crew/unique_function.hpp"
#include "crew/error.hpp"
#include "crew/loop.hpp"
#include "crew/message.hpp"

namespace crew::http {

namespace detail {
struct exchange;
struct server_state;
}  // namespace detail

/// One parsed request.
struct request {
  std::string method;  ///< "GET", "POST", ...
  std::string target;  ///< as sent: "/path?x=1"
  std::string path;    ///< "/path"
  std::string query;   ///< "x=1" (without the '?'), "" when absent
  std::vector<std::pair<std::string, std::string>> headers;  ///< names in lower case, in order
  std::string body;    ///< the whole body, chunked encoding removed
  bool keep_alive = true;

  /// The first header of that name (any case); "" when absent.
  std::string_view header(std::string_view name) const noexcept;

  /// The body parsed as JSON. ERR_INVALID_MESSAGE when it is not.
  result<message::value_type> json() const;
};

/// The answer to one request. Send it once, now or later from the loop (keep
/// the object: it is movable); answers go out in request order. If the
/// connection has gone, sending does nothing.
class response {
 public:
  response& status(int code) noexcept;
  response& set_header(std::string name, std::string value);

  /// Sends `body` with a Content-Length. Default content type: text/plain.
  void send(std::string body, std::string content_type = "text/plain; charset=utf-8");

  /// Sends the value as compact JSON (application/json).
  void json(const message::value_type& value);

  /// Whether send() or json() was called.
  bool sent() const noexcept;

 private:
  friend struct detail::server_state;
  explicit response(std::shared_ptr<detail::exchange> e) noexcept : exchange_(std::move(e)) {}
  std::shared_ptr<detail::exchange> exchange_;
};

using handler = crew::unique_function<void(request&, response&)>;

/// Routing by method and exact path; 404 for an unknown path, 405 (with
/// Allow) for a known path and another method.
class router {
 public:
  router& route(std::string method, std::string path, handler h);
  router& get(std::string path, handler h) { return route("GET", std::move(path), std::move(h)); }
  router& post(std::string path, handler h) { return route("POST", std::move(path), std::move(h)); }
  router& put(std::string path, handler h) { return route("PUT", std::move(path), std::move(h)); }
  router& del(std::string path, handler h) { return route("DELETE", std::move(path), std::move(h)); }

  void operator()(request& req, response& res);

 private:
  struct entry {
    std::string method;
    std::string path;
    handler h;
  };
  std::vector<entry> routes_;
};

/// Limits and timeouts of a server.
struct server_options {
  std::size_t max_header_bytes = 16 * 1024;             ///< request line + headers; past it 431; default 16 KiB
  std::size_t max_body_bytes = 1024 * 1024;             ///< past it 413; default 1 MiB
  std::chrono::milliseconds headers_timeout{10'000};    ///< a request's headers must arrive within; else 408; default 10 s
  std::chrono::milliseconds keep_alive_timeout{5'000};  ///< an idle connection is closed after; default 5 s
};

/// An HTTP/1.1 server on one loop. Loop thread only. Move-only; destroying it
/// closes the listener and every connection at once (close() is the graceful way).
class server : private crew::detail::handle_owner {
 public:
  /// Node's server.ref()/unref(): a referenced, listening server keeps its
  /// loop's run() going (the default).
  using handle_owner::ref;
  using handle_owner::unref;
  using handle_owner::has_ref;

  explicit server(handler h, server_options options = {}, loop& l = loop::current());

  /// Binds and listens. Returns the port (the kernel's choice for 0).
  /// Errors: EADDRINUSE, EACCES, EINVAL (a bad host).
  [[nodiscard]] result<int> listen(int port, const std::string& host = "127.0.0.1", int backlog = 511);

  /// Listens on a socket already bound and listening (a cluster's shared socket).
  /// The server takes ownership of fd.
  [[nodiscard]] std::error_code listen_fd(int fd);

  /// Serves one connection accepted elsewhere (a cluster's round-robin hand-off).
  /// The server takes ownership of fd.
  [[nodiscard]] std::error_code serve_fd(int fd);

  /// Graceful close: stops accepting (connections already waiting in the
  /// listener's queue are taken and served first), lets the requests in flight
  /// finish (their answers go out with Connection: close), gives idle
  /// keep-alive connections 100 ms for a request already on its way (answered
  /// the same way) before closing them, then runs done. On a server closed
  /// already, done runs on the loop.
  void close(crew::unique_function<void()> done = {});

  /// Open connections, and requests answered since the start.
  std::size_t connections() const noexcept;
  std::uint64_t requests_served() const noexcept;

 private:
  detail::server_state* state() const noexcept;
};

/// The reason phrase of a status code ("Not Found"); "" for unknown codes.
std::string_view reason(int status) noexcept;

}  // namespace crew::http
