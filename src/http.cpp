#include "crew/http.hpp"

#include <llhttp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <deque>

namespace crew::http {
namespace detail {

struct connection;

// One request and its answer. Shared by the connection's queue and the
// handler's response object; the connection forgets it once written.
struct exchange {
  request req;
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type;
  bool sent = false;
  bool close_after = false;    // Connection: close on this answer, then close
  connection* conn = nullptr;  // null once the connection is gone
};

// The server: a timer that keeps the Date header fresh and sweeps the
// connections' timeouts (once per 250 ms, like nginx's coarse timers), and a
// listening socket of its own allocation.
struct server_state final : crew::detail::handle_state {
  server_state(crew::loop& l, handler h, server_options o);
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&clock); }
  void on_closing() noexcept override;

  std::error_code start_listening(int backlog);
  void accept_waiting();
  void close_listener() noexcept;
  void sweep();
  void update_date();
  void maybe_finish_close();
  void serve(const std::shared_ptr<exchange>& e);
  std::string serialize(exchange& e);

  uv_timer_t clock;
  uv_tcp_t* listener = nullptr;
  handler on_request;
  server_options options;
  std::vector<connection*> connections;
  std::uint64_t served = 0;
  std::string date;  // "Date: ...\r\n"
  bool draining = false;
  crew::unique_function<void()> drained;
};

struct connection final : crew::detail::handle_state {
  connection(crew::loop& l, server_state* s);
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&tcp); }
  void on_closing() noexcept override;

  void start();
  void on_data(const char* data, std::size_t size);
  void fail(int status);  // answers an error and closes after it
  void flush();
  bool idle() const noexcept { return queue.empty() && !in_headers && !in_body; }

  // llhttp callbacks
  static int on_message_begin(llhttp_t* p);
  static int on_url(llhttp_t* p, const char* at, std::size_t length);
  static int on_header_field(llhttp_t* p, const char* at, std::size_t length);
  static int on_header_value(llhttp_t* p, const char* at, std::size_t length);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, std::size_t length);
  static int on_message_complete(llhttp_t* p);
  static const llhttp_settings_t settings;

  bool count_header_bytes(std::size_t n);

  uv_tcp_t tcp;
  server_state* server;
  llhttp_t parser;
  std::shared_ptr<exchange> current;
  std::deque<std::shared_ptr<exchange>> queue;  // in request order; the front is answered first
  std::size_t header_bytes = 0;
  bool in_headers = false;
  bool in_body = false;
  bool field_done = true;  // the next header bytes start a new field
  bool failed = false;     // an error answer is queued: read no more
  uint64_t deadline = 0;   // uv_now() past which the sweep acts (0: none)
  char buffer[64 * 1024];
};

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? x - 'A' + 'a' : x) == (y >= 'A' && y <= 'Z' ? y - 'A' + 'a' : y);
         });
}

connection* self(llhttp_t* p) { return static_cast<connection*>(p->data); }

// How long close() leaves an idle keep-alive connection open for a request
// that may already be on its way.
constexpr uint64_t close_grace_ms = 100;

}  // namespace

const llhttp_settings_t connection::settings = [] {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = &connection::on_message_begin;
  s.on_url = &connection::on_url;
  s.on_header_field = &connection::on_header_field;
  s.on_header_value = &connection::on_header_value;
  s.on_headers_complete = &connection::on_headers_complete;
  s.on_body = &connection::on_body;
  s.on_message_complete = &connection::on_message_complete;
  return s;
}();

server_state::server_state(crew::loop& l, handler h, server_options o)
    : handle_state(l), on_request(std::move(h)), options(o) {
  uv_timer_init(l.native(), &clock);
  update_date();
}

void server_state::update_date() {
  char text[64];
  std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  std::size_t n = std::strftime(text, sizeof text, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &utc);
  date.assign(text, n);
}

std::error_code server_state::start_listening(int backlog) {
  int rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener), backlog, [](uv_stream_t* l, int status) {
    auto* s = static_cast<server_state*>(l->data);
    if (status < 0 || s->draining) return;
    auto* c = new connection(s->loop, s);
    if (uv_accept(l, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
      c->close();  // EMFILE and the like: the connection waits in the kernel's queue
      return;
    }
    c->start();
  });
  if (rc != 0) return uv_error(rc);
  uv_timer_start(&clock, [](uv_timer_t* t) { static_cast<server_state*>(t->data)->sweep(); }, 250, 250);
  uv_unref(uv());  // the clock alone never keeps the loop alive
  return {};
}

// Connections already in the kernel's queue would be reset when the listener
// closes (its own queue, with SO_REUSEPORT): they are taken and served first.
void server_state::accept_waiting() {
  uv_os_fd_t fd;
  if (!listener || uv_fileno(reinterpret_cast<uv_handle_t*>(listener), &fd) != 0) return;
  for (int client; (client = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
    auto* c = new connection(loop, this);
    if (uv_tcp_open(&c->tcp, client) != 0) {
      ::close(client);
      c->close();
      continue;
    }
    c->start();
  }
}

void server_state::close_listener() noexcept {
  if (!listener) return;
  uv_close(reinterpret_cast<uv_handle_t*>(listener), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
  listener = nullptr;
}

void server_state::on_closing() noexcept {
  close_listener();
  for (connection* c : std::vector<connection*>(connections)) c->close();
}

void server_state::sweep() {
  update_date();
  uint64_t now = uv_now(loop.native());
  for (connection* c : std::vector<connection*>(connections)) {
    if (c->closing || c->deadline == 0 || now < c->deadline) continue;
    if (c->in_headers)
      c->fail(408);  // the headers took too long
    else if (c->idle())
      c->close();  // keep-alive timeout
  }
  if (draining) maybe_finish_close();
}

void server_state::maybe_finish_close() {
  if (!connections.empty() || closing) return;
  auto done = std::move(drained);
  close();
  if (done) loop.invoke(done);
}

std::string server_state::serialize(exchange& e) {
  std::string_view phrase = reason(e.status);
  std::string head;
  head.reserve(160 + e.body.size());
  head += "HTTP/1.1 ";
  head += std::to_string(e.status);
  head += ' ';
  head += phrase.empty() ? "Unknown" : phrase;
  head += "\r\n";
  head += date;
  head += "Content-Length: ";
  head += std::to_string(e.body.size());
  head += "\r\n";
  if (!e.content_type.empty()) head += "Content-Type: " + e.content_type + "\r\n";
  for (const auto& [name, value] : e.headers) head += name + ": " + value + "\r\n";
  if (e.close_after) head += "Connection: close\r\n";
  head += "\r\n";
  if (e.req.method != "HEAD") head += e.body;
  return head;
}

void server_state::serve(const std::shared_ptr<exchange>& e) {
  response res(e);  // shares the exchange: the handler may answer later
  loop.invoke(on_request, e->req, res);
}

connection::connection(crew::loop& l, server_state* s) : handle_state(l), server(s) {
  uv_tcp_init(l.native(), &tcp);
  attach(nullptr);  // owned by the server, closed by it or by the loop
  server->connections.push_back(this);
}

void connection::start() {
  uv_tcp_nodelay(&tcp, 1);
  llhttp_init(&parser, HTTP_REQUEST, &settings);
  parser.data = this;
  deadline = uv_now(loop.native()) + static_cast<uint64_t>(server->options.keep_alive_timeout.count());
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&tcp),
      [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
        auto* c = static_cast<connection*>(h->data);
        *buf = uv_buf_init(c->buffer, sizeof c->buffer);
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
        auto* c = static_cast<connection*>(s->data);
        if (n < 0) return c->close();  // EOF or reset: answers still owed have nobody to go to
        if (n > 0) c->on_data(c->buffer, static_cast<std::size_t>(n));
      });
}

void connection::on_closing() noexcept {
  for (auto& e : queue) e->conn = nullptr;
  if (current) current->conn = nullptr;
  queue.clear();
  std::erase(server->connections, this);
}

void connection::on_data(const char* data, std::size_t size) {
  if (failed) return;
  llhttp_errno_t rc = llhttp_execute(&parser, data, size);
  if (rc == HPE_OK || closing || failed) return;
  fail(400);  // malformed: this connection only
}

void connection::fail(int status) {
  if (failed || closing) return;
  failed = true;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp));
  auto e = std::make_shared<exchange>();
  e->status = status;
  e->body = std::string(reason(status)) + "\n";
  e->content_type = "text/plain; charset=utf-8";
  e->close_after = true;
  e->sent = true;
  e->conn = this;
  current.reset();
  in_headers = in_body = false;
  queue.push_back(std::move(e));
  flush();
}

bool connection::count_header_bytes(std::size_t n) {
  header_bytes += n;
  if (header_bytes <= server->options.max_header_bytes) return true;
  fail(431);
  return false;
}

int connection::on_message_begin(llhttp_t* p) {
  connection* c = self(p);
  c->current = std::make_shared<exchange>();
  c->current->conn = c;
  c->header_bytes = 0;
  c->in_headers = true;
  c->field_done = true;
  c->deadline = uv_now(c->loop.native()) + static_cast<uint64_t>(c->server->options.headers_timeout.count());
  return 0;
}

int connection::on_url(llhttp_t* p, const char* at, std::size_t length) {
  connection* c = self(p);
  if (!c->count_header_bytes(length)) return -1;
  c->current->req.target.append(at, length);
  return 0;
}

int connection::on_header_field(llhttp_t* p, const char* at, std::size_t length) {
  connection* c = self(p);
  if (!c->count_header_bytes(length)) return -1;
  auto& headers = c->current->req.headers;
  if (c->field_done) headers.emplace_back();
  c->field_done = false;
  headers.back().first += lower(std::string_view(at, length));
  return 0;
}

int connection::on_header_value(llhttp_t* p, const char* at, std::size_t length) {
  connection* c = self(p);
  if (!c->count_header_bytes(length)) return -1;
  c->field_done = true;
  if (c->current->req.headers.empty()) return -1;
  c->current->req.headers.back().second.append(at, length);
  return 0;
}

int connection::on_headers_complete(llhttp_t* p) {
  connection* c = self(p);
  request& r = c->current->req;
  r.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  std::size_t q = r.target.find('?');
  r.path = r.target.substr(0, q);
  r.query = q == std::string::npos ? "" : r.target.substr(q + 1);
  r.keep_alive = llhttp_should_keep_alive(p) != 0;
  c->in_headers = false;
  c->in_body = true;
  c->deadline = 0;  // a body may take its time; the client chose its size
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->server->options.max_body_bytes) {
    c->fail(413);
    return -1;
  }
  return 0;
}

int connection::on_body(llhttp_t* p, const char* at, std::size_t length) {
  connection* c = self(p);
  std::string& body = c->current->req.body;
  if (body.size() + length > c->server->options.max_body_bytes) {
    c->fail(413);  // chunked bodies learn their size only now
    return -1;
  }
  body.append(at, length);
  return 0;
}

int connection::on_message_complete(llhttp_t* p) {
  connection* c = self(p);
  c->in_body = false;
  std::shared_ptr<exchange> e = std::move(c->current);
  e->close_after = !e->req.keep_alive || c->server->draining;
  c->queue.push_back(e);
  c->server->serve(e);
  // The handler may have closed the connection (or the server): stop parsing.
  if (c->closing) return HPE_PAUSED;
  if (e->close_after) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->tcp));
    c->failed = true;  // read nothing after a request that ends the connection
    return HPE_PAUSED;
  }
  return 0;
}

void connection::flush() {
  struct write_request {
    uv_write_t req;
    std::vector<std::string> pieces;
    bool close_after = false;
  };
  if (queue.empty() || !queue.front()->sent) return;  // the answer first in line is not ready
  auto* w = new write_request;
  while (!queue.empty() && queue.front()->sent) {
    exchange& e = *queue.front();
    if (server->draining) e.close_after = true;  // the last answer of a server that is closing
    w->pieces.push_back(server->serialize(e));
    w->close_after = w->close_after || e.close_after;
    e.conn = nullptr;
    queue.pop_front();
    ++server->served;
    if (w->close_after) break;
  }
  std::vector<uv_buf_t> bufs;
  bufs.reserve(w->pieces.size());
  for (std::string& piece : w->pieces) bufs.push_back(uv_buf_init(piece.data(), static_cast<unsigned>(piece.size())));
  // Most answers fit the socket's buffer: written at once, they need no write
  // request (whose completion makes libuv re-arm the socket in epoll).
  int written = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp), bufs.data(), static_cast<unsigned>(bufs.size()));
  std::size_t skip = written > 0 ? static_cast<std::size_t>(written) : 0;
  while (!bufs.empty() && skip >= bufs.front().len) {
    skip -= bufs.front().len;
    bufs.erase(bufs.begin());
  }
  if (bufs.empty() || (written < 0 && written != UV_EAGAIN)) {
    bool close_after = w->close_after || written < 0;
    delete w;
    if (close_after) return close();
  } else {
    bufs.front().base += skip;
    bufs.front().len -= skip;
    w->req.data = this;
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp), bufs.data(), static_cast<unsigned>(bufs.size()),
                      [](uv_write_t* req, int status) {
                        auto* done = reinterpret_cast<write_request*>(req);
                        auto* c = static_cast<connection*>(req->data);
                        bool close = done->close_after || status < 0;
                        delete done;
                        if (close && !c->closing) c->close();
                      });
    if (rc != 0) {
      delete w;
      return close();
    }
  }
  if (queue.empty() && !in_headers && !in_body)
    deadline = uv_now(loop.native()) + static_cast<uint64_t>(server->options.keep_alive_timeout.count());
}

}  // namespace detail

std::string_view request::header(std::string_view name) const noexcept {
  for (const auto& [n, v] : headers)
    if (detail::iequals(n, name)) return v;
  return {};
}

result<message::value_type> request::json() const {
  auto parsed = message::parse(body);
  if (!parsed) return parsed.error();
  return std::move(*parsed).value();
}

response& response::status(int code) noexcept {
  if (exchange_) exchange_->status = code;
  return *this;
}

response& response::set_header(std::string name, std::string value) {
  if (exchange_) exchange_->headers.emplace_back(std::move(name), std::move(value));
  return *this;
}

void response::send(std::string body, std::string content_type) {
  if (!exchange_ || exchange_->sent) return;
  exchange_->body = std::move(body);
  exchange_->content_type = std::move(content_type);
  exchange_->sent = true;
  if (detail::connection* c = exchange_->conn) c->flush();
}

void response::json(const message::value_type& value) {
  std::string text;
  message(value).append_to(text);
  send(std::move(text), "application/json");
}

bool response::sent() const noexcept { return exchange_ && exchange_->sent; }

router& router::route(std::string method, std::string path, handler h) {
  routes_.push_back({std::move(method), std::move(path), std::move(h)});
  return *this;
}

void router::operator()(request& req, response& res) {
  std::string allow;
  for (entry& e : routes_) {
    if (e.path != req.path) continue;
    if (e.method == req.method || (req.method == "HEAD" && e.method == "GET")) return e.h(req, res);
    allow += allow.empty() ? e.method : ", " + e.method;
  }
  if (allow.empty()) return res.status(404).send("Not Found\n");
  res.status(405).set_header("Allow", allow).send("Method Not Allowed\n");
}

server::server(handler h, server_options options, loop& l) {
  auto* s = new detail::server_state(l, std::move(h), options);
  adopt(s);
}

detail::server_state* server::state() const noexcept { return state_as<detail::server_state>(); }

result<int> server::listen(int port, const std::string& host, int backlog) {
  detail::server_state* s = state();
  if (!s) return uv_error(UV_EBADF);
  if (s->listener) return uv_error(UV_EALREADY);
  sockaddr_storage address{};
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&address)) != 0 &&
      uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&address)) != 0)
    return uv_error(UV_EINVAL);
  auto* tcp = new uv_tcp_t;
  uv_tcp_init(s->loop.native(), tcp);
  tcp->data = s;
  s->listener = tcp;
  int rc = uv_tcp_bind(tcp, reinterpret_cast<const sockaddr*>(&address), 0);
  std::error_code ec = rc == 0 ? s->start_listening(backlog) : uv_error(rc);
  if (ec) {
    s->close_listener();
    return ec;
  }
  sockaddr_storage bound{};
  int length = sizeof bound;
  uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&bound), &length);
  return ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);  // same offset in sockaddr_in6
}

std::error_code server::listen_fd(int fd) {
  detail::server_state* s = state();
  if (!s || s->listener) return uv_error(s ? UV_EALREADY : UV_EBADF);
  auto* tcp = new uv_tcp_t;
  uv_tcp_init(s->loop.native(), tcp);
  tcp->data = s;
  s->listener = tcp;
  std::error_code ec;
  if (int rc = uv_tcp_open(tcp, fd)) ec = uv_error(rc);
  if (!ec) ec = s->start_listening(511);
  if (ec) s->close_listener();
  return ec;
}

std::error_code server::serve_fd(int fd) {
  detail::server_state* s = state();
  if (!s || s->draining) return uv_error(UV_EBADF);
  auto* c = new detail::connection(s->loop, s);
  if (int rc = uv_tcp_open(&c->tcp, fd)) {
    c->close();
    return uv_error(rc);
  }
  c->start();
  return {};
}

void server::close(crew::unique_function<void()> done) {
  detail::server_state* s = state();
  if (!s) {  // closed already (or never opened): nothing to wait for
    if (done) crew::loop::current().post(std::move(done));
    return;
  }
  s->draining = true;
  s->drained = std::move(done);
  release();  // the block closes itself once the last connection has
  s->accept_waiting();
  s->close_listener();
  // An idle keep-alive connection may have a request on its way: it gets a
  // short grace in which that request is answered (with Connection: close).
  uint64_t grace_end = uv_now(s->loop.native()) + detail::close_grace_ms;
  for (detail::connection* c : s->connections)
    if (c->idle() && (c->deadline == 0 || c->deadline > grace_end)) c->deadline = grace_end;
  // Connections still answering close after their answer (Connection: close);
  // the clock checks for the end, so `done` never runs inside this call.
  uv_timer_start(&s->clock, [](uv_timer_t* t) { static_cast<detail::server_state*>(t->data)->sweep(); }, 0, 50);
  uv_ref(s->uv());  // the drain keeps the loop alive until it ends
}

std::size_t server::connections() const noexcept { return state() ? state()->connections.size() : 0; }

std::uint64_t server::requests_served() const noexcept { return state() ? state()->served : 0; }

std::string_view reason(int status) noexcept {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "";
  }
}

}  // namespace crew::http
