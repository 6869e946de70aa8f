// A small, fast HTTP/1.1 server on llhttp (Node's own parser) and crew::tcp.
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
// and chunked request bodies, whole or streamed to the handler, answers whole
// or streamed (chunked, with back-pressure). Built to hold against hostile
// clients: limits on raw header bytes, chunk lines, trailers, bodies and
// connections; a clock that times out slow headers, slow bodies, idle
// connections and readers that stop reading, however the server was started;
// reading pauses while a connection's answers wait to be sent. docs/http.md
// lists every limit and timeout.
//
// Lifetime and callbacks follow docs/lifetime.md and docs/callbacks.md: a
// handler runs on the loop, never inside the call that caused it (an answer
// sent inside the handler is the handler's own doing); destroying the server
// in any state closes every connection at once, and no handler or event of it
// runs afterwards.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "crew/detail/handle.hpp"
#include "crew/error.hpp"
#include "crew/loop.hpp"
#include "crew/message.hpp"
#include "crew/tcp.hpp"
#include "crew/unique_function.hpp"
#include "crew/url.hpp"

namespace crew::http {

namespace detail {
struct exchange;
struct server_state;

/// A request's tie to the exchange it belongs to. A copy of a request has none.
class exchange_link {
 public:
  exchange_link() noexcept = default;
  exchange_link(const exchange_link&) noexcept {}
  exchange_link& operator=(const exchange_link&) noexcept { return *this; }
  exchange* get() const noexcept { return exchange_; }

 private:
  friend struct exchange;
  exchange* exchange_ = nullptr;
};
}  // namespace detail

/// Header fields in arrival order; names in lower case.
using header_list = std::vector<std::pair<std::string, std::string>>;

/// One request. It lives as long as its response object does.
struct request {
  std::string method;   ///< "GET", "POST", ...
  std::string target;   ///< as sent: "/path?x=1"
  std::string path;     ///< "/path"
  std::string query;    ///< "x=1" (without the '?'), "" when absent
  int version = 11;     ///< 10 for HTTP/1.0, 11 for HTTP/1.1
  header_list headers;  ///< names in lower case, in order
  /// The trailer fields after a chunked body (names in lower case), kept apart
  /// from the headers: a trailer never stands for a header.
  header_list trailers;
  std::string body;     ///< the whole body, chunked encoding removed; empty when streamed
  bool keep_alive = true;

  /// The first header (or trailer) of that name, in any case; "" when absent.
  std::string_view header(std::string_view name) const noexcept;
  std::string_view trailer(std::string_view name) const noexcept;

  /// The query's name-value pairs, decoded as Node's URLSearchParams decodes
  /// them: `req.search_params().get("q")`. `query` keeps the raw text.
  url_search_params search_params() const { return url_search_params(query); }

  /// The body parsed as JSON. ERR_INVALID_MESSAGE when it is not.
  result<message::value_type> json() const;

  /// A streamed body (a route with `stream_body`): the handler runs once the
  /// headers are in; the body's bytes arrive through on_data as they are read
  /// (reading waits until on_data is set), and on_end runs once: with no error
  /// when the whole body is in (trailers filled in), or with the error that cut
  /// it short (ECONNRESET when the connection ended first: the client went
  /// away, or an answer sent before the whole body ended it; ETIMEDOUT past
  /// request_timeout, EPROTO for a malformed body). Neither runs after the
  /// server is destroyed, nor inside the call that set it. On a request that
  /// is not streamed, or a copy, these do nothing.
  void on_data(unique_function<void(std::string_view chunk)> fn);
  void on_end(unique_function<void(std::error_code)> fn);
  /// Stops reading the body until resume() (back-pressure to the client).
  void pause() noexcept;
  void resume() noexcept;

 private:
  friend struct detail::exchange;
  detail::exchange_link link_;
};

/// The answer to one request. Answer once, now or later from the loop (keep
/// the object: it is move-only); answers go out in request order. If the
/// connection has gone, answering does nothing. A response destroyed without
/// an answer answers 500 (or, once a streamed answer has begun, closes the
/// connection, so that the client sees the answer is cut short).
///
/// status(), set_header() and send() check what would go on the wire and throw
/// std::system_error, as Node's res.writeHead and res.setHeader do: no CR, LF,
/// NUL or other control character can reach the wire through them (no
/// response splitting). Uncaught in a handler, the exception stops the loop,
/// and run() rethrows it, as for every crew callback.
class response {
 public:
  response(response&& other) noexcept = default;
  response& operator=(response&& other) noexcept;
  response(const response&) = delete;
  response& operator=(const response&) = delete;
  ~response();

  /// Sets the status code (100..999) and, if given, the reason phrase (by
  /// default the standard one). Throws ERR_HTTP_INVALID_STATUS_CODE for a code
  /// out of range, ERR_INVALID_CHAR for a control character in the reason,
  /// ERR_HTTP_HEADERS_SENT once the head has gone out.
  response& status(int code, std::string_view reason = {});

  /// Adds a header. Throws ERR_INVALID_HTTP_TOKEN for a name that is not an
  /// HTTP token, ERR_INVALID_CHAR for a control character in the value,
  /// ERR_HTTP_INVALID_HEADER_VALUE for Content-Length or Transfer-Encoding (the
  /// server frames every answer), ERR_HTTP_HEADERS_SENT once the head has gone
  /// out. `Connection: close` makes this the connection's last answer.
  response& set_header(std::string name, std::string value);

  /// Answers with `body` and its Content-Length. Throws ERR_INVALID_CHAR for a
  /// control character in the content type. Does nothing on an answer already
  /// begun or finished.
  void send(std::string body, std::string content_type = "text/plain; charset=utf-8");

  /// Sends the value as compact JSON (application/json).
  void json(const message::value_type& value);

  /// Streams the answer, Node's res.write(): the head goes out with the first
  /// write, then each chunk (chunked encoding; for an HTTP/1.0 client the body
  /// runs to the connection's close). Returns false once the bytes waiting to
  /// be sent reach stream::high_water_mark: wait for on_drain before writing
  /// more. Returns false, and does nothing, after end() or once the connection
  /// has gone.
  bool write(std::string_view chunk);

  /// Ends a streamed answer (Node's res.end()), after `last` if given. On an
  /// answer not begun, sends the head with an empty body.
  void end(std::string_view last = {});

  /// Runs when write() may go on after it returned false; never inside write().
  void on_drain(unique_function<void()> fn);
  /// Runs once if the connection goes before the answer is finished (the
  /// client went away, a timeout): the moment to stop producing. Not after
  /// the server is destroyed.
  void on_close(unique_function<void()> fn);

  /// Whether the answer is finished (send(), json() or end()).
  bool sent() const noexcept;
  /// Whether the head has gone out (a streamed answer has begun, or it is finished).
  bool headers_sent() const noexcept;

 private:
  friend struct detail::server_state;
  explicit response(std::shared_ptr<detail::exchange> e) noexcept : exchange_(std::move(e)) {}
  void abandon() noexcept;
  std::shared_ptr<detail::exchange> exchange_;
};

using handler = crew::unique_function<void(request&, response&)>;

/// Options of one route.
struct route_options {
  /// The handler runs as soon as the headers are in and reads the body as it
  /// arrives (request::on_data/on_end), for uploads of any size: max_body_bytes
  /// does not apply. Default: false (the whole body, up to max_body_bytes,
  /// arrives with the request).
  bool stream_body = false;
};

/// Routing by method and path; 404 for an unknown path, 405 (with Allow) for
/// a known path and another method. A path matches exactly, or, when it ends
/// in `*`, every path that begins with what comes before the star, as
/// Express's "/jobs/*" does ("/jobs/42/output"; the handler reads req.path).
/// An exact route wins over a star; among stars, the longest prefix.
class router {
 public:
  router& route(std::string method, std::string path, handler h, route_options options = {});
  router& get(std::string path, handler h, route_options o = {}) { return route("GET", std::move(path), std::move(h), o); }
  router& post(std::string path, handler h, route_options o = {}) { return route("POST", std::move(path), std::move(h), o); }
  router& put(std::string path, handler h, route_options o = {}) { return route("PUT", std::move(path), std::move(h), o); }
  router& del(std::string path, handler h, route_options o = {}) { return route("DELETE", std::move(path), std::move(h), o); }

  /// Whether the route that `req` goes to streams its body.
  bool streams(const request& req) const noexcept;

  void operator()(request& req, response& res);

 private:
  struct entry {
    std::string method;
    std::string path;
    handler h;
    route_options options;
  };
  std::size_t find(const request& req) const noexcept;  // routes_.size() when none matches
  std::vector<entry> routes_;
  bool any_streams_ = false;
};

/// One request and what became of it, for server_options::on_answer: an
/// access log's line, a latency histogram's sample.
struct answer_record {
  const request& req;                    ///< valid during the call only
  int status = 0;                        ///< the answer's status (the server's own for a 408, 413...)
  std::uint64_t body_bytes = 0;          ///< the answer's body, before chunked framing
  std::chrono::microseconds duration{};  ///< from the request's first byte to its answer handed to the socket
  bool answered = true;                  ///< false: the connection went first (the client, a timeout)
};

/// Limits and timeouts of a server. Timeouts are checked on the server's clock,
/// which ticks every quarter of the shortest one (at most 250 ms, at least
/// 10 ms), so each acts up to one tick late; 0 turns one off.
struct server_options {
  /// Raw bytes of a request line and its headers, whitespace and empty lines
  /// included; past it 431. The same bound holds for one chunk's size line
  /// with its extensions (past it 413) and for the trailers (431).
  /// Default: 16 KiB (Node's).
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;  ///< a whole body, unless streamed; past it 413; default 1 MiB
  /// Connections open at once; past it the newest are refused (accepted and
  /// closed) while established ones keep working. Default: 0, no cap.
  std::size_t max_connections = 0;
  /// A request's headers must be in this long after its first byte (a new
  /// connection's after it opens); else 408 and close. Default: 10 s.
  std::chrono::milliseconds headers_timeout{10'000};
  /// A request's body must be in this long after the request's first byte;
  /// else 408 and close. Default: 300 s (Node's requestTimeout).
  std::chrono::milliseconds request_timeout{300'000};
  /// A keep-alive connection with nothing to read or send closes after this
  /// long; counted from when its last answer is out. Default: 5 s (Node's).
  std::chrono::milliseconds keep_alive_timeout{5'000};
  /// A connection whose answer makes no progress this long (the client
  /// stopped reading) is closed. An answer that goes out, however slowly,
  /// is never cut. Default: 60 s (nginx's send_timeout).
  std::chrono::milliseconds send_timeout{60'000};
  /// Hears of every request once, on a later turn than its answer: when the
  /// whole answer went to the socket, or when the connection went first
  /// (`answered` false). Not after the server is destroyed. Default: none,
  /// and then nothing is recorded.
  std::function<void(const answer_record&)> on_answer;
};

/// An HTTP/1.1 server on one loop: a tcp::server and the connections it
/// accepts, or that are handed to it. Loop thread only. Move-only; the
/// tcp::server keeps its address for the server's life.
///
/// Destroying it closes the listener and every connection at once, in any
/// state (before listening, while serving, inside its own handler, during a
/// close): no handler or event of it runs afterwards, and a pending close()'s
/// done still runs once, on a later turn. close() is the graceful way.
class server : private crew::detail::handle_owner {
 public:
  /// A server whose requests all go to `h`, each with its whole body.
  explicit server(handler h, server_options options = {}, loop& l = loop::current());
  /// A server whose requests go to `routes`; routes with stream_body stream.
  explicit server(router routes, server_options options = {}, loop& l = loop::current());

  /// The TCP server underneath: listen() on it, or listen_fd() a socket bound
  /// elsewhere, adopt_connection() one accepted elsewhere (a cluster's hand-
  /// off), pause(), ref()... Not on a server moved from.
  tcp::server& tcp() noexcept;
  operator tcp::server&() noexcept { return tcp(); }  // NOLINT: implicit, so that cluster::listen takes either

  /// tcp().listen(port, host): binds and listens, returns the port (the
  /// kernel's choice for 0). Errors: EADDRINUSE, EACCES, EINVAL (a bad host),
  /// EALREADY, EBADF on a server moved from.
  [[nodiscard]] result<int> listen(int port, const std::string& host = "127.0.0.1");

  /// Graceful close: stops accepting (connections waiting in the listener's
  /// queue are taken and served first), lets the requests in flight finish
  /// (their answers go out with Connection: close), gives idle keep-alive
  /// connections 100 ms for a request already on its way (answered the same
  /// way) before closing them, then runs done. done runs exactly once, never
  /// inside close(); on a server closed already, on the loop's next turn.
  void close(unique_function<void()> done = {});

  /// Open connections.
  std::size_t connections() const noexcept;
  /// Answers handed to the network since the start.
  std::uint64_t requests_served() const noexcept;
  /// Bytes held for the connections: answers not yet sent, and input read but
  /// not yet parsed while reading waits. Pipelining cannot grow it past about
  /// stream::high_water_mark per connection, plus the answer in progress.
  std::size_t buffered_bytes() const noexcept;

 private:
  server(handler h, std::optional<router> routes, server_options options, loop& l);
  detail::server_state* state() const noexcept;
};

/// The reason phrase of a status code ("Not Found"); "" for unknown codes.
std::string_view reason(int status) noexcept;

}  // namespace crew::http
