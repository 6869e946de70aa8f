// The server and the life of a connection: accepting, the clock and its
// timeouts, back-pressure on reading, the graceful close, retirement.
#include <time.h>

#include <algorithm>
#include <ctime>

#include "detail/http_state.hpp"
#include "detail/tcp_state.hpp"

namespace crew::http {
namespace detail {

namespace {

// The clock ticks four times per shortest timeout, so that each acts at most
// a quarter late; never slower than nginx's coarse 250 ms, never faster than 10 ms.
std::uint64_t tick_for(const server_options& o) {
  std::chrono::milliseconds tick{250};
  for (std::chrono::milliseconds t : {o.headers_timeout, o.request_timeout, o.keep_alive_timeout, o.send_timeout})
    if (t.count() > 0) tick = std::min(tick, t / 4);
  return static_cast<std::uint64_t>(std::max(tick, std::chrono::milliseconds(10)).count());
}

bool past(std::uint64_t now, std::uint64_t since, std::chrono::milliseconds limit) noexcept {
  return limit.count() > 0 && now >= since + static_cast<std::uint64_t>(limit.count());
}

}  // namespace

bool iequals(std::string_view name, std::string_view lower) noexcept {
  return name.size() == lower.size() && std::equal(name.begin(), name.end(), lower.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? static_cast<char>(x - 'A' + 'a') : x) == y;
         });
}

// -- server_state

server_state::server_state(crew::loop& l, handler h, std::optional<router> r, server_options o)
    : handle_state(l),
      link(std::make_shared<server_state*>(this)),
      tcp_server([to = link](tcp::socket s) {
                   if (*to) (*to)->adopt(std::move(s));
                 },
                 {.max_connections = o.max_connections, .no_delay = true, .allow_half_open = true}, l),
      on_request(std::move(h)),
      routes(std::move(r)),
      options(o),
      tick_ms(tick_for(o)) {
  uv_timer_init(l.native(), &clock);
  tcp_server.on_draining([to = link] {
    if (*to) (*to)->begin_drain();
  });
  // A cluster worker reports requests answered, not connections.
  tcp::detail::state_of(tcp_server)->served_hook = [to = link] { return *to ? (*to)->served : 0; };
}

server_state::~server_state() = default;

void server_state::on_closing() noexcept {
  *link = nullptr;
  {
    // Stops accepting now. A drain begun by close() goes on without us and
    // runs its done once the sockets retired below have closed.
    tcp::server stopped = std::move(tcp_server);
  }
  for (connection* c : snapshot()) c->retire();
}

std::vector<connection*> server_state::snapshot() {
  std::vector<connection*> all;
  all.reserve(connections.size());
  for (connection& c : connections) all.push_back(&c);
  return all;
}

void server_state::adopt(tcp::socket s) {
  if (closing) return;  // the socket closes as it goes
  connection& c = connections.emplace_back(*this, std::move(s));
  c.self = std::prev(connections.end());
  if (!uv_is_active(uv())) start_clock(draining ? std::min(tick_ms, close_grace_ms / 2) : tick_ms);
  c.start();
}

void server_state::start_clock(std::uint64_t period_ms) {
  uv_timer_start(&clock, [](uv_timer_t* t) { static_cast<server_state*>(t->data)->tick(); }, period_ms, period_ms);
  uv_unref(uv());  // the clock alone never keeps the loop alive
}

void server_state::tick() {
  // Connections retired before this turn: nothing of theirs runs any more,
  // but a resume_reading() deferred before they retired, which holds one.
  graveyard.remove_if([](const connection& dead) { return !dead.resume_scheduled; });
  std::uint64_t now = uv_now(loop.native());
  // A snapshot: a timeout's answer may end other connections (a handler's
  // on_end runs, and may answer or destroy anything).
  for (connection* c : snapshot()) {
    if (closing) return;
    if (!c->retired) c->check(now);
  }
  if (connections.empty() && graveyard.empty()) uv_timer_stop(&clock);
}

void server_state::begin_close() {
  if (draining) return;
  draining = true;
  grace_until = uv_now(loop.native()) + close_grace_ms;
}

void server_state::begin_drain() {
  begin_close();  // tcp().close() may have been called directly
  if (!connections.empty()) start_clock(std::min(tick_ms, close_grace_ms / 2));
  for (connection* c : snapshot())
    if (!c->retired) c->drain();
}

void server_state::bury(connection& c) {
  // Freed by the next tick: the connection's own code may still be on the stack.
  graveyard.splice(graveyard.end(), connections, c.self);
}

bool server_state::streams(const request& req) const { return routes && routes->streams(req); }

void server_state::record(const std::shared_ptr<exchange>& e, bool answered) {
  if (!options.on_answer || e->recorded) return;
  e->recorded = true;
  e->answered = answered;
  e->ended = uv_hrtime();
  if (recorded.empty())
    defer([this] {
      if (!closing) report_answers();
    });
  recorded.push_back(e);
}

void server_state::report_answers() {
  std::vector<std::shared_ptr<exchange>> batch = std::exchange(recorded, {});
  for (const std::shared_ptr<exchange>& e : batch) {
    if (closing) return;
    answer_record r{e->req, e->status, e->body_bytes,
                    std::chrono::microseconds((e->ended - e->began) / 1000), e->answered};
    loop.invoke(options.on_answer, r);
  }
}

void server_state::dispatch(const std::shared_ptr<exchange>& e) {
  response res(e);  // shares the exchange: the handler may answer later
  if (routes)
    loop.invoke(*routes, e->req, res);
  else
    loop.invoke(on_request, e->req, res);
}

std::string_view server_state::date_line() {
  std::uint64_t now = uv_now(loop.native());
  if (now >= date_expires) {
    timespec wall{};
    clock_gettime(CLOCK_REALTIME, &wall);
    std::tm utc{};
    gmtime_r(&wall.tv_sec, &utc);
    char text[64];
    std::size_t n = std::strftime(text, sizeof text, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &utc);
    date.assign(text, n);
    // Current to the second: rendered again when the wall clock's second turns.
    date_expires = now + 1000 - static_cast<std::uint64_t>(wall.tv_nsec / 1'000'000);
  }
  return date;
}

// -- connection: life and clock

connection::connection(server_state& s, tcp::socket socket) : server(s), sock(std::move(socket)) {}

void connection::start() {
  llhttp_init(&parser, HTTP_REQUEST, &parser_settings);
  parser.data = this;
  request_start = progress_at = uv_now(server.loop.native());
  sock.on_end([this] { peer_ended(); });
  sock.on_drain([this] { drained(); });
  sock.on_close([this] { retire(); });
  sock.on_data([this](std::string_view chunk) { feed(chunk.data(), chunk.size()); });
}

void connection::check(std::uint64_t now) {
  const server_options& o = server.options;
  // An answer on its way may take its time, as long as it moves.
  std::size_t waiting = sock.buffered();
  std::uint64_t sent = written - waiting;
  if (waiting == 0 || sent != progress_mark) {
    progress_mark = sent;
    progress_at = now;
  } else if (past(now, progress_at, o.send_timeout)) {
    return retire();  // the client stopped reading
  }
  if (ending) {
    // The last answer is out: the client reads it and closes, or we do.
    if (waiting > 0) return;
    if (linger_until == 0) linger_until = now + static_cast<std::uint64_t>(o.keep_alive_timeout.count());
    if (now >= linger_until) retire();
    return;
  }
  switch (state) {
    case phase::headers:
      if (past(now, request_start, o.headers_timeout)) fail(408);
      return;
    case phase::body:
      if (past(now, request_start, o.request_timeout)) fail(408);
      return;
    case phase::idle:
      if (!queue.empty() || waiting > 0 || !held_input.empty()) {
        idle_since = 0;
        return;
      }
      if (server.draining && now >= server.grace_until) return retire();
      if (fresh) {  // a connection that has sent nothing yet is still sending headers
        if (past(now, request_start, o.headers_timeout)) fail(408);
        return;
      }
      if (idle_since == 0) idle_since = now;  // armed only once the last answer is out
      if (past(now, idle_since, o.keep_alive_timeout)) retire();
      return;
    case phase::done:
      return;
  }
}

void connection::drain() {
  if (ending || state != phase::idle || queue.empty()) return;
  // Requests already read are answered; the last answer closes the connection.
  queue.back()->close_after = true;
  state = phase::done;
  unread_input = !held_input.empty();
  held_input.clear();
}

void connection::peer_ended() {
  if (retired || ending) return;  // an ending socket closes by itself now
  if (current) {
    // A request cut short: a streamed one learns it, and its handler may
    // still answer (the client can read); one not dispatched yet is dropped.
    std::shared_ptr<exchange> cut = std::move(current);
    if (cut->streamed) {
      cut->end_body(server.loop, uv_error(UV_ECONNRESET));
      if (retired) return;
    } else if (!queue.empty() && queue.back() == cut) {
      queue.pop_back();
    }
  }
  state = phase::done;
  held_input.clear();
  if (queue.empty()) return finish_writing();
  if (!queue.back()->head_sent) queue.back()->close_after = true;
}

void connection::drained() {
  congested = false;
  if (!queue.empty() && queue.front()->need_drain) {
    std::shared_ptr<exchange> e = queue.front();
    e->need_drain = false;
    e->fire_drain(server.loop);
    if (retired) return;
  }
  if (sock.paused()) schedule_resume();
}

void connection::retire() {
  if (retired) return;
  retired = true;
  state = phase::done;
  sock.close();
  // Whoever holds an unfinished answer or a streamed body hears of it on a
  // later turn (this may run inside one of their calls), unless the server
  // itself is gone. Every other function of theirs is dropped now.
  struct notice {
    std::shared_ptr<exchange> e;
    unique_function<void(std::error_code)> ended;
    unique_function<void()> closed;
  };
  std::vector<notice> notices;
  auto cut = [&](const std::shared_ptr<exchange>& e) {
    e->conn = nullptr;
    server.record(e, false);
    notice n{e, {}, {}};
    if (e->streamed && !e->end_result) {
      e->end_result = uv_error(UV_ECONNRESET);
      e->end_reported = static_cast<bool>(e->end_event);
      n.ended = std::move(e->end_event);
    }
    if (!e->finished) n.closed = std::move(e->close_event);
    e->drop_events();
    if (!server.closing && (n.ended || n.closed)) notices.push_back(std::move(n));
  };
  if (current && (queue.empty() || queue.back() != current)) cut(current);  // a streamed body, its answer out
  for (const std::shared_ptr<exchange>& e : queue) cut(e);
  queue.clear();
  current.reset();
  if (!notices.empty())
    server.defer([s = &server, notices = std::move(notices)]() mutable {
      for (notice& n : notices) {
        if (n.ended && !s->closing) s->loop.invoke(n.ended, uv_error(UV_ECONNRESET));
        if (n.closed && !s->closing) s->loop.invoke(n.closed);
      }
    });
  server.bury(*this);
}

// -- back-pressure

std::size_t connection::held_answer_bytes() const noexcept {
  std::size_t n = 0;
  for (const std::shared_ptr<exchange>& e : queue) n += e->held.size() + (e->finished ? e->body.size() : 0);
  return n;
}

std::size_t connection::buffered_bytes() const noexcept {
  return sock.buffered() + held_answer_bytes() + held_input.size();
}

bool connection::reading_stopped() const noexcept {
  if (state == phase::body) return current->streamed && (current->reading_paused || !current->data_event);
  if (state != phase::idle) return false;
  // Between requests: the next waits while the answers owed pile up.
  return congested || queue.size() >= max_pipelined || held_answer_bytes() >= stream::high_water_mark;
}

void connection::schedule_resume() {
  if (resume_scheduled || retired) return;
  resume_scheduled = true;
  // Never inside the call that made room (a send() in a handler): parsing the
  // held input runs handlers.
  server.defer([this] {
    resume_scheduled = false;
    if (!server.closing) resume_reading();
  });
}

void connection::resume_reading() {
  if (retired || reading_stopped()) return;
  std::string input = std::move(held_input);
  held_input.clear();
  if (!input.empty()) feed(input.data(), input.size());
  if (!retired && held_input.empty() && !reading_stopped()) sock.resume();
}

}  // namespace detail

// -- server

server::server(handler h, server_options options, loop& l) : server(std::move(h), std::nullopt, options, l) {}

server::server(router routes, server_options options, loop& l) : server({}, std::move(routes), options, l) {}

server::server(handler h, std::optional<router> routes, server_options options, loop& l) {
  adopt(new detail::server_state(l, std::move(h), std::move(routes), options));
}

detail::server_state* server::state() const noexcept { return state_as<detail::server_state>(); }

tcp::server& server::tcp() noexcept { return state()->tcp_server; }

result<int> server::listen(int port, const std::string& host) {
  detail::server_state* s = state();
  if (!s) return uv_error(UV_EBADF);
  return s->tcp_server.listen(port, host);
}

void server::close(unique_function<void()> done) {
  detail::server_state* s = state();
  if (!s) {  // moved from, or closed by its loop: nothing to wait for
    if (done) loop::current().later(std::move(done));
    return;
  }
  // Requests completed from now on are the connection's last; idle
  // connections have their grace from now.
  s->begin_close();
  s->tcp_server.close(std::move(done));
}

std::size_t server::connections() const noexcept {
  detail::server_state* s = state();
  return s ? s->connections.size() : 0;
}

std::uint64_t server::requests_served() const noexcept {
  detail::server_state* s = state();
  return s ? s->served : 0;
}

std::size_t server::buffered_bytes() const noexcept {
  detail::server_state* s = state();
  std::size_t n = 0;
  if (s)
    for (const detail::connection& c : s->connections) n += c.buffered_bytes();
  return n;
}

}  // namespace crew::http
