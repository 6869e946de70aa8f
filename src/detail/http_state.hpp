// The heap blocks behind crew::http::server: the server's state (a clock, the
// tcp::server and the connections), one connection per socket (its parser,
// its queue of answers, its timers) and one exchange per request (the request
// and its answer, shared by the connection and the handler's response).
//
// The pieces live in three files: http_server.cpp (the server, a connection's
// life and clock), http_parser.cpp (bytes in: llhttp, limits, dispatch) and
// http_response.cpp (bytes out: the response API, rendering, writing).
#pragma once

#include <llhttp.h>

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crew/http.hpp"

namespace crew::http::detail {

struct connection;
struct server_state;

/// Requests parsed on one connection whose answers are not all out; past it,
/// reading waits (pipelining cannot queue work without bound).
constexpr std::size_t max_pipelined = 32;

/// How long close() leaves an idle keep-alive connection open for a request
/// that may already be on its way.
constexpr std::uint64_t close_grace_ms = 100;

/// One request and its answer. Shared by the connection's queue and the
/// handler's response; the connection lets go once the answer is out.
struct exchange : std::enable_shared_from_this<exchange> {
  explicit exchange(connection* c) noexcept : conn(c), began(uv_hrtime()) { req.link_.exchange_ = this; }

  /// Whether the answer may carry a body: not for HEAD, 1xx, 204 or 304.
  bool body_allowed() const noexcept;
  /// Whether the status forbids body framing headers (1xx, 204, 304).
  bool bodiless_status() const noexcept;
  /// A streamed body ended (ec: how): on_end hears it now, or when it is set.
  void end_body(crew::loop& l, std::error_code ec);
  /// Events that may run again run moved out of their slot, so that the code
  /// they run may replace them, or drop them (destroying the server), without
  /// destroying the function that is running.
  void fire_drain(crew::loop& l);
  void fire_data(crew::loop& l, std::string_view chunk);
  /// Lets go of the user's functions: they may hold this exchange's response,
  /// and a cycle would keep both for ever.
  void drop_events() noexcept;

  request req;
  connection* conn;  // null once the connection is gone, or the answer is out
  // For server_options::on_answer.
  std::uint64_t began;           // uv_hrtime() at the request's first byte
  std::uint64_t ended = 0;       // when the answer went to the socket, or the connection went
  std::uint64_t body_bytes = 0;  // of the answer, before chunk framing
  bool recorded = false;         // queued for on_answer
  bool answered = false;         // the whole answer went to the socket

  // The answer.
  int status = 200;
  std::string reason;  // "" for the standard phrase
  header_list headers;
  std::string content_type;
  std::string body;          // send()'s
  std::string held;          // a streamed answer's framed bytes, not yet handed to the socket
  bool started = false;      // write() began a streamed answer
  bool head_sent = false;    // the head is rendered and handed to the socket
  bool finished = false;     // nothing more will be added
  bool chunked = false;      // the streamed answer uses chunked encoding
  bool close_after = false;  // the connection's last answer (Connection: close)
  bool continue_owed = false;  // 100 Continue goes out once this is first in line
  bool need_drain = false;   // write() returned false
  bool server_answered = false;  // the server's own answer (a timeout, a limit) took the handler's place
  unique_function<void()> drain_event;
  unique_function<void()> close_event;

  // The request's body, when streamed to the handler.
  bool streamed = false;
  bool body_complete = false;
  bool reading_paused = false;
  bool end_reported = false;
  std::optional<std::error_code> end_result;  // how the body ended, once it has
  unique_function<void(std::string_view)> data_event;
  unique_function<void(std::error_code)> end_event;
};

/// One connection: a socket, its parser and its answers in request order.
struct connection {
  enum class phase : std::uint8_t {
    idle,     // between requests (or before the first)
    headers,  // a request's line and headers are arriving
    body,     // its body is arriving
    done,     // reading is over: the connection ends after the answers owed
  };
  enum class event : std::uint8_t { none, headers_done, body_piece, message_done };

  connection(server_state& s, tcp::socket socket);

  // http_server.cpp: life, clock, back-pressure.
  void start();
  void check(std::uint64_t now);  // the clock's tick: timeouts
  void drain();                   // the server began a graceful close
  void peer_ended();
  void drained();                 // the socket's queue emptied
  void retire();                  // closes the socket; the block goes on a later turn
  void schedule_resume();
  void resume_reading();
  bool reading_stopped() const noexcept;
  std::size_t held_answer_bytes() const noexcept;
  std::size_t buffered_bytes() const noexcept;

  // http_parser.cpp: bytes in.
  void feed(const char* data, std::size_t size);
  void hold(const char* from, const char* end);
  bool count_to(const char* at);
  bool chunk_end_ok(const char* from);  // the CRLF after a chunk's data, as far as the input goes
  int headers_complete();  // llhttp's on_headers_complete
  bool on_message_done(bool more_input);
  void fail(int status);

  // http_response.cpp: bytes out.
  void flush();
  void finish_writing();
  template <class Sink>
  void render(const exchange& e, Sink& out) const;
  template <class Sink>
  void render_head(const exchange& e, Sink& out) const;

  server_state& server;
  std::list<connection>::iterator self;  // in server.connections, then in server.graveyard
  tcp::socket sock;
  llhttp_t parser;
  std::shared_ptr<exchange> current;            // the request being read
  std::deque<std::shared_ptr<exchange>> queue;  // answers not all out, in request order
  phase state = phase::idle;

  // Reading.
  event pending = event::none;  // what paused the parser
  std::string_view piece;       // a streamed body's bytes, at a body_piece pause
  const char* mark = nullptr;   // the first byte of the input being parsed not yet counted
  const char* input_end = nullptr;  // the end of the input being parsed
  int crlf_owed = 0;              // bytes of a chunk's closing CRLF not yet seen (2, 1 or 0)
  bool line_start = false;        // the last header byte counted ended a line
  std::size_t header_bytes = 0;   // raw bytes of this request before its body
  std::size_t framing_bytes = 0;  // raw bytes since the body's last data: a chunk line, the trailers
  int error_status = 0;           // set by a parser callback that refused the request
  bool field_done = true;         // the next header bytes start a new field
  bool in_trailers = false;
  bool fresh = true;              // no byte read yet
  std::string held_input;         // read, not parsed: reading waits
  bool resume_scheduled = false;  // a deferred resume_reading() holds this block (the tick frees it after)

  // Writing.
  bool congested = false;     // the socket's queue reached its high-water mark; its drain clears it
  bool ending = false;        // the last answer is out: the socket ends once it is sent
  bool unread_input = false;  // the client may have sent bytes not read: close gently (lingering)
  bool retired = false;
  std::uint64_t written = 0;  // bytes handed to the socket

  // The clock's marks (uv_now, ms).
  std::uint64_t request_start = 0;  // a request's first byte (a fresh connection's start)
  std::uint64_t idle_since = 0;     // nothing to read or send since (0: not idle)
  std::uint64_t linger_until = 0;   // an ending connection closes by then (0: not yet set)
  std::uint64_t progress_at = 0;    // when the answer's bytes last moved
  std::uint64_t progress_mark = 0;  // bytes sent then
};

/// The server: a clock that sweeps the connections' timeouts, the tcp::server
/// and the connections it gave out. The clock's timer is the block's handle.
struct server_state final : crew::detail::handle_state {
  server_state(crew::loop& l, handler h, std::optional<router> r, server_options o);
  ~server_state() override;
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&clock); }
  void on_closing() noexcept override;

  void adopt(tcp::socket s);
  void tick();
  void begin_close();  // close() began: requests end their connection, idle ones get a grace
  void begin_drain();  // tcp's draining event: each connection ends after its answers
  void bury(connection& c);
  /// Queues the exchange for on_answer (once; nothing when it is not set),
  /// which hears of it on a later turn: never inside the call that answered.
  void record(const std::shared_ptr<exchange>& e, bool answered);
  void report_answers();
  void start_clock(std::uint64_t period_ms);
  std::vector<connection*> snapshot();
  bool streams(const request& req) const;
  void dispatch(const std::shared_ptr<exchange>& e);
  std::string_view date_line();

  uv_timer_t clock;
  // The tcp::server's callbacks reach the block through this: a drain in
  // progress outlives the block when the server is destroyed during close().
  std::shared_ptr<server_state*> link;
  tcp::server tcp_server;
  handler on_request;
  std::optional<router> routes;
  server_options options;
  std::uint64_t tick_ms;
  std::list<connection> connections;
  std::list<connection> graveyard;  // retired, freed by the next tick
  std::uint64_t served = 0;
  std::vector<std::shared_ptr<exchange>> recorded;  // for on_answer, this turn
  std::string date;  // "Date: ...\r\n"
  std::uint64_t date_expires = 0;
  bool draining = false;
  std::uint64_t grace_until = 0;
};

/// The parser's callbacks (http_parser.cpp).
extern const llhttp_settings_t parser_settings;
/// RFC 9110 5.6.2: whether c is a tchar, and name a token (a header field
/// name); in http_response.cpp.
bool token_char(char c) noexcept;
bool token(std::string_view name) noexcept;

/// Whether `name` (any case) equals `lower` (lower case).
bool iequals(std::string_view name, std::string_view lower) noexcept;

}  // namespace crew::http::detail
