// Bytes in: llhttp turns a connection's input into requests. Every raw byte is
// counted against the limits (whitespace and empty lines included, as Node
// 20.11 does since CVE-2024-22019); the parser pauses at each request's end
// (and, for a body streamed to its handler, at the headers' end and at each
// piece), so that handlers run outside llhttp, at exact positions, and reading
// can stop between two requests.
#include <algorithm>

#include "detail/http_state.hpp"

namespace crew::http {
namespace detail {

namespace {

connection* self(llhttp_t* p) { return static_cast<connection*>(p->data); }

// Counts a piece the parser reported (and what came before it) against the limits.
int counted(llhttp_t* p, const char* at, std::size_t length) { return self(p)->count_to(at + length) ? 0 : -1; }

int on_message_begin(llhttp_t* p) {
  connection* c = self(p);
  c->current = std::make_shared<exchange>(c);
  c->field_done = true;
  c->in_trailers = false;
  c->line_start = false;
  return 0;
}

int on_url(llhttp_t* p, const char* at, std::size_t length) {
  if (counted(p, at, length) != 0) return -1;
  self(p)->current->req.target.append(at, length);
  return 0;
}

// Header fields before the body; trailer fields after a chunked one.
header_list& fields(connection* c) {
  request& r = c->current->req;
  return c->state == connection::phase::body ? r.trailers : r.headers;
}

int on_header_field(llhttp_t* p, const char* at, std::size_t length) {
  if (counted(p, at, length) != 0) return -1;
  connection* c = self(p);
  header_list& list = fields(c);
  if (c->field_done) list.emplace_back();
  c->field_done = false;
  std::string& name = list.back().first;
  for (const char* q = at; q != at + length; ++q) {
    // Debian's llhttp 8 lets a space into a field name ("Content Length: 5");
    // Node 20's llhttp 9 refuses it, and so does crew: 400.
    if (!token_char(*q)) return -1;
    name += static_cast<char>(*q >= 'A' && *q <= 'Z' ? *q - 'A' + 'a' : *q);
  }
  return 0;
}

int on_header_value(llhttp_t* p, const char* at, std::size_t length) {
  if (counted(p, at, length) != 0) return -1;
  connection* c = self(p);
  c->field_done = true;
  header_list& list = fields(c);
  if (list.empty() || list.back().first.empty()) return -1;  // ": value", refused as by Node 20
  list.back().second.append(at, length);
  return 0;
}

int on_headers_complete(llhttp_t* p) {
  // crew switches no protocol: an Upgrade request is an ordinary request
  // (RFC 9110 lets a server ignore Upgrade). CONNECT stays one: nothing after
  // it is HTTP, so it is answered and the connection closes.
  if (p->method != HTTP_CONNECT) p->upgrade = 0;
  return self(p)->headers_complete();
}

int on_chunk_header(llhttp_t* p) {
  connection* c = self(p);
  if (p->content_length == 0) c->in_trailers = true;  // the last chunk: trailers follow
  exchange& e = *c->current;
  if (!e.streamed && e.req.body.size() + p->content_length > c->server.options.max_body_bytes) {
    c->error_status = 413;  // a chunk larger than the body may be: no need to wait for it
    return -1;
  }
  return 0;
}

int on_body(llhttp_t* p, const char* at, std::size_t length) {
  // An open body span is reported at the end of each input, even an empty one.
  if (length == 0) return 0;
  connection* c = self(p);
  if (!c->count_to(at)) return -1;  // the chunk line before these bytes
  c->framing_bytes = 0;
  c->mark = at + length;
  if ((p->flags & F_CHUNKED) && p->content_length == 0) {
    // The chunk's last bytes: CRLF must follow. Debian's llhttp 8 takes any two
    // bytes there, which lets a request hide in a body; Node 20 and crew refuse.
    c->crlf_owed = 2;
    if (!c->chunk_end_ok(at + length)) return -1;
  }
  exchange& e = *c->current;
  if (e.streamed) {
    c->piece = {at, length};
    c->pending = connection::event::body_piece;
    return HPE_PAUSED;
  }
  if (e.req.body.size() + length > c->server.options.max_body_bytes) {
    c->error_status = 413;  // a chunked body learns its size only now
    return -1;
  }
  e.req.body.append(at, length);
  return 0;
}

int on_message_complete(llhttp_t* p) {
  self(p)->pending = connection::event::message_done;
  return HPE_PAUSED;
}

// The error a streamed body's on_end hears when the request fails.
std::error_code cause_of(int status) { return uv_error(status == 408 ? UV_ETIMEDOUT : UV_EPROTO); }

}  // namespace

const llhttp_settings_t parser_settings = [] {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = on_message_begin;
  s.on_method = counted;
  s.on_url = on_url;
  s.on_version = counted;
  s.on_header_field = on_header_field;
  s.on_header_value = on_header_value;
  s.on_chunk_extension_name = counted;
  s.on_chunk_extension_value = counted;
  s.on_headers_complete = on_headers_complete;
  s.on_chunk_header = on_chunk_header;
  s.on_body = on_body;
  s.on_message_complete = on_message_complete;
  return s;
}();

void exchange::end_body(crew::loop& l, std::error_code ec) {
  if (end_result) return;
  end_result = ec;
  body_complete = !ec;
  data_event = {};
  if (!end_event) return;  // on_end hears it once set
  end_reported = true;
  auto fn = std::move(end_event);
  l.invoke(fn, ec);
}

void exchange::fire_data(crew::loop& l, std::string_view chunk) {
  auto fn = std::move(data_event);
  l.invoke(fn, chunk);
  if (!data_event && !end_result && conn) data_event = std::move(fn);
}

bool connection::chunk_end_ok(const char* from) {
  for (; crlf_owed > 0 && from < input_end; ++from, --crlf_owed)
    if (*from != (crlf_owed == 2 ? '\r' : '\n')) return false;
  return true;
}

bool connection::count_to(const char* at) {
  std::size_t n = static_cast<std::size_t>(at - mark);
  if (state != phase::body || in_trailers) {
    // A header (or trailer) line that starts with a space or a tab continues the
    // line before it (obs-fold): Debian's llhttp 8 joins them, Node 20 refuses
    // with 400, and so does crew (RFC 9112 5.2 allows either).
    for (const char* q = mark; q < at; ++q) {
      if (line_start && (*q == ' ' || *q == '\t')) {
        error_status = 400;
        return false;
      }
      line_start = *q == '\n';
    }
  }
  mark = at;
  std::size_t limit = server.options.max_header_bytes;
  if (state == phase::body) {
    framing_bytes += n;
    if (framing_bytes <= limit) return true;
    error_status = in_trailers ? 431 : 413;  // trailers are header fields; a chunk line is the body's
  } else {
    header_bytes += n;
    if (header_bytes <= limit) return true;
    error_status = 431;
  }
  return false;
}

void connection::feed(const char* data, std::size_t size) {
  const char* p = data;
  const char* end = data + size;
  input_end = end;
  // The rest of a chunk's CRLF, when the last input ended before it.
  if (crlf_owed > 0 && !chunk_end_ok(p)) return fail(400);
  // After a pause the parser runs on even with no byte left: a request
  // without a body completes right after its headers.
  for (;;) {
    if (state == phase::done || retired) {
      unread_input = unread_input || p < end;  // read and dropped: the connection is ending
      return;
    }
    if (reading_stopped()) return hold(p, end);
    if (state == phase::idle) {
      if (p == end) return;
      // The first byte of a request starts its clock (a fresh connection's
      // started when it opened).
      if (!fresh) request_start = uv_now(server.loop.native());
      fresh = false;
      idle_since = 0;
      state = phase::headers;
    }
    mark = p;
    pending = event::none;
    llhttp_errno_t rc = llhttp_execute(&parser, p, static_cast<std::size_t>(end - p));
    if (retired) return;
    const char* at = rc == HPE_OK ? end : llhttp_get_error_pos(&parser);
    if (rc == HPE_OK || rc == HPE_PAUSED) count_to(at);
    if (error_status == 0 && rc != HPE_OK && rc != HPE_PAUSED) error_status = 400;  // malformed
    if (error_status != 0) return fail(error_status);
    p = at;
    if (rc == HPE_OK) return;
    llhttp_resume(&parser);
    switch (pending) {
      case event::headers_done:  // of a streamed request: its handler reads the body
        server.dispatch(current);
        break;
      case event::body_piece:
        current->fire_data(server.loop, piece);
        break;
      case event::message_done:
        if (!on_message_done(p < end)) return;
        break;
      case event::none:
        break;
    }
  }
}

void connection::hold(const char* from, const char* end) {
  held_input.assign(from, end);
  sock.pause();
}

int connection::headers_complete() {
  exchange& e = *current;
  request& r = e.req;
  r.method = llhttp_method_name(static_cast<llhttp_method_t>(parser.method));
  std::size_t q = r.target.find('?');
  r.path = r.target.substr(0, q);
  r.query = q == std::string::npos ? "" : r.target.substr(q + 1);
  r.version = parser.http_major * 10 + parser.http_minor;
  r.keep_alive = llhttp_should_keep_alive(&parser) != 0 && parser.method != HTTP_CONNECT;
  // RFC 9112 3.2: an HTTP/1.1 request has exactly one Host; without it, or
  // with two, it is refused.
  std::size_t hosts = static_cast<std::size_t>(
      std::count_if(r.headers.begin(), r.headers.end(), [](const auto& h) { return h.first == "host"; }));
  if (hosts > 1 || (hosts == 0 && r.version >= 11)) error_status = 400;
  e.streamed = server.streams(r);
  if (!e.streamed && (parser.flags & F_CONTENT_LENGTH) && parser.content_length > server.options.max_body_bytes)
    error_status = 413;  // before any 100 Continue: the client need not send it
  if (error_status != 0) return -1;
  state = phase::body;
  framing_bytes = 0;
  queue.push_back(current);
  bool body_follows = (parser.flags & F_CHUNKED) || parser.content_length > 0;
  if (body_follows && r.version >= 11 && iequals(r.header("expect"), "100-continue")) {
    e.continue_owed = true;  // as Node does when nobody listens for checkContinue
    flush();
  }
  if (!e.streamed) return 0;
  pending = event::headers_done;  // the handler runs outside the parser
  return HPE_PAUSED;
}

bool connection::on_message_done(bool more_input) {
  std::shared_ptr<exchange> e = std::move(current);
  e->body_complete = true;
  state = phase::idle;
  header_bytes = framing_bytes = 0;
  if (!e->req.keep_alive || server.draining) {
    // The connection's last request: read nothing after it.
    e->close_after = true;
    state = phase::done;
    unread_input = unread_input || more_input;
  }
  if (e->streamed)
    e->end_body(server.loop, {});
  else
    server.dispatch(e);
  return !retired;
}

void connection::fail(int status) {
  if (retired || state == phase::done) return;
  state = phase::done;
  unread_input = true;
  held_input.clear();
  std::shared_ptr<exchange> e = std::move(current);  // the request being read, if any
  bool placed = e && !queue.empty() && queue.back() == e;
  if (!placed) {
    if (!e) e = std::make_shared<exchange>(this);
    queue.push_back(e);  // a HEAD request's error goes without its body, as every HEAD answer
  }
  if (e->started || e->finished) {
    e->close_after = true;  // the handler's answer, begun already, is the last
  } else {
    // The error is the request's answer, in the handler's place.
    e->status = status;
    e->reason.clear();
    e->headers.clear();
    e->content_type = "text/plain; charset=utf-8";
    e->body = std::string(reason(status)) + "\n";
    e->finished = true;
    e->server_answered = true;
    e->close_after = true;
  }
  if (e->streamed) {
    e->end_body(server.loop, cause_of(status));  // its handler hears why
    if (retired) return;
  }
  flush();
}

}  // namespace detail

// -- request

std::string_view request::header(std::string_view name) const noexcept {
  for (const auto& [n, v] : headers)
    if (detail::iequals(name, n)) return v;
  return {};
}

std::string_view request::trailer(std::string_view name) const noexcept {
  for (const auto& [n, v] : trailers)
    if (detail::iequals(name, n)) return v;
  return {};
}

result<message::value_type> request::json() const {
  auto parsed = message::parse(body);
  if (!parsed) return parsed.error();
  return std::move(*parsed).value();
}

void request::on_data(unique_function<void(std::string_view)> fn) {
  detail::exchange* e = link_.get();
  if (!e || !e->streamed) return;
  e->data_event = std::move(fn);
  if (e->conn) e->conn->schedule_resume();  // reading waited for this
}

void request::on_end(unique_function<void(std::error_code)> fn) {
  detail::exchange* e = link_.get();
  if (!e || !e->streamed || e->end_reported) return;
  e->end_event = std::move(fn);
  if (!e->end_result || !e->conn) return;
  // The body ended before anyone listened: told on a later turn.
  e->conn->server.defer([e = e->shared_from_this(), s = &e->conn->server] {
    if (s->closing || e->end_reported || !e->end_event) return;
    e->end_reported = true;
    auto told = std::move(e->end_event);
    s->loop.invoke(told, *e->end_result);
  });
}

void request::pause() noexcept {
  if (detail::exchange* e = link_.get()) e->reading_paused = true;
}

void request::resume() noexcept {
  detail::exchange* e = link_.get();
  if (!e || !e->reading_paused) return;
  e->reading_paused = false;
  if (e->conn) e->conn->schedule_resume();
}

}  // namespace crew::http
