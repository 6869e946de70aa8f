// TCP servers and sockets (Node's net), on 127.0.0.1 and ::1 only.
#include "crew/tcp.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "crew/child_process.hpp"
#include "crew/timer.hpp"
#include "http_client.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

// A server whose connections live in a list and echo what they read.
struct echo_server {
  std::list<crew::tcp::socket> clients;
  crew::tcp::server server;
  std::atomic<int> connections_seen = 0;  // read by client threads

  explicit echo_server(crew::loop& l, crew::tcp::server_options options = {})
      : server([this](crew::tcp::socket s) { keep(std::move(s)); }, options, l) {}

  void keep(crew::tcp::socket s) {
    ++connections_seen;
    crew::tcp::socket& c = clients.emplace_back(std::move(s));
    auto at = std::prev(clients.end());
    c.on_data([&c](std::string_view bytes) { c.write(bytes); });
    c.on_close([this, at] { clients.erase(at); });
  }
};

// Connects, sends `text`, half-closes and reads until the server closes.
std::string round_trip(int port, const std::string& text) {
  int fd = crew::test::connect_to(port);
  if (fd < 0) return "connect failed";
  send(fd, text.data(), text.size(), MSG_NOSIGNAL);
  shutdown(fd, SHUT_WR);
  std::string back;
  char buffer[4096];
  for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) back.append(buffer, static_cast<std::size_t>(n));
  close(fd);
  return back;
}

// Runs the loop on this thread while `client` runs on another.
template <class F>
void with_client(crew::loop& l, F client) {
  crew::loop::keep_alive hold(l);
  std::thread t([&] {
    client();
    l.post([&] { hold = {}; });
  });
  crew::test::run_within(l);
  t.join();
}

// The same, closing the server once the client is done, so that the loop ends.
template <class F>
void with_client(crew::loop& l, crew::tcp::server& server, F client) {
  std::thread t([&] {
    client();
    l.post([&] { server.close(); });
  });
  crew::test::run_within(l);
  t.join();
}

TEST(tcp, a_server_echoes_what_a_client_sends_and_ends_after_the_client_does) {
  crew::loop l;
  echo_server echo(l);
  crew::result<int> port = echo.server.listen(0);
  ASSERT_TRUE(port) << crew::error_name(port.error());
  std::string back;
  with_client(l, echo.server, [&] { back = round_trip(*port, "hello over tcp"); });
  EXPECT_EQ(back, "hello over tcp");
  EXPECT_EQ(echo.connections_seen, 1);
  EXPECT_TRUE(echo.clients.empty()) << "the socket closed after both sides ended";
}

TEST(tcp, a_client_connects_writes_and_reads_through_crew) {
  crew::loop l;
  echo_server echo(l);
  int port = echo.server.listen(0).value();
  std::string back;
  std::optional<crew::tcp::socket> client;
  crew::tcp::connect("127.0.0.1", port, [&](crew::result<crew::tcp::socket> s) {
    ASSERT_TRUE(s) << crew::error_name(s.error());
    client.emplace(std::move(s).value());
    EXPECT_EQ(client->remote_address().value().port, port);
    EXPECT_EQ(client->local_address().value().host, "127.0.0.1");
    EXPECT_FALSE(client->set_no_delay(true));
    EXPECT_FALSE(client->set_keep_alive(true, 30s));
    EXPECT_FALSE(client->set_keep_alive(true));
    client->on_data([&](std::string_view bytes) {
      back += bytes;
      if (back.size() == 5) {
        client->end();
        echo.server.close();
      }
    });
    client->write("ping!");
  }, {}, l);
  crew::test::run_within(l);
  EXPECT_EQ(back, "ping!");
}

TEST(tcp, a_server_listens_on_ipv6_and_on_every_interface) {
  crew::loop l;
  echo_server v6(l);
  crew::result<int> port6 = v6.server.listen(0, "::1");
  if (!port6) GTEST_SKIP() << "no IPv6 loopback here: " << crew::error_name(port6.error());
  echo_server any(l);
  crew::result<int> port_any = any.server.listen(0, "");
  ASSERT_TRUE(port_any) << crew::error_name(port_any.error());
  EXPECT_EQ(v6.server.local_address().value(), (crew::tcp::address{"::1", *port6, 6}));
  int answers = 0;
  auto expect_echo = [&](const std::string& host, int port) {
    crew::tcp::connect(host, port, [&, host](crew::result<crew::tcp::socket> s) {
      ASSERT_TRUE(s) << host << ": " << crew::error_name(s.error());
      auto shared = std::make_shared<crew::tcp::socket>(std::move(s).value());
      shared->on_data([&answers, shared](std::string_view) {
        ++answers;
        shared->close();
      });
      shared->write("x");
    }, {}, l);
  };
  expect_echo("::1", *port6);
  expect_echo("127.0.0.1", *port_any);  // "" takes IPv4 clients too
  crew::timer stop = crew::scoped_timeout(crew::test::scaled(5s), [&] { l.stop(); }, l);
  crew::timer check = crew::scoped_interval(10ms, [&] {
    if (answers == 2) l.stop();
  }, l);
  l.run();
  EXPECT_EQ(answers, 2);
}

TEST(tcp, a_port_in_use_is_eaddrinuse_and_a_bad_host_einval) {
  crew::loop l;
  crew::test::held_port held;
  echo_server echo(l);
  EXPECT_EQ(echo.server.listen(held.port()).error(), std::errc::address_in_use);
  EXPECT_EQ(echo.server.listen(0, "not an address at all").error(), std::errc::invalid_argument);
  EXPECT_EQ(echo.server.listen(70000).error(), std::errc::invalid_argument);
  EXPECT_TRUE(echo.server.listen(0));
  EXPECT_EQ(echo.server.listen(0).error(), std::errc::connection_already_in_progress);
}

TEST(tcp, an_adopted_connection_arrives_on_a_later_turn_and_is_counted) {
  crew::loop l;
  echo_server echo(l);
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  EXPECT_FALSE(echo.server.adopt_connection(pair[0]));
  EXPECT_EQ(echo.connections_seen, 0) << "the connection event ran inside adopt_connection()";
  EXPECT_EQ(echo.server.connections(), 1u);
  send(pair[1], "abc", 3, MSG_NOSIGNAL);
  std::string back;
  crew::timer poll = crew::scoped_interval(5ms, [&] {
    char buffer[8];
    ssize_t n = recv(pair[1], buffer, sizeof buffer, MSG_DONTWAIT);
    if (n > 0) back.append(buffer, static_cast<std::size_t>(n));
    if (back == "abc") {
      close(pair[1]);
      poll.stop();
    }
  }, l);
  crew::test::run_within(l);
  EXPECT_EQ(back, "abc");
  EXPECT_EQ(echo.connections_seen, 1);
  EXPECT_EQ(echo.server.connections(), 0u);
}

TEST(tcp, past_max_connections_the_newest_are_refused_and_the_others_keep_working) {
  crew::loop l;
  echo_server echo(l, {.max_connections = 2});
  int port = echo.server.listen(0).value();
  std::vector<std::string> answers(3);
  with_client(l, echo.server, [&] {
    int first = crew::test::connect_to(port), second = crew::test::connect_to(port);
    // Both are counted once the server has them; then a third comes.
    for (int i = 0; i < 1000 && echo.connections_seen < 2; ++i) std::this_thread::sleep_for(1ms);
    int third = crew::test::connect_to(port);
    char buffer[16];
    EXPECT_EQ(recv(third, buffer, sizeof buffer, 0), 0) << "the third connection was not refused";
    for (int fd : {first, second}) {
      send(fd, "still here", 10, MSG_NOSIGNAL);
      ssize_t n = recv(fd, buffer, sizeof buffer, 0);
      EXPECT_EQ(std::string(buffer, static_cast<std::size_t>(std::max<ssize_t>(n, 0))), "still here");
      close(fd);
    }
    close(third);
  });
  EXPECT_EQ(echo.connections_seen, 2);
}

TEST(tcp, a_paused_server_leaves_connections_in_the_queue_until_resumed) {
  crew::loop l;
  echo_server echo(l);
  int port = echo.server.listen(0).value();
  echo.server.pause();
  int fd = crew::test::connect_to(port);  // the kernel completes it: it waits in the backlog
  ASSERT_GE(fd, 0);
  bool seen_while_paused = false;
  crew::timer resume = crew::scoped_timeout(50ms, [&] {
    seen_while_paused = echo.connections_seen > 0;
    echo.server.resume();
  }, l);
  crew::timer done = crew::scoped_interval(5ms, [&] {
    if (echo.connections_seen > 0) {
      close(fd);
      echo.server.close();
      done.stop();
    }
  }, l);
  crew::test::run_within(l);
  EXPECT_FALSE(seen_while_paused);
  EXPECT_EQ(echo.connections_seen, 1);
}

TEST(tcp, close_takes_queued_connections_tells_the_owner_and_waits_for_each_to_end) {
  crew::loop l;
  echo_server echo(l);
  int port = echo.server.listen(0).value();
  echo.server.pause();
  int queued = crew::test::connect_to(port);  // accepted by close(), not reset
  bool draining = false, done = false;
  echo.server.on_draining([&] {
    draining = true;
    EXPECT_EQ(echo.connections_seen, 1) << "the queued connection comes before the draining event";
    for (auto& c : echo.clients) c.end();
  });
  echo.server.close([&] { done = true; });
  EXPECT_FALSE(draining || done) << "close() ran a callback inside itself";
  EXPECT_FALSE(echo.server.is_open());
  EXPECT_NE(crew::test::connect_to(port), queued) << "still accepting";
  crew::timer reader = crew::scoped_timeout(20ms, [&] {
    char buffer[8];
    EXPECT_EQ(recv(queued, buffer, sizeof buffer, 0), 0);  // the server ended it
    close(queued);
  }, l);
  crew::test::run_within(l);
  EXPECT_TRUE(draining);
  EXPECT_TRUE(done);
}

TEST(tcp, a_server_may_be_destroyed_inside_its_own_connection_callback) {
  crew::loop l;
  std::optional<crew::tcp::server> server;
  std::optional<crew::tcp::socket> kept;
  std::atomic<bool> destroyed = false;  // read by the client thread
  server.emplace([&](crew::tcp::socket s) {
    kept.emplace(std::move(s));
    server.reset();
    destroyed = true;
  }, crew::tcp::server_options{}, l);
  int port = server->listen(0).value();
  with_client(l, [&] {
    int fd = crew::test::connect_to(port);
    for (int i = 0; i < 1000 && !destroyed; ++i) std::this_thread::sleep_for(1ms);
    close(fd);
  });
  EXPECT_FALSE(server);
  ASSERT_TRUE(kept);
  EXPECT_TRUE(kept->is_open()) << "a connection outlives the server that gave it out";
}

TEST(tcp, a_server_destroyed_in_any_state_runs_no_callback_afterwards) {
  crew::loop l;
  int events = 0;
  auto count = [&events](crew::tcp::socket) { ++events; };
  {  // before it listens
    crew::tcp::server idle(count, {}, l);
  }
  {  // while it listens, with a connection waiting in its queue
    crew::tcp::server listening(count, {}, l);
    int port = listening.listen(0).value();
    int fd = crew::test::connect_to(port);
    close(fd);
  }
  {  // with an adopted connection not yet delivered
    crew::tcp::server adopting(count, {}, l);
    int pair[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    EXPECT_FALSE(adopting.adopt_connection(pair[0]));
    close(pair[1]);
  }
  crew::test::run_within(l);
  EXPECT_EQ(events, 0);
  // During a drain: the drain goes on without its object, and done runs once.
  int drained = 0;
  std::optional<crew::tcp::socket> held;
  {
    crew::tcp::server draining([&](crew::tcp::socket s) { held.emplace(std::move(s)); }, {}, l);
    int pair[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    EXPECT_FALSE(draining.adopt_connection(pair[0]));
    draining.close([&] { ++drained; });
    close(pair[1]);
  }
  crew::timer end = crew::scoped_timeout(20ms, [&] { held.reset(); }, l);
  crew::test::run_within(l);
  EXPECT_EQ(drained, 1);
}

TEST(tcp, a_loop_destroyed_under_a_listening_server_and_its_sockets_leaves_them_inert) {
  std::optional<crew::loop> l(std::in_place);
  echo_server echo(*l);
  int port = echo.server.listen(0).value();
  int fd = crew::test::connect_to(port);
  while (echo.clients.empty()) l->run_once();
  bool done = false;
  crew::tcp::server draining([](crew::tcp::socket) {}, {}, *l);
  draining.close([&] { done = true; });
  l.reset();
  EXPECT_FALSE(done) << "a callback ran inside ~loop";
  EXPECT_FALSE(echo.server.is_open());
  EXPECT_FALSE(echo.clients.front().is_open());
  EXPECT_FALSE(echo.server.listening());
  EXPECT_FALSE(echo.server.adopt_connection(dup(fd)) == std::error_code{});
  close(fd);
}

TEST(tcp, connect_reports_refusal_bad_ports_and_timeouts_on_a_later_turn) {
  crew::loop l;
  int free_port;
  {
    crew::test::held_port held;
    free_port = held.port();
  }
  std::map<std::string, std::string> errors;
  auto note = [&](std::string what) {
    return [&errors, what](crew::result<crew::tcp::socket> s) { errors[what] = crew::error_name(s.error()); };
  };
  crew::tcp::connect("127.0.0.1", free_port, note("refused"), {}, l);
  crew::tcp::connect("127.0.0.1", 0, note("port 0"), {}, l);
  crew::tcp::connect("no.such.host.invalid", 80, note("no such host"), {}, l);
  EXPECT_TRUE(errors.empty()) << "a completion ran inside connect()";
  // A listener whose queue is full drops new SYNs, so a connection to it waits.
  crew::test::held_port full;  // backlog 1, never accepting
  std::vector<int> fillers;
  for (int i = 0; i < 8; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(full.port()));
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
    fillers.push_back(fd);
  }
  crew::tcp::connect("127.0.0.1", full.port(), note("full queue"), {.timeout = 200ms}, l);
  crew::test::run_within(l);
  for (int fd : fillers) close(fd);
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_EQ(errors["refused"], "ECONNREFUSED");
  EXPECT_EQ(errors["port 0"], "EINVAL");
  EXPECT_TRUE(errors["no such host"].starts_with("EAI_")) << errors["no such host"];
  EXPECT_EQ(errors["full queue"], "ETIMEDOUT");
}

TEST(tcp, a_full_descriptor_table_pauses_accepting_without_spinning_and_recovers) {
  // The server runs in a child with a low descriptor limit.
  crew::loop l;
  crew::child_process server = crew::spawn(CREW_FIXTURE, {"tcp-echo", "32"}, {}, l);
  int port = 0;
  std::string out;
  server.out().on_data([&](std::string_view s) {
    out += s;
    if (!port && out.find('\n') != std::string::npos) {
      port = std::stoi(out);
      l.stop();
    }
  });
  crew::timer limit = crew::scoped_timeout(crew::test::scaled(10s), [&] { l.stop(); }, l);
  l.run();
  limit.close();
  ASSERT_GT(port, 0) << out;
  std::string after;
  std::thread client([&] {
    std::vector<int> flood;
    for (int i = 0; i < 100; ++i) flood.push_back(crew::test::connect_to(port));  // past its 32 descriptors
    std::this_thread::sleep_for(500ms);  // the server sits at EMFILE meanwhile
    for (int fd : flood) close(fd);
    std::string text = "after the flood";
    for (int i = 0; i < 100 && after != text; ++i) {
      after = round_trip(port, text);
      if (after != text) std::this_thread::sleep_for(50ms);
    }
  });
  client.join();
  EXPECT_EQ(after, "after the flood") << "the server never recovered";
  (void)server.kill(SIGTERM);
  crew::test::run_within(l);
  // Each EMFILE is one accept attempt: a spinning server makes thousands in
  // half a second, a pausing one a handful.
  std::size_t at = out.find("emfile ");
  ASSERT_NE(at, std::string::npos) << out;
  int failures = std::stoi(out.substr(at + 7));
  EXPECT_GT(failures, 0) << "the flood never filled the descriptor table";
  EXPECT_LT(failures, 100) << "accepting did not pause at EMFILE";
}

}  // namespace
