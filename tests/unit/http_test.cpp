#include "crew/http.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "crew/timer.hpp"
#include "http_client.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew::http::request;
using crew::http::response;
using crew::http::router;
using crew::http::server;

struct piece {
  std::string bytes;
  std::chrono::milliseconds pause_before{0};
};

// A blocking client on its own thread: sends the pieces, reads until the
// server closes (or 10 s pass), returns everything read.
std::string client(int port, std::vector<piece> pieces) {
  int fd = crew::test::connect_to(port);
  if (fd < 0) return "connect failed";
  for (const piece& p : pieces) {
    std::this_thread::sleep_for(p.pause_before);
    if (send(fd, p.bytes.data(), p.bytes.size(), MSG_NOSIGNAL) < 0) break;
  }
  std::string out;
  char buffer[65536];
  for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) out.append(buffer, static_cast<std::size_t>(n));
  close(fd);
  return out;
}

// Runs the loop while a client talks to the server; returns what the client read.
std::string talk(crew::loop& loop, int port, std::vector<piece> pieces) {
  std::string out;
  std::thread t([&] {
    out = client(port, std::move(pieces));
    loop.post([&] { loop.stop(); });
  });
  crew::test::run_within(loop, 20s);
  t.join();
  return out;
}

std::size_t count(const std::string& text, std::string_view what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
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

TEST(http, answers_a_request_with_status_length_date_and_body) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out = talk(loop, port, {{"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}});
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("Content-Length: 6\r\n"), std::string::npos);
  EXPECT_NE(out.find("Date: "), std::string::npos);
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
  EXPECT_EQ(out.substr(out.size() - 6), "hello\n");
  EXPECT_EQ(s.requests_served(), 1u);
}

TEST(http, keep_alive_and_pipelining_answer_in_request_order) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out = talk(loop, port,
                         {{"GET /query?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                           "GET /query?b=2 HTTP/1.1\r\nHost: x\r\n\r\n"
                           "GET /query?c=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}});
  EXPECT_EQ(count(out, "HTTP/1.1 200 OK"), 3u) << out;
  std::size_t a = out.find("/query|a=1"), b = out.find("/query|b=2"), c = out.find("/query|c=3");
  ASSERT_NE(c, std::string::npos) << out;
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
  std::string out = talk(loop, port,
                         {{"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}});
  std::size_t slow = out.find("slow\n"), fast = out.find("fast\n");
  ASSERT_NE(fast, std::string::npos) << out;
  EXPECT_LT(slow, fast);
}

TEST(http, reads_content_length_and_chunked_bodies) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out = talk(loop, port,
                         {{"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
                           "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                           "3\r\nfgh\r\n2\r\nij\r\n0\r\n\r\n"}});
  EXPECT_NE(out.find("\r\n\r\nabcde"), std::string::npos) << out;
  EXPECT_NE(out.find("\r\n\r\nfghij"), std::string::npos) << out;
  EXPECT_EQ(count(out, "Content-Length: 5\r\n"), 2u);
}

TEST(http, json_in_and_out) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out = talk(loop, port,
                         {{"POST /json HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}"}});
  EXPECT_NE(out.find("Content-Type: application/json\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("{\"got\":{\"a\":1}}"), std::string::npos) << out;
}

TEST(http, unknown_paths_are_404_and_other_methods_405_with_allow) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out = talk(loop, port,
                         {{"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
                           "DELETE /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}});
  EXPECT_NE(out.find("HTTP/1.1 404 Not Found"), std::string::npos) << out;
  EXPECT_NE(out.find("HTTP/1.1 405 Method Not Allowed"), std::string::npos);
  EXPECT_NE(out.find("Allow: POST\r\n"), std::string::npos);
}

TEST(http, head_gets_the_headers_without_the_body) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string out = talk(loop, port, {{"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}});
  EXPECT_NE(out.find("Content-Length: 6\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("hello"), std::string::npos);
}

TEST(http, limits_are_answered_with_their_status_and_the_connection_closes) {
  crew::loop loop;
  server s(echo_routes(), {.max_header_bytes = 1024, .max_body_bytes = 16});
  int port = s.listen(0).value();
  std::string big_header = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
  EXPECT_EQ(talk(loop, port, {{big_header}}).rfind("HTTP/1.1 431 ", 0), 0u);
  std::string big_body = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
  EXPECT_EQ(talk(loop, port, {{big_body}}).rfind("HTTP/1.1 413 ", 0), 0u);
  std::string big_chunks = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" +
                           std::string(32, 'b') + "\r\n0\r\n\r\n";
  EXPECT_EQ(talk(loop, port, {{big_chunks}}).rfind("HTTP/1.1 413 ", 0), 0u);
}

TEST(http, a_malformed_request_gets_400_and_other_connections_carry_on) {
  crew::loop loop;
  server s(echo_routes());
  int port = s.listen(0).value();
  std::string good, bad;
  std::atomic<int> done{0};
  auto finished = [&] {
    if (++done == 2) loop.post([&] { loop.stop(); });
  };
  std::thread other([&] {
    good = client(port, {{"GET / HTTP/1.1\r\nHost: x\r\n", 0ms}, {"Connection: close\r\n\r\n", 200ms}});
    finished();
  });
  std::thread broken([&] {
    bad = client(port, {{"GET / HTTP/1.1\r\nHost x\r\n\r\n", 50ms}});
    finished();
  });
  crew::test::run_within(loop, 20s);
  other.join();
  broken.join();
  EXPECT_EQ(bad.rfind("HTTP/1.1 400 Bad Request", 0), 0u) << bad;
  EXPECT_EQ(good.rfind("HTTP/1.1 200 OK", 0), 0u) << good;
}

TEST(http, slow_headers_get_408_and_idle_connections_are_closed) {
  crew::loop loop;
  server s(echo_routes(), {.headers_timeout = 200ms, .keep_alive_timeout = 300ms});
  int port = s.listen(0).value();
  std::string slow = talk(loop, port, {{"GET / HTTP/1.1\r\nHost: x\r\n"}});  // and the rest never comes
  EXPECT_EQ(slow.rfind("HTTP/1.1 408 ", 0), 0u) << slow;
  // Keep-alive: one answer, then the idle connection is closed by the server.
  std::string idle = talk(loop, port, {{"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}});
  EXPECT_EQ(count(idle, "HTTP/1.1 200 OK"), 1u) << idle;
}

TEST(http, a_taken_port_is_eaddrinuse) {
  crew::loop loop;
  server first(echo_routes());
  int port = first.listen(0).value();
  server second(echo_routes());
  EXPECT_EQ(second.listen(port).error(), std::errc::address_in_use);
  EXPECT_EQ(crew::error_name(second.listen(port).error()), "EADDRINUSE");
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
  std::thread t([&] { out = client(port, {{"GET /work HTTP/1.1\r\nHost: x\r\n\r\n"}}); });
  crew::test::run_within(loop, 20s);  // returns once the drained server has closed
  t.join();
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK", 0), 0u) << out;
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
  EXPECT_NE(out.find("done\n"), std::string::npos);
  EXPECT_TRUE(closed);

  bool closed_again = false;  // a second close has nothing to wait for, and says so
  s->close([&] { closed_again = true; });
  crew::test::run_within(loop, 20s);
  EXPECT_TRUE(closed_again);
}

}  // namespace
