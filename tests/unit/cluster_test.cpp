#include "crew/cluster.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "test_support.hpp"

namespace {

using crew::cluster::policy;
using crew::cluster::primary;
using crew::cluster::worker_process;
using namespace std::chrono_literals;

// One GET / with Connection: close; the body (a worker's pid), or "" on failure.
std::string get(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    std::string request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buffer[4096];
    for (ssize_t n; (n = recv(fd, buffer, sizeof buffer, 0)) > 0;) out.append(buffer, static_cast<std::size_t>(n));
  }
  close(fd);
  std::size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

// Starts two workers of `kind` on port 0, sends 60 requests once both listen,
// returns the set of pids that answered and the pids of the workers.
void serve_with(policy kind, std::set<std::string>& answered, std::set<std::string>& workers) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}, .scheduling = kind}, loop);
  int listening = 0, port = 0;
  std::thread client;
  p.on_listening([&](worker_process& w, int bound) {
    workers.insert(std::to_string(w.pid()));
    if (port != 0) {
      EXPECT_EQ(bound, port);  // port 0: every worker gets the same port
    }
    port = bound;
    if (++listening < 2) return;
    client = std::thread([&, bound] {
      std::set<std::string> seen;
      for (int i = 0; i < 60; ++i) seen.insert(get(bound));
      loop.post([&, seen] {
        answered = seen;
        for (auto& [id, each] : p.workers()) each->kill(SIGKILL);
      });
    });
  });
  int exits = 0;
  p.on_exit([&](worker_process&, crew::exit_status) {
    if (++exits == 2) loop.stop();
  });
  p.fork();
  p.fork();
  crew::test::run_within(loop, 60s);
  if (client.joinable()) client.join();
}

TEST(cluster, round_robin_hands_connections_to_every_worker_in_turn) {
  std::set<std::string> answered, workers;
  serve_with(policy::round_robin, answered, workers);
  EXPECT_EQ(workers.size(), 2u);
  EXPECT_EQ(answered, workers);
}

TEST(cluster, shared_sockets_serve_from_every_worker) {
  std::set<std::string> answered, workers;
  serve_with(policy::shared, answered, workers);
  EXPECT_EQ(workers.size(), 2u);
  EXPECT_FALSE(answered.count(""));
  for (const auto& pid : answered) EXPECT_TRUE(workers.count(pid)) << pid;
}

TEST(cluster, reuseport_workers_serve_on_one_port) {
  std::set<std::string> answered, workers;
  serve_with(policy::reuseport, answered, workers);
  EXPECT_EQ(workers.size(), 2u);
  EXPECT_FALSE(answered.count(""));
  for (const auto& pid : answered) EXPECT_TRUE(workers.count(pid)) << pid;
}

TEST(cluster, a_worker_reports_online_and_its_exit) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}}, loop);
  std::vector<std::string> events;
  p.on_fork([&](worker_process&) { events.push_back("fork"); });
  p.on_online([&](worker_process& w) {
    events.push_back("online");
    w.kill(SIGTERM);
  });
  p.on_exit([&](worker_process& w, crew::exit_status s) {
    events.push_back("exit " + std::to_string(s.signal));
    EXPECT_TRUE(w.is_dead());
  });
  p.fork();
  crew::test::run_within(loop, 30s);
  EXPECT_EQ(events, (std::vector<std::string>{"fork", "online", "exit 15"}));
  EXPECT_TRUE(p.workers().empty());
}

TEST(cluster, a_killed_worker_is_replaced_and_a_crash_loop_stops) {
  crew::loop loop;
  // A worker that cannot listen exits at once: a crash loop.
  bool gave_up = false;
  int exits = 0;
  {
    primary p({.exec = CREW_FIXTURE,
               .args = {"cluster-http", "70000"},  // no such port: EINVAL
               .scheduling = policy::reuseport,
               .restart = {.enabled = true, .first_delay = 1ms, .max_delay = 4ms, .max_restarts = 5}},
              loop);
    p.on_exit([&](worker_process&, crew::exit_status) { ++exits; });
    p.on_crash_loop([&] {
      gave_up = true;
      loop.stop();
    });
    p.fork();
    crew::test::run_within(loop, 30s);
  }
  EXPECT_TRUE(gave_up);
  EXPECT_EQ(exits, 6);  // the first worker and five restarts

  // A healthy worker killed with SIGKILL is replaced.
  crew::loop again;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}, .restart = {.enabled = true}}, again);
  std::vector<int> listened;
  p.on_listening([&](worker_process& w, int) {
    listened.push_back(w.pid());
    if (listened.size() == 1) w.kill(SIGKILL);
    else
      for (auto& [id, each] : p.workers()) each->disconnect();
  });
  p.fork();
  crew::test::run_within(again, 30s);
  ASSERT_EQ(listened.size(), 2u);
  EXPECT_NE(listened[0], listened[1]);
}

}  // namespace
