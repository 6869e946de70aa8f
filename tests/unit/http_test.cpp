#include "crew/http.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <memory>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include "crew/child_process.hpp"
#include "crew/timer.hpp"
#include "http_client.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew::http::request;
using crew::http::response;
using crew::http::router;
using crew::http::server;
using crew::test::http_answer;
using crew::test::http_connection;

constexpr auto npos = std::string::npos;

// Runs the loop on this thread while `client` runs on another; the loop stops
// once the client is done (so the server may be left serving).
template <class F>
void with_client(crew::loop& l, F client) {
  crew::loop::keep_alive hold(l);
  std::thread t([&] {
    client();
    l.post([&] {
      hold = {};
      l.stop();
    });
  });
  crew::test::run_within(l, 30s);
  t.join();
}

// Waits (on a client thread) until `flag` is set, at most 20 s.
void wait_for(const std::atomic<bool>& flag) {
  for (int i = 0; i < 2000 && !flag; ++i) std::this_thread::sleep_for(10ms);
}

std::size_t count(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Bytes whose every position is checkable.
std::string pattern(std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  return s;
}

router echo_routes() {
  router routes;
  routes.get("/", [](request&, response& res) { res.send("hello\n"); });
  routes.post("/echo", [](request& req, response& res) { res.send(req.body); });
  routes.get("/query", [](request& req, response& res) { res.send(req.path + "|" + req.query); });
  routes.post("/json", [](request& req, response& res) {
    auto value = req.json();
    if (!value) return res.status(400).send("bad json\n");
    res.json({{"got", *value}});
  });
  return routes;
}

// One connection: sends `text`, reads until the server closes.
std::string exchange_once(int port, const std::string& text) {
  http_connection c = http_connection::to(port);
  c.send(text);
  return c.read_to_end();
}

// -- requests and answers

TEST(http, answers_a_request_with_status_length_date_and_body) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] { out = exchange_once(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); });
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("Content-Length: 6\r\n"), npos);
  EXPECT_NE(out.find("Date: "), npos);
  EXPECT_NE(out.find("Connection: close\r\n"), npos);
  EXPECT_TRUE(out.ends_with("\r\n\r\nhello\n")) << out;
  EXPECT_EQ(s.requests_served(), 1u);
}

TEST(http, keep_alive_and_pipelining_answer_in_request_order) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] {
    out = exchange_once(port,
                        "GET /query?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /query?b=2 HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /query?c=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  });
  EXPECT_EQ(count(out, "HTTP/1.1 200 OK"), 3u) << out;
  std::size_t a = out.find("/query|a=1"), b = out.find("/query|b=2"), c = out.find("/query|c=3");
  ASSERT_NE(c, npos) << out;
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
}

TEST(http, a_slow_answer_holds_back_the_later_ones) {
  crew::loop loop;
  std::vector<response> pending;
  crew::timer later(loop);
  router routes;
  routes.get("/slow", [&](request&, response& res) {
    pending.push_back(std::move(res));
    later.start(100ms, {}, [&] { pending.back().send("slow\n"); });
  });
  routes.get("/fast", [](request&, response& res) { res.send("fast\n"); });
  server s(std::move(routes));
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] {
    out = exchange_once(port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  });
  std::size_t slow = out.find("slow\n"), fast = out.find("fast\n");
  ASSERT_NE(fast, npos) << out;
  EXPECT_LT(slow, fast);
}

TEST(http, a_star_route_takes_every_path_under_its_prefix_and_an_exact_route_wins) {
  crew::loop loop;
  router routes;
  routes.get("/jobs/*", [](request& req, response& res) { res.send("star " + req.path + "\n"); });
  routes.get("/jobs/new", [](request&, response& res) { res.send("exact\n"); });
  routes.get("/jobs/old/*", [](request& req, response& res) { res.send("longer " + req.path + "\n"); });
  routes.del("/jobs/*", [](request& req, response& res) { res.send("deleted " + req.path + "\n"); });
  server s(std::move(routes));
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] {
    out = exchange_once(port,
                        "GET /jobs/42 HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /jobs/42/output HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /jobs/new HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /jobs/old/7 HTTP/1.1\r\nHost: x\r\n\r\n"
                        "DELETE /jobs/42 HTTP/1.1\r\nHost: x\r\n\r\n"
                        "PUT /jobs/42 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                        "GET /jobsx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  });
  std::size_t at = 0;
  for (const char* expected : {"star /jobs/42\n", "star /jobs/42/output\n", "exact\n", "longer /jobs/old/7\n",
                               "deleted /jobs/42\n", "405 Method Not Allowed", "Allow: GET, DELETE\r\n",
                               "404 Not Found"}) {
    at = out.find(expected, at);
    ASSERT_NE(at, npos) << expected << " in\n" << out;
  }
}

// on_answer hears of each request once, after its answer is out, with the
// status, the body's size and the time taken.
TEST(http, on_answer_hears_of_every_request_once_after_its_answer) {
  crew::loop loop;
  std::vector<std::string> heard;
  router routes;
  routes.get("/hello", [](request&, response& res) { res.send("hello"); });
  routes.get("/stream", [](request&, response& res) {
    res.write("ab");
    res.end("cde");
  });
  crew::http::server_options options;
  options.on_answer = [&](const crew::http::answer_record& r) {
    heard.push_back(r.req.method + " " + r.req.path + " " + std::to_string(r.status) + " " +
                    std::to_string(r.body_bytes) + (r.answered ? "" : " gone"));
    EXPECT_GE(r.duration.count(), 0);
  };
  server s(std::move(routes), options);
  int port = s.listen(0).value();
  with_client(loop, [&] {
    (void)exchange_once(port,
                        "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  });
  for (int turn = 0; turn < 100 && heard.size() < 3; ++turn) loop.run_once();  // the last may come a turn later
  EXPECT_EQ(heard, (std::vector<std::string>{"GET /hello 200 5", "GET /stream 200 5", "GET /nowhere 404 10"}));
}

TEST(http, reads_content_length_and_chunked_bodies) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] {
    out = exchange_once(port,
                        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
                        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                        "3;name=value\r\nfgh\r\n2\r\nij\r\n0\r\n\r\n");
  });
  EXPECT_NE(out.find("\r\n\r\nabcde"), npos) << out;
  EXPECT_NE(out.find("\r\n\r\nfghij"), npos) << out;
  EXPECT_EQ(count(out, "Content-Length: 5\r\n"), 2u);
}

TEST(http, json_in_and_out) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] {
    out = exchange_once(port, "POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}");
  });
  EXPECT_NE(out.find("Content-Type: application/json\r\n"), npos) << out;
  EXPECT_NE(out.find("{\"got\":{\"a\":1}}"), npos) << out;
}

TEST(http, query_parameters_are_decoded_and_json_numbers_written_as_node_writes_them) {
  crew::loop loop;
  router routes;
  routes.get("/search", [](request& req, response& res) {
    crew::url_search_params params = req.search_params();
    res.json({{"q", params.get("q").value_or("")}, {"tags", params.get_all("tag")}, {"n", 3.0}, {"small", 1e-7}});
  });
  server s(std::move(routes));
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] {
    out = exchange_once(port, "GET /search?q=caf%C3%A9+au+lait&tag=a&tag=b%26c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  });
  EXPECT_TRUE(out.ends_with("\r\n\r\n{\"q\":\"caf\u00e9 au lait\",\"tags\":[\"a\",\"b&c\"],\"n\":3,\"small\":1e-7}")) << out;
}

TEST(http, unknown_paths_are_404_and_other_methods_405_with_allow) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] {
    out = exchange_once(port,
                        "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                        "DELETE /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  });
  EXPECT_NE(out.find("HTTP/1.1 404 Not Found"), npos) << out;
  EXPECT_NE(out.find("HTTP/1.1 405 Method Not Allowed"), npos);
  EXPECT_NE(out.find("Allow: POST\r\n"), npos);
}

TEST(http, head_gets_the_headers_without_the_body) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] { out = exchange_once(port, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); });
  EXPECT_NE(out.find("Content-Length: 6\r\n"), npos) << out;
  EXPECT_EQ(out.find("hello"), npos);
}

TEST(http, an_http_1_0_client_gets_keep_alive_only_when_it_asks) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string kept, closed;
  with_client(loop, [&] {
    http_connection c = http_connection::to(port);
    c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    kept = c.answer().head;
    closed = exchange_once(port, "GET / HTTP/1.0\r\n\r\n");
  });
  EXPECT_NE(kept.find("Connection: keep-alive"), npos) << kept;
  EXPECT_EQ(closed.rfind("HTTP/1.1 200 OK", 0), 0u) << closed;  // no Host needed before 1.1
  EXPECT_NE(closed.find("Connection: close"), npos) << closed;
}

TEST(http, a_response_dropped_without_an_answer_gets_500) {
  crew::loop loop;
  server s([](request&, response&) {});  // keeps nothing, answers nothing
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] { out = exchange_once(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); });
  EXPECT_EQ(out.rfind("HTTP/1.1 500 Internal Server Error", 0), 0u) << out;
}

TEST(http, a_server_moves_and_its_tcp_server_keeps_its_address) {
  static_assert(std::is_nothrow_move_constructible_v<server> && !std::is_copy_constructible_v<server>);
  static_assert(std::is_nothrow_move_constructible_v<response> && !std::is_copy_constructible_v<response>);
  crew::loop loop;
  server first(echo_routes());
  crew::tcp::server* underneath = &first.tcp();
  server moved(std::move(first));
  crew::tcp::server& converted = moved;  // what cluster::listen will take
  EXPECT_EQ(&moved.tcp(), underneath);
  EXPECT_EQ(&converted, underneath);
  int port = converted.listen(0).value();
  http_answer a;
  with_client(loop, [&] { a = crew::test::request(port, "GET", "/"); });
  EXPECT_EQ(a.body, "hello\n");
  EXPECT_EQ(first.listen(0).error(), std::errc::bad_file_descriptor);
}

TEST(http, a_response_hears_on_close_when_the_client_resets_the_connection) {
  crew::loop loop;
  std::optional<response> held;
  bool heard = false;
  std::optional<server> s;
  s.emplace([&](request&, response& res) {
    res.on_close([&] {
      heard = true;
      s->close();
    });
    held.emplace(std::move(res));
  });
  int port = s->listen(0).value();
  std::atomic<bool> handled{false};
  crew::timer watch(loop);
  watch.start(5ms, 5ms, [&] { handled = held.has_value(); });
  with_client(loop, [&] {
    http_connection c = http_connection::to(port);
    c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_for(handled);
    linger reset{1, 0};
    setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  });
  watch.stop();
  crew::test::run_within(loop);  // the reset arrives, and the server closes
  EXPECT_TRUE(heard);
  EXPECT_FALSE(held->sent());
}

// -- limits

TEST(http, limits_are_answered_with_their_status_and_the_connection_closes) {
  crew::loop loop;
  server s(echo_routes(), {.max_header_bytes = 1024, .max_body_bytes = 16});
  int port = s.listen(0).value();
  std::string big_header, big_body, big_chunks;
  with_client(loop, [&] {
    big_header = exchange_once(port, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n");
    big_body = exchange_once(port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    big_chunks = exchange_once(port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" +
                                         std::string(32, 'b') + "\r\n0\r\n\r\n");
  });
  EXPECT_EQ(big_header.rfind("HTTP/1.1 431 ", 0), 0u) << big_header;
  EXPECT_EQ(big_body.rfind("HTTP/1.1 413 ", 0), 0u) << big_body;
  EXPECT_EQ(big_chunks.rfind("HTTP/1.1 413 ", 0), 0u) << big_chunks;
  EXPECT_NE(big_chunks.find("Connection: close"), npos);
}

// CVE-2024-22019's second half: bytes llhttp skips (empty lines before a
// request, whitespace before a value) are header bytes too.
TEST(http, a_mebibyte_of_empty_lines_or_whitespace_counts_against_the_header_limit) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  http_answer lines, spaces;
  with_client(loop, [&] {
    std::string crlfs;
    for (int i = 0; i < (1 << 19); ++i) crlfs += "\r\n";
    http_connection a = http_connection::to(port);
    a.send(crlfs + "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    lines = a.answer();
    http_connection b = http_connection::to(port);
    b.send("GET / HTTP/1.1\r\nHost: x\r\nX-Pad:" + std::string(1 << 20, ' ') + "y\r\n\r\n");
    spaces = b.answer();
  });
  EXPECT_EQ(lines.status, 431) << lines.head;
  EXPECT_EQ(spaces.status, 431) << spaces.head;
}

// CVE-2024-22019: 20 MiB of chunk extension was accepted (Node 20.11 stops at 16 KiB).
TEST(http, chunk_extensions_and_padded_chunk_sizes_count_against_the_limits) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  http_answer extension, zeros, fine;
  with_client(loop, [&] {
    http_connection a = http_connection::to(port);
    a.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=" + std::string(20 << 20, 'e'));
    extension = a.answer();
    http_connection b = http_connection::to(port);
    b.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(1 << 20, '0') + "1\r\n");
    zeros = b.answer();
    http_connection c = http_connection::to(port);
    c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0003;a=" + std::string(8000, 'v') +
           "\r\nabc\r\n0\r\n\r\n");
    fine = c.answer();
  });
  EXPECT_EQ(extension.status, 413) << extension.head;
  EXPECT_EQ(zeros.status, 413) << zeros.head;
  EXPECT_EQ(fine.status, 200) << fine.head;
  EXPECT_EQ(fine.body, "abc");
}

TEST(http, past_max_connections_the_newest_are_refused_and_the_others_keep_working) {
  crew::loop loop;
  server s(echo_routes(), {.max_connections = 2});
  int port = s.listen(0).value();
  std::vector<int> statuses;
  with_client(loop, [&] {
    http_connection a = http_connection::to(port), b = http_connection::to(port);
    for (http_connection* c : {&a, &b}) {
      c->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      statuses.push_back(c->answer().status);
    }
    http_connection refused = http_connection::to(port);
    refused.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    statuses.push_back(refused.answer().status);
    for (http_connection* c : {&a, &b}) {
      c->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      statuses.push_back(c->answer().status);
    }
  });
  EXPECT_EQ(statuses, (std::vector<int>{200, 200, 0, 200, 200}));
}

// Issue 11: one client that pipelined and never read pushed a worker from 4 to 514 MiB.
TEST(http, a_client_that_pipelines_and_never_reads_cannot_grow_the_servers_memory) {
  crew::loop loop;
  const std::string kib16(16 * 1024, 'k');
  router routes;
  routes.get("/kb", [&](request&, response& res) { res.send(kib16); });
  server s(std::move(routes));
  int port = s.listen(0).value();
  constexpr int total = 2000;  // 32 MB of answers
  std::size_t most = 0;
  std::uint64_t served_at_rest = 0, last = 0;
  int still = 0;
  std::atomic<bool> settled{false};
  crew::timer watch(loop);
  watch.start(20ms, 20ms, [&] {
    most = std::max(most, s.buffered_bytes());
    std::uint64_t now = s.requests_served();
    still = now > 0 && now == last ? still + 1 : 0;
    last = now;
    if (still == 10 && !settled) {  // 200 ms without an answer out: the server waits for the client
      served_at_rest = now;
      settled = true;
    }
  });
  int answered = 0;
  with_client(loop, [&] {
    http_connection c = http_connection::to(port, 16 * 1024);
    std::string requests;
    for (int i = 0; i < total; ++i) requests += "GET /kb HTTP/1.1\r\nHost: x\r\n\r\n";
    c.send(requests);
    wait_for(settled);
    for (http_answer a; answered < total && (a = c.answer()).status == 200 && a.body == kib16;) ++answered;
  });
  EXPECT_TRUE(settled);
  EXPECT_LT(served_at_rest, static_cast<std::uint64_t>(total));
  EXPECT_LT(most, 1u << 20) << "bytes held for one connection";
  EXPECT_EQ(answered, total) << "reading resumed as the client read";
}

// -- the clock, however the server was started

enum class way { listen, listen_fd, adopt };

// A server started one way, and client connections that reach it that way:
// its own listening socket, a listening socket bound elsewhere (a cluster's
// shared socket), or connections accepted elsewhere and handed over one by
// one (a cluster's round-robin hand-off, which had no clock before).
class started {
 public:
  started(server& s, way w, crew::loop& l) : server_(s), way_(w), loop_(l) {
    if (w == way::listen) port_ = s.listen(0).value();
    if (w == way::listen_fd) {
      crew::test::held_port bound;
      port_ = bound.port();
      EXPECT_FALSE(s.tcp().listen_fd(bound.release()));
    }
    if (w == way::adopt) port_ = elsewhere_.port();
  }

  /// A client connection; from the client's thread.
  http_connection connect(int receive_buffer = 0) {
    http_connection c = http_connection::to(port_, receive_buffer);
    if (way_ == way::adopt) {
      int accepted = accept4(elsewhere_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
      loop_.post([this, accepted] { EXPECT_FALSE(server_.tcp().adopt_connection(accepted)); });
    }
    return c;
  }

 private:
  server& server_;
  way way_;
  crew::loop& loop_;
  crew::test::held_port elsewhere_;
  int port_ = 0;
};

class every_way : public ::testing::TestWithParam<way> {};

INSTANTIATE_TEST_SUITE_P(http, every_way, ::testing::Values(way::listen, way::listen_fd, way::adopt),
                         [](const ::testing::TestParamInfo<way>& started_so) {
                           return started_so.param == way::listen      ? "listening"
                                  : started_so.param == way::listen_fd ? "on_a_shared_socket"
                                                                       : "on_adopted_connections";
                         });

// The time a Date header gives; -1 if there is none.
std::time_t date_of(const std::string& head) {
  std::size_t at = head.find("\r\nDate: ");
  if (at == npos) return -1;
  std::tm tm{};
  if (!strptime(head.c_str() + at + 8, "%a, %d %b %Y %H:%M:%S GMT", &tm)) return -1;
  return timegm(&tm);
}

TEST_P(every_way, answers_carry_the_current_date) {
  crew::loop loop;
  server s(echo_routes());
  started at(s, GetParam(), loop);
  std::vector<std::time_t> dates, nows;
  with_client(loop, [&] {
    http_connection c = at.connect();
    for (int i = 0; i < 2; ++i) {
      if (i > 0) std::this_thread::sleep_for(1100ms);
      c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      dates.push_back(date_of(c.answer().head));
      nows.push_back(std::time(nullptr));
    }
  });
  ASSERT_EQ(dates.size(), 2u);
  for (int i = 0; i < 2; ++i) EXPECT_LE(std::abs(nows[i] - dates[i]), 1) << "answer " << i;
  EXPECT_GT(dates[1], dates[0]);
}

// A slowloris: the headers trickle in, a byte at a time, and never end.
TEST_P(every_way, a_client_holding_its_headers_gets_408_and_is_closed) {
  crew::loop loop;
  server s(echo_routes(), {.headers_timeout = 300ms});
  started at(s, GetParam(), loop);
  std::string out;
  with_client(loop, [&] {
    http_connection c = at.connect();
    c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    pollfd p{c.fd(), POLLIN, 0};
    for (int i = 0; i < 200 && poll(&p, 1, 0) == 0; ++i) {
      c.send("z");
      std::this_thread::sleep_for(20ms);
    }
    out = c.read_to_end();
  });
  EXPECT_EQ(out.rfind("HTTP/1.1 408 Request Timeout\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("Connection: close"), npos);
  EXPECT_EQ(s.connections(), 0u);
}

TEST_P(every_way, a_connection_that_sends_nothing_gets_408) {
  crew::loop loop;
  server s(echo_routes(), {.headers_timeout = 200ms});
  started at(s, GetParam(), loop);
  std::string out;
  with_client(loop, [&] { out = at.connect().read_to_end(); });
  EXPECT_EQ(out.rfind("HTTP/1.1 408 ", 0), 0u) << out;
}

TEST_P(every_way, a_body_that_never_arrives_gets_408) {
  crew::loop loop;
  server s(echo_routes(), {.request_timeout = 300ms});
  started at(s, GetParam(), loop);
  std::string out;
  with_client(loop, [&] {
    http_connection c = at.connect();
    c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");  // and the rest never comes
    out = c.read_to_end();
  });
  EXPECT_EQ(out.rfind("HTTP/1.1 408 ", 0), 0u) << out;
}

TEST_P(every_way, an_idle_keep_alive_connection_is_closed) {
  crew::loop loop;
  server s(echo_routes(), {.keep_alive_timeout = 200ms});
  started at(s, GetParam(), loop);
  http_answer first;
  std::string after;
  with_client(loop, [&] {
    http_connection c = at.connect();
    c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    first = c.answer();
    after = c.read_to_end();  // the server closes, with nothing more
  });
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.head.find("Connection: close"), npos);
  EXPECT_EQ(after, "");
  EXPECT_EQ(s.connections(), 0u);
}

// Issue 11: the keep-alive deadline cut a 4 MB answer to a slow reader at
// 2,992,005 bytes. The deadline starts once the answer is out.
TEST(http, a_slow_steady_reader_gets_a_4_mb_answer_whole) {
  crew::loop loop;
  const std::string big = pattern(4 << 20);
  router routes;
  routes.get("/big", [&](request&, response& res) { res.send(big); });
  server s(std::move(routes), {.keep_alive_timeout = 100ms, .send_timeout = 2s});
  int port = s.listen(0).value();
  http_answer a;
  with_client(loop, [&] {
    http_connection c = http_connection::to(port, 16 * 1024);
    c.read_slowly(16 * 1024, 2ms);  // about a second for the whole, ten keep-alive timeouts
    c.send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    a = c.answer();
  });
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body.size(), big.size());
  EXPECT_TRUE(a.body == big);
}

TEST(http, a_reader_that_stops_reading_is_closed_after_the_send_timeout) {
  crew::loop loop;
  const std::string big = pattern(4 << 20);
  router routes;
  routes.get("/big", [&](request&, response& res) { res.send(big); });
  server s(std::move(routes), {.send_timeout = 300ms});
  int port = s.listen(0).value();
  std::atomic<bool> opened{false}, closed{false};
  crew::timer watch(loop);
  watch.start(10ms, 10ms, [&] {
    if (s.connections() > 0) opened = true;
    if (opened && s.connections() == 0) closed = true;
  });
  std::size_t received = 0;
  with_client(loop, [&] {
    http_connection c = http_connection::to(port, 16 * 1024);
    c.send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_for(closed);  // reading nothing meanwhile
    received = c.read_to_end().size();
  });
  EXPECT_TRUE(closed);
  EXPECT_LT(received, big.size());
}

// -- protocol

TEST(http, content_length_with_transfer_encoding_or_two_lengths_is_400_and_closes) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string both, two;
  with_client(loop, [&] {
    both = exchange_once(port,
                         "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    two = exchange_once(port,
                        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
                        "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  });
  for (const std::string& out : {both, two}) {
    EXPECT_EQ(out.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << out;
    EXPECT_EQ(count(out, "HTTP/1.1 "), 1u) << out;  // what follows is never read as a request
    EXPECT_NE(out.find("Connection: close"), npos);
  }
}

TEST(http, connect_gets_exactly_one_answer_and_upgrade_is_an_ordinary_request) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string tunnel, upgrade;
  with_client(loop, [&] {
    tunnel = exchange_once(port, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01 tls bytes");
    upgrade = exchange_once(port,
                            "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                            "GET /query?second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  });
  EXPECT_EQ(count(tunnel, "HTTP/1.1 "), 1u) << tunnel;
  EXPECT_EQ(tunnel.rfind("HTTP/1.1 404 ", 0), 0u) << tunnel;  // no route: crew opens no tunnel
  EXPECT_NE(tunnel.find("Connection: close"), npos);
  EXPECT_EQ(count(upgrade, "HTTP/1.1 200 OK"), 2u) << upgrade;
  EXPECT_NE(upgrade.find("/query|second"), npos);
}

TEST(http, expect_100_continue_is_answered_before_the_body_is_sent) {
  crew::loop loop;
  server s(echo_routes(), {.max_body_bytes = 1024});
  int port = s.listen(0).value();
  http_answer interim, final_answer, too_big;
  with_client(loop, [&] {
    http_connection c = http_connection::to(port);
    c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    interim = c.answer();
    c.send("hello");
    final_answer = c.answer();
    http_connection big = http_connection::to(port);
    big.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
    too_big = big.answer();
  });
  EXPECT_EQ(interim.status, 100) << interim.head;
  EXPECT_EQ(final_answer.status, 200);
  EXPECT_EQ(final_answer.body, "hello");
  EXPECT_EQ(too_big.status, 413) << "refused without asking for the body";
}

TEST(http, trailers_are_kept_apart_from_the_headers) {
  crew::loop loop;
  router routes;
  routes.post("/fields", [](request& req, response& res) {
    res.send(std::string(req.header("content-length")) + "|" + std::string(req.trailer("content-length")) + "|" +
             std::string(req.header("x-sum")) + "|" + std::string(req.trailer("x-sum")) + "|" + req.body);
  });
  server s(std::move(routes), {.max_header_bytes = 4096});
  int port = s.listen(0).value();
  http_answer kept, huge;
  with_client(loop, [&] {
    http_connection c = http_connection::to(port);
    c.send("POST /fields HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
           "Content-Length: 99\r\nX-Sum: 7\r\n\r\n");
    kept = c.answer();
    http_connection d = http_connection::to(port);
    d.send("POST /fields HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Pad: " + std::string(8000, 'p') +
           "\r\n\r\n");
    huge = d.answer();
  });
  EXPECT_EQ(kept.status, 200);
  EXPECT_EQ(kept.body, "|99||7|abc");
  EXPECT_EQ(huge.status, 431);
}

TEST(http, http_1_1_without_host_or_with_two_is_400) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string none, two;
  with_client(loop, [&] {
    none = exchange_once(port, "GET / HTTP/1.1\r\n\r\n");
    two = exchange_once(port, "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
  });
  EXPECT_EQ(none.rfind("HTTP/1.1 400 ", 0), 0u) << none;
  EXPECT_EQ(two.rfind("HTTP/1.1 400 ", 0), 0u) << two;
}

// A header name that is not a token ("Content Length", with a space) is 400,
// as in Node 20, not a header that is silently something else.
TEST(http, a_header_name_that_is_not_a_token_is_400) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string spaced, length, good;
  with_client(loop, [&] {
    spaced = exchange_once(port, "GET / HTTP/1.1\r\nHost: x\r\nX Y: z\r\n\r\n");
    length = exchange_once(port, "POST / HTTP/1.1\r\nHost: x\r\nContent Length: 5\r\n\r\nhello");
    good = exchange_once(port, "GET / HTTP/1.1\r\nHost: x\r\nX-Y!#$%&'*+.^_`|~: z\r\nConnection: close\r\n\r\n");
  });
  EXPECT_EQ(spaced.rfind("HTTP/1.1 400 ", 0), 0u) << spaced;
  EXPECT_EQ(length.rfind("HTTP/1.1 400 ", 0), 0u) << length;
  EXPECT_EQ(good.rfind("HTTP/1.1 200 ", 0), 0u) << good;
}

// An empty header name and a folded header line (obs-fold, whitespace at the
// start of a line, in the headers or the trailers) are 400, as in Node 20: a
// server that joins them reads other headers than the proxy in front of it.
TEST(http, an_empty_header_name_or_a_folded_line_is_400) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::vector<std::string> answers;
  with_client(loop, [&] {
    for (const char* text : {"GET / HTTP/1.1\r\nHost: x\r\n: evil\r\n\r\n",
                             "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n",
                             "GET / HTTP/1.1\r\nHost: x\r\n   \t \r\n\r\n",
                             "GET / HTTP/1.1\r\n Host: x\r\n\r\n",
                             "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
                             "X-T: 1\r\n\t2\r\n\r\n"})
      answers.push_back(exchange_once(port, text));
  });
  for (const std::string& out : answers) {
    EXPECT_EQ(out.rfind("HTTP/1.1 400 ", 0), 0u) << out;
    EXPECT_EQ(count(out, "HTTP/1.1 "), 1u) << out;
  }
}

// A chunk's data must end with CRLF: two other bytes there are 400 and the
// connection closes, so nothing after them is read as a request (Debian's
// llhttp 8 took any two bytes, and the request hidden after them was served).
// The same holds when the CRLF's bytes arrive in a later read.
TEST(http, chunk_data_not_followed_by_crlf_is_400_and_nothing_after_it_is_served) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string smuggled, split, good;
  with_client(loop, [&] {
    smuggled = exchange_once(port,
                             "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n"
                             "GET /query?smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
    http_connection c = http_connection::to(port);
    c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r");
    std::this_thread::sleep_for(50ms);  // two reads, most likely; one read must fail the same way
    c.send("X0\r\n\r\nGET /query?smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
    split = c.read_to_end();
    good = exchange_once(port, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                               "2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n");
  });
  for (const std::string& out : {smuggled, split}) {
    EXPECT_EQ(out.rfind("HTTP/1.1 400 ", 0), 0u) << out;
    EXPECT_EQ(count(out, "HTTP/1.1 "), 1u) << out;
    EXPECT_EQ(out.find("smuggled"), npos) << out;
  }
  EXPECT_EQ(good.rfind("HTTP/1.1 200 ", 0), 0u) << good;
  EXPECT_NE(good.find("abcde"), npos) << good;
}

// A chunk larger than the body may be is 413 at once, not after waiting for its bytes.
TEST(http, a_chunk_past_max_body_bytes_is_413_before_its_data) {
  crew::loop loop;
  server s(echo_routes(), {.max_body_bytes = 1024});
  int port = s.listen(0).value();
  http_answer huge;
  with_client(loop, [&] {
    http_connection c = http_connection::to(port);
    c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n");
    huge = c.answer();
  });
  EXPECT_EQ(huge.status, 413);
}

// Issue 11: set_header("X-Test", "a\r\nSet-Cookie: x") put a Set-Cookie line on the wire.
TEST(http, nothing_but_http_reaches_the_wire_through_status_headers_or_content_type) {
  crew::loop loop;
  std::string refused;
  server s([&](request&, response& res) {
    auto attempt = [&](auto&& call) {
      try {
        call();
        refused += "accepted ";
      } catch (const std::system_error& e) {
        refused += crew::error_name(e.code()) + " ";
      }
    };
    attempt([&] { res.set_header("X-Test", "a\r\nSet-Cookie: x"); });
    attempt([&] { res.set_header("X-Nul", std::string("a\0b", 3)); });
    attempt([&] { res.set_header("Bad Name", "x"); });
    attempt([&] { res.set_header("Content-Length", "5"); });
    attempt([&] { res.status(-5); });
    attempt([&] { res.status(1000); });
    attempt([&] { res.status(200, "OK\r\nSet-Cookie: y"); });
    attempt([&] { res.send("x", "text/plain\nSet-Cookie: z"); });
    attempt([&] { res.set_header("X-Fine", "tab\tand text"); });
    res.status(299, "Custom Reason").send(refused);
  });
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] { out = exchange_once(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); });
  EXPECT_EQ(refused,
            "ERR_INVALID_CHAR ERR_INVALID_CHAR ERR_INVALID_HTTP_TOKEN ERR_HTTP_INVALID_HEADER_VALUE "
            "ERR_HTTP_INVALID_STATUS_CODE ERR_HTTP_INVALID_STATUS_CODE ERR_INVALID_CHAR ERR_INVALID_CHAR accepted ");
  EXPECT_EQ(out.rfind("HTTP/1.1 299 Custom Reason\r\n", 0), 0u) << out;
  EXPECT_EQ(out.find("Set-Cookie"), npos) << out;
  EXPECT_NE(out.find("X-Fine: tab\tand text\r\n"), npos) << out;
}

TEST(http, the_head_cannot_change_once_it_has_gone_out) {
  crew::loop loop;
  std::string refused;
  server s([&](request&, response& res) {
    res.send("done");
    try {
      res.status(404);
    } catch (const std::system_error& e) {
      refused = crew::error_name(e.code());
    }
  });
  int port = s.listen(0).value();
  with_client(loop, [&] { exchange_once(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); });
  EXPECT_EQ(refused, "ERR_HTTP_HEADERS_SENT");
}

// -- streams

// Node's res.write()/res.end(): chunks with back-pressure, to a client that reads slowly.
TEST(http, a_streamed_answer_goes_out_chunked_with_back_pressure) {
  crew::loop loop;
  const std::string whole = pattern(8 << 20);  // more than the kernel's buffers hold (about 3 MB on loopback)
  int full = 0, drains = 0;
  struct producer {
    response res;
    std::size_t sent = 0;
  };
  std::shared_ptr<producer> p;
  router routes;
  routes.get("/stream", [&](request&, response& res) {
    p = std::make_shared<producer>(producer{std::move(res)});
    p->res.set_header("Content-Type", "application/octet-stream");
    auto pump = [&] {
      while (p->sent < whole.size()) {
        std::string_view chunk = std::string_view(whole).substr(p->sent, 16 * 1024);
        p->sent += chunk.size();
        if (!p->res.write(chunk)) {
          ++full;
          return;  // on_drain goes on
        }
      }
      p->res.end();
    };
    p->res.on_drain([&, pump] {
      ++drains;
      pump();
    });
    pump();
  });
  server s(std::move(routes));
  int port = s.listen(0).value();
  http_answer a;
  with_client(loop, [&] {
    http_connection c = http_connection::to(port, 16 * 1024);
    c.read_slowly(64 * 1024, 1ms);
    c.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    a = c.answer();
  });
  EXPECT_NE(a.head.find("Transfer-Encoding: chunked"), npos) << a.head;
  EXPECT_NE(a.head.find("Content-Type: application/octet-stream"), npos) << a.head;
  EXPECT_EQ(a.body.size(), whole.size());
  EXPECT_TRUE(a.body == whole);
  EXPECT_GT(full, 0) << "write() reported a full queue";
  EXPECT_EQ(drains, full) << "each full queue was followed by one drain";
}

TEST(http, a_streamed_answer_to_http_1_0_runs_to_the_close) {
  crew::loop loop;
  server s([](request&, response& res) {
    res.write("part one, ");
    res.write("part two");
    res.end();
  });
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] { out = exchange_once(port, "GET / HTTP/1.0\r\n\r\n"); });
  EXPECT_EQ(out.find("Transfer-Encoding"), npos) << out;
  EXPECT_NE(out.find("Connection: close"), npos) << out;
  EXPECT_TRUE(out.ends_with("\r\n\r\npart one, part two")) << out;
}

// An upload past max_body_bytes, to a route that streams its body.
TEST(http, a_streamed_request_body_arrives_in_pieces_past_max_body_bytes) {
  crew::loop loop;
  const std::string upload = pattern(3 << 20);
  router routes;
  routes.post("/upload", [](request& req, response& res) {
    struct tally {
      std::size_t bytes = 0, pieces = 0;
      std::string first;
    };
    auto t = std::make_shared<tally>();
    req.on_data([t](std::string_view chunk) {
      if (t->first.size() < 64) t->first += chunk.substr(0, 64 - t->first.size());
      t->bytes += chunk.size();
      ++t->pieces;
    });
    req.on_end([t, &req, res = std::move(res)](std::error_code ec) mutable {
      res.send(ec ? crew::error_name(ec)
                  : std::to_string(t->bytes) + " " + (t->pieces > 1 ? "pieces " : "one ") + t->first + " " +
                        std::string(req.trailer("x-done")));
    });
  }, {.stream_body = true});
  routes.post("/whole", [](request& req, response& res) { res.send(std::to_string(req.body.size())); });
  server s(std::move(routes), {.max_body_bytes = 64 * 1024});
  int port = s.listen(0).value();
  http_answer sized, chunked, whole;
  with_client(loop, [&] {
    http_connection c = http_connection::to(port);
    c.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(upload.size()) + "\r\n\r\n" + upload);
    sized = c.answer();
    std::string body;
    for (std::size_t at = 0; at < upload.size(); at += 100'000) {
      std::string_view piece = std::string_view(upload).substr(at, 100'000);
      char size[16];
      std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
      body += size + std::string(piece) + "\r\n";
    }
    c.send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body + "0\r\nX-Done: yes\r\n\r\n");
    chunked = c.answer();
    c.send("POST /whole HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(upload.size()) + "\r\n\r\n");
    whole = c.answer();
  });
  std::string expected = std::to_string(upload.size()) + " pieces " + upload.substr(0, 64);
  EXPECT_EQ(sized.body, expected + " ");
  EXPECT_EQ(chunked.body, expected + " yes");
  EXPECT_EQ(whole.status, 413) << "a route that does not stream keeps the limit";
}

TEST(http, a_streamed_request_body_cut_short_tells_on_end_why) {
  crew::loop loop;
  std::vector<std::string> ends;
  router routes;
  routes.post("/upload", [&](request& req, response& res) {
    req.on_data([](std::string_view) {});
    req.on_end([&, res = std::move(res)](std::error_code ec) mutable {
      ends.push_back(crew::error_name(ec));
      res.send("heard\n");
    });
  }, {.stream_body = true});
  server s(std::move(routes), {.request_timeout = 300ms});
  int port = s.listen(0).value();
  std::string timed_out;
  with_client(loop, [&] {
    http_connection gone = http_connection::to(port);
    gone.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npart");
    gone.close();
    http_connection slow = http_connection::to(port);
    slow.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npart");
    timed_out = slow.read_to_end();
  });
  std::sort(ends.begin(), ends.end());
  EXPECT_EQ(ends, (std::vector<std::string>{"ECONNRESET", "ETIMEDOUT"}));
  EXPECT_EQ(timed_out.rfind("HTTP/1.1 408 ", 0), 0u) << "the server answers in the handler's place: " << timed_out;
}

TEST(http, a_streamed_request_body_waits_while_paused) {
  crew::loop loop;
  std::string got;
  std::optional<response> answer;
  crew::timer later(loop);
  bool resumed = false;
  router routes;
  routes.post("/paced", [&](request& req, response& res) {
    answer.emplace(std::move(res));
    req.pause();
    later.start(200ms, {}, [&, r = &req] {
      resumed = true;
      r->resume();
    });
    req.on_data([&](std::string_view chunk) {
      EXPECT_TRUE(resumed) << "a byte arrived while paused";
      got += chunk;
    });
    req.on_end([&](std::error_code) { answer->send(got); });
  }, {.stream_body = true});
  server s(std::move(routes));
  int port = s.listen(0).value();
  http_answer a;
  with_client(loop, [&] {
    http_connection c = http_connection::to(port);
    c.send("POST /paced HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    a = c.answer();
  });
  EXPECT_EQ(a.body, "hello");
}

// -- the callback contract

// A send() that makes room for the requests waiting (past 32 in flight)
// never runs their handlers inside itself.
TEST(http, no_handler_runs_inside_the_send_that_made_room_for_it) {
  crew::loop loop;
  std::vector<response> held;
  bool inside_send = false, nested = false;
  int handled = 0;
  crew::timer answer_all(loop);
  server s([&](request&, response& res) {
    nested = nested || inside_send;
    ++handled;
    held.push_back(std::move(res));
    answer_all.start(50ms, {}, [&] {
      for (response& r : held) {
        inside_send = true;
        r.send("ok");
        inside_send = false;
      }
      held.clear();
    });
  });
  int port = s.listen(0).value();
  std::string out;
  with_client(loop, [&] {
    std::string requests;
    for (int i = 0; i < 80; ++i) requests += "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    out = exchange_once(port, requests + "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  });
  EXPECT_EQ(handled, 81);
  EXPECT_EQ(count(out, "HTTP/1.1 200 OK"), 81u);
  EXPECT_FALSE(nested);
}

TEST(http, close_runs_done_on_a_later_turn_and_once) {
  crew::loop loop;
  server s(echo_routes());
  ASSERT_TRUE(s.listen(0));
  int done = 0;
  s.close([&] { ++done; });
  EXPECT_EQ(done, 0);
  crew::test::run_within(loop);
  EXPECT_EQ(done, 1);
}

TEST(http, graceful_close_finishes_the_request_in_flight_then_reports) {
  crew::loop loop;
  std::vector<response> pending;
  crew::timer later(loop);
  bool closed = false;
  std::unique_ptr<server> s;
  router routes;
  routes.get("/work", [&](request&, response& res) {
    pending.push_back(std::move(res));
    s->close([&] { closed = true; });  // shutdown arrives while the request is in flight
    later.start(100ms, {}, [&] { pending.back().send("done\n"); });
  });
  s = std::make_unique<server>(std::move(routes));
  int port = s->listen(0).value();
  std::string out;
  std::thread t([&] { out = exchange_once(port, "GET /work HTTP/1.1\r\nHost: x\r\n\r\n"); });
  crew::test::run_within(loop, 20s);  // returns once the drained server has closed
  t.join();
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK", 0), 0u) << out;
  EXPECT_NE(out.find("Connection: close\r\n"), npos);
  EXPECT_NE(out.find("done\n"), npos);
  EXPECT_TRUE(closed);

  bool closed_again = false;  // a second close has nothing to wait for, and says so
  s->close([&] { closed_again = true; });
  crew::test::run_within(loop, 20s);
  EXPECT_TRUE(closed_again);
}

TEST(http, graceful_close_answers_pipelined_requests_and_closes_idle_connections) {
  crew::loop loop;
  std::unique_ptr<server> s;
  bool closed = false;
  router routes = echo_routes();
  routes.get("/close", [&](request&, response& res) {
    res.send("closing\n");
    s->close([&] { closed = true; });
  });
  s = std::make_unique<server>(std::move(routes));
  int port = s->listen(0).value();
  std::string pipelined, idle_rest;
  http_answer idle_first;
  std::thread t([&] {
    http_connection idle = http_connection::to(port);
    idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    idle_first = idle.answer();
    pipelined = exchange_once(port, "GET /close HTTP/1.1\r\nHost: x\r\n\r\nGET /query?after HTTP/1.1\r\nHost: x\r\n\r\n");
    idle_rest = idle.read_to_end();
  });
  crew::test::run_within(loop, 20s);
  t.join();
  EXPECT_EQ(idle_first.status, 200);
  EXPECT_EQ(idle_rest, "") << "the idle connection closed after its grace";
  EXPECT_EQ(count(pipelined, "HTTP/1.1 200 OK"), 2u) << pipelined;
  EXPECT_NE(pipelined.find("/query|after"), npos);
  EXPECT_TRUE(pipelined.ends_with("/query|after")) << "the last answer ends the connection";
  EXPECT_TRUE(closed);
}

// -- destroying the server in each state: no callback afterwards, nothing leaked (ASan)

TEST(http, a_server_destroyed_before_it_listens_or_serves_leaves_nothing_behind) {
  crew::loop loop;
  { server never(echo_routes()); }
  {
    server listening(echo_routes());
    ASSERT_TRUE(listening.listen(0));
  }
  crew::test::run_within(loop);
}

TEST(http, a_server_destroyed_while_serving_runs_no_callback_afterwards) {
  crew::loop loop;
  std::optional<server> s;
  std::vector<response> pending;
  bool response_closed = false, body_ended = false;
  router routes;
  routes.get("/hold", [&](request&, response& res) {
    res.on_close([&] { response_closed = true; });
    pending.push_back(std::move(res));
  });
  routes.post("/upload", [&](request& req, response& res) {
    req.on_data([](std::string_view) {});
    req.on_end([&](std::error_code) { body_ended = true; });
    pending.push_back(std::move(res));
  }, {.stream_body = true});
  s.emplace(std::move(routes));
  int port = s->listen(0).value();
  crew::timer watch(loop);
  watch.start(10ms, 10ms, [&] {
    if (pending.size() < 2) return;
    s.reset();  // both requests are in flight
    watch.stop();
  });
  std::string held, uploading;
  with_client(loop, [&] {
    http_connection a = http_connection::to(port), b = http_connection::to(port);
    a.send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    b.send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nsome");
    held = a.read_to_end();
    uploading = b.read_to_end();
  });
  EXPECT_FALSE(s);
  for (response& r : pending) r.send("too late");  // does nothing
  pending.clear();
  crew::test::run_within(loop);
  EXPECT_EQ(held, "");
  EXPECT_EQ(uploading, "");
  EXPECT_FALSE(response_closed);
  EXPECT_FALSE(body_ended);
}

TEST(http, a_server_destroyed_inside_its_own_handler_runs_no_handler_afterwards) {
  crew::loop loop;
  std::optional<server> s;
  int handled = 0;
  s.emplace([&](request&, response& res) {
    ++handled;
    res.send("last words\n");
    s.reset();
  });
  int port = s->listen(0).value();
  std::string out;
  with_client(loop, [&] {
    out = exchange_once(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
  });
  crew::test::run_within(loop);
  EXPECT_EQ(handled, 1);
  EXPECT_LE(count(out, "HTTP/1.1 "), 1u) << out;
}

TEST(http, a_server_destroyed_during_its_close_runs_done_once_and_no_handler) {
  crew::loop loop;
  std::optional<server> s;
  std::optional<response> pending;
  int done = 0, handled = 0;
  crew::timer later(loop);
  s.emplace([&](request&, response& res) {
    ++handled;
    pending.emplace(std::move(res));
    s->close([&] { ++done; });
    later.start(20ms, {}, [&] { s.reset(); });  // the close is still waiting for this request
  });
  int port = s->listen(0).value();
  std::string out;
  with_client(loop, [&] { out = exchange_once(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); });
  pending->send("too late");
  pending.reset();
  crew::test::run_within(loop);
  EXPECT_EQ(handled, 1);
  EXPECT_EQ(done, 1);
  EXPECT_EQ(out, "");
}

// -- SIGPIPE

// Issue 11: a deferred answer to a client that had closed killed the process
// (SIGPIPE) on an AF_UNIX socket given to the server. In a fresh process, so
// that nothing else has touched SIGPIPE first.
TEST(http, a_late_answer_to_a_client_that_closed_does_not_kill_the_process) {
  crew::loop loop;
  crew::exec_result r;
  bool finished = false;
  crew::exec_file(CREW_FIXTURE, {"http-sigpipe"}, {}, [&](crew::exec_result result) {
    r = std::move(result);
    finished = true;
  });
  crew::test::run_within(loop, 30s);
  ASSERT_TRUE(finished);
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_EQ(r.out, "alive after EPIPE\n");
}

}  // namespace
