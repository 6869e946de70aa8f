// Bytes out: the response API, its checks (nothing but HTTP reaches the wire),
// rendering of heads and bodies, and writing a connection's answers in
// request order, several at once when pipelined, each batch in one buffer.
#include <algorithm>
#include <charconv>
#include <cstring>

#include "detail/http_state.hpp"

namespace crew::http {
namespace detail {

bool token_char(char c) noexcept {
  bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return alnum || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool token(std::string_view name) noexcept {
  return !name.empty() && std::all_of(name.begin(), name.end(), token_char);
}

namespace {

// RFC 9110 5.5: no control character but horizontal tab (so no CR, LF, NUL).
bool field_value(std::string_view value) noexcept {
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) return false;
  }
  return true;
}

[[noreturn]] void refuse(crew::errc code, const char* what) { throw std::system_error(make_error_code(code), what); }

// Measures, then copies: each batch goes out as one buffer of the right size.
struct measure {
  std::size_t n = 0;
  void operator()(std::string_view s) noexcept { n += s.size(); }
};
struct copy_into {
  char* at;
  void operator()(std::string_view s) noexcept {
    if (s.empty()) return;
    std::memcpy(at, s.data(), s.size());
    at += s.size();
  }
};

template <class Number>
std::string_view digits(char (&text)[24], Number n, int base = 10) noexcept {
  auto [end, ec] = std::to_chars(text, text + sizeof text, n, base);
  return {text, static_cast<std::size_t>(end - text)};
}

// A streamed answer's bytes: framed as one chunk, or as they are for HTTP/1.0.
void append_body(exchange& e, std::string_view bytes) {
  if (bytes.empty() || !e.body_allowed()) return;
  e.body_bytes += bytes.size();
  if (!e.chunked) {
    e.held.append(bytes);
    return;
  }
  char text[24];
  e.held.append(digits(text, bytes.size(), 16)).append("\r\n").append(bytes).append("\r\n");
}

void notify_drain(server_state& s, std::shared_ptr<exchange> e) {
  s.defer([&s, e = std::move(e)] {
    if (s.closing || !e->conn || !e->need_drain || e->conn->congested) return;
    e->need_drain = false;
    e->fire_drain(s.loop);
  });
}

}  // namespace

bool exchange::bodiless_status() const noexcept { return status < 200 || status == 204 || status == 304; }

void exchange::fire_drain(crew::loop& l) {
  auto fn = std::move(drain_event);
  l.invoke(fn);
  if (!drain_event && !finished && conn) drain_event = std::move(fn);
}

void exchange::drop_events() noexcept {
  data_event = {};
  end_event = {};
  drain_event = {};
  close_event = {};
}

bool exchange::body_allowed() const noexcept { return !bodiless_status() && req.method != "HEAD"; }

template <class Sink>
void connection::render_head(const exchange& e, Sink& out) const {
  char text[24];
  out("HTTP/1.1 ");
  out(digits(text, e.status));
  out(" ");
  std::string_view phrase = e.reason.empty() ? reason(e.status) : std::string_view(e.reason);
  out(phrase.empty() ? std::string_view("Unknown") : phrase);
  out("\r\n");
  out(server.date);
  bool typed = false;
  for (const auto& [name, value] : e.headers) typed = typed || iequals(name, "content-type");
  if (!e.content_type.empty() && !typed) {
    out("Content-Type: ");
    out(e.content_type);
    out("\r\n");
  }
  if (!e.bodiless_status()) {
    if (!e.started) {
      out("Content-Length: ");
      out(digits(text, e.body.size()));
      out("\r\n");
    } else if (e.chunked) {
      out("Transfer-Encoding: chunked\r\n");
    }
  }
  for (const auto& [name, value] : e.headers) {
    out(name);
    out(": ");
    out(value);
    out("\r\n");
  }
  if (e.close_after)
    out("Connection: close\r\n");
  else if (e.req.version < 11)
    out("Connection: keep-alive\r\n");
  out("\r\n");
}

// What the exchange first in line has ready: the interim 100 Continue, the
// head (with send()'s body), a streamed answer's held chunks.
template <class Sink>
void connection::render(const exchange& e, Sink& out) const {
  bool answering = e.started || e.finished;
  if (e.continue_owed && !answering) out("HTTP/1.1 100 Continue\r\n\r\n");
  if (!e.head_sent && answering) {
    render_head(e, out);
    if (!e.started && e.body_allowed()) out(e.body);
  }
  out(e.held);
}

void connection::flush() {
  if (retired || ending || queue.empty()) return;
  server.date_line();  // current before any head is rendered
  // The exchanges first in line whose bytes are ready: up to the first
  // unfinished answer, or the connection's last.
  measure size;
  std::size_t count = 0;
  for (const std::shared_ptr<exchange>& e : queue) {
    // An answer begun before its request's body is in ends the connection:
    // the rest of the body is not read.
    if (!e->head_sent && (e->started || e->finished) && !e->body_complete) e->close_after = true;
    render(*e, size);
    ++count;
    if (!e->finished || e->close_after) break;
  }
  buffer out(size.n);
  if (size.n > 0) {
    copy_into copy{reinterpret_cast<char*>(out.data())};
    for (std::size_t i = 0; i < count; ++i) render(*queue[i], copy);
  }
  bool last = false;
  for (std::size_t i = 0; i < count && !last; ++i) {
    exchange& e = *queue.front();
    e.continue_owed = false;
    if (e.started || e.finished) e.head_sent = true;
    e.held.clear();
    if (!e.finished) break;
    last = e.close_after;
    e.conn = nullptr;
    e.drain_event = {};  // the answer is out: neither runs again
    e.close_event = {};
    ++server.served;
    server.record(queue.front(), true);
    queue.pop_front();
  }
  if (size.n > 0) {
    written += size.n;
    if (!sock.write(std::move(out))) congested = true;
  }
  if (last || (state == phase::done && queue.empty())) return finish_writing();
  if (!queue.empty() && queue.front()->need_drain && !congested) notify_drain(server, queue.front());
  if (queue.empty() && state == phase::idle && sock.buffered() == 0) idle_since = uv_now(server.loop.native());
  if (sock.paused() && !congested) schedule_resume();  // room for the requests waiting
}

void connection::finish_writing() {
  ending = true;
  unread_input = unread_input || state == phase::headers || state == phase::body;  // a request half read
  state = phase::done;
  held_input.clear();
  if (sock.buffered() == 0 && !unread_input) return retire();
  // The client may still be sending: closing now would reset the connection,
  // which can destroy the answer in the client's receive buffer. So our side
  // ends once the answer is out, what the client still sends is read and
  // dropped, and the socket closes when the client closes (or after the
  // linger, see check()).
  sock.end();
  sock.resume();
}

}  // namespace detail

// -- response

response& response::operator=(response&& other) noexcept {
  if (this != &other) {
    abandon();
    exchange_ = std::move(other.exchange_);
  }
  return *this;
}

response::~response() { abandon(); }

void response::abandon() noexcept {
  detail::exchange* e = exchange_.get();
  if (!e || e->finished || !e->conn) return;
  if (!e->started) {
    e->status = 500;
    e->reason.clear();
    e->headers.clear();
    e->content_type = "text/plain; charset=utf-8";
    e->body = "Internal Server Error\n";
  } else {
    e->close_after = true;  // a streamed answer cut short: no last chunk, the close says so
  }
  e->finished = true;
  e->conn->flush();
}

response& response::status(int code, std::string_view why) {
  if (code < 100 || code > 999) detail::refuse(errc::http_invalid_status_code, "http::response::status");
  if (!detail::field_value(why)) detail::refuse(errc::invalid_char, "http::response::status");
  detail::exchange* e = exchange_.get();
  if (!e) return *this;
  if (e->server_answered) return *this;  // a timeout or a limit answered in the handler's place
  if (e->started || e->finished) detail::refuse(errc::http_headers_sent, "http::response::status");
  e->status = code;
  e->reason.assign(why);
  return *this;
}

response& response::set_header(std::string name, std::string value) {
  if (!detail::token(name)) detail::refuse(errc::invalid_http_token, "http::response::set_header");
  if (!detail::field_value(value)) detail::refuse(errc::invalid_char, "http::response::set_header");
  if (detail::iequals(name, "content-length") || detail::iequals(name, "transfer-encoding"))
    detail::refuse(errc::http_invalid_header_value, "http::response::set_header");
  detail::exchange* e = exchange_.get();
  if (!e) return *this;
  if (e->server_answered) return *this;  // a timeout or a limit answered in the handler's place
  if (e->started || e->finished) detail::refuse(errc::http_headers_sent, "http::response::set_header");
  if (detail::iequals(name, "connection")) {
    if (detail::iequals(value, "close")) e->close_after = true;
    return *this;  // the server writes Connection itself
  }
  e->headers.emplace_back(std::move(name), std::move(value));
  return *this;
}

void response::send(std::string body, std::string content_type) {
  if (!detail::field_value(content_type)) detail::refuse(errc::invalid_char, "http::response::send");
  detail::exchange* e = exchange_.get();
  if (!e || e->started || e->finished) return;
  e->body = std::move(body);
  e->body_bytes = e->body_allowed() ? e->body.size() : 0;
  e->content_type = std::move(content_type);
  e->finished = true;
  if (e->conn) e->conn->flush();
}

void response::json(const message::value_type& value) {
  std::string text;
  message::append_json(text, value);
  send(std::move(text), "application/json");
}

bool response::write(std::string_view chunk) {
  detail::exchange* e = exchange_.get();
  if (!e || e->finished || !e->conn) return false;
  if (!e->started) {
    e->started = true;
    e->chunked = e->req.version >= 11;
    if (!e->chunked) e->close_after = true;  // for HTTP/1.0 the close ends the body
  }
  detail::append_body(*e, chunk);
  detail::connection* c = e->conn;
  c->flush();
  bool room = e->conn && (e->held.empty() ? !c->congested : e->held.size() < stream::high_water_mark);
  if (!room) e->need_drain = true;
  return room;
}

void response::end(std::string_view last) {
  detail::exchange* e = exchange_.get();
  if (!e || e->finished) return;
  if (!e->started) {
    e->body.assign(last);  // not begun: one whole answer, with its length
  } else {
    detail::append_body(*e, last);
    if (e->chunked && e->body_allowed()) e->held.append("0\r\n\r\n");
  }
  e->finished = true;
  if (e->conn) e->conn->flush();
}

void response::on_drain(unique_function<void()> fn) {
  if (exchange_) exchange_->drain_event = std::move(fn);
}

void response::on_close(unique_function<void()> fn) {
  if (exchange_) exchange_->close_event = std::move(fn);
}

bool response::sent() const noexcept { return exchange_ && exchange_->finished; }

bool response::headers_sent() const noexcept { return exchange_ && (exchange_->started || exchange_->finished); }

std::string_view reason(int status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
  }
}

}  // namespace crew::http
