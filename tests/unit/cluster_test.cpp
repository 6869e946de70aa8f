#include "crew/cluster.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <set>
#include <thread>

#include "http_client.hpp"
#include "test_support.hpp"

namespace {

using crew::cluster::policy;
using crew::cluster::primary;
using crew::cluster::worker_process;
using namespace std::chrono_literals;

// One GET on a connection of its own: the body (a worker's pid), or "" on failure.
std::string get(int port, const std::string& path = "/") {
  crew::test::http_answer a = crew::test::request(port, "GET", path);
  return a.status == 200 ? a.body : "";
}

// A keep-alive client (as wrk): the body, or "" on failure.
class client {
 public:
  explicit client(int port) : http_(port) {}
  std::string get() {
    crew::test::http_answer a = http_.get();
    return a.status == 200 ? a.body : "";
  }

 private:
  crew::test::http_client http_;
};

// Starts two workers of `kind` on port 0; once both listen, opens 32
// connections at once (as a load generator does), then sends a request on
// each. Gives the pids that answered and the pids of the workers.
void serve_with(policy kind, std::set<std::string>& answered, std::set<std::string>& workers) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}, .scheduling = kind}, loop);
  int listening = 0, port = 0;
  std::thread client;
  p.on_listening([&](worker_process& w, const crew::cluster::address& at) {
    int bound = at.port;
    workers.insert(std::to_string(w.pid()));
    if (port != 0) {
      EXPECT_EQ(bound, port);  // port 0: every worker gets the same port
    }
    port = bound;
    if (++listening < 2) return;
    client = std::thread([&, bound] {
      std::vector<std::unique_ptr<crew::test::http_client>> connections;
      for (int i = 0; i < 32; ++i) {
        connections.push_back(std::make_unique<crew::test::http_client>(bound));
        connections.back()->connect();
      }
      std::set<std::string> seen;
      for (auto& c : connections) seen.insert(c->get().body);
      loop.post([&, seen] {
        answered = seen;
        for (auto& [id, each] : p.workers()) EXPECT_FALSE(each->kill(SIGKILL));
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

// A burst of connections on a shared socket is spread over the workers (the
// first to wake does not take them all).
TEST(cluster, shared_sockets_spread_a_burst_over_every_worker) {
  std::set<std::string> answered, workers;
  serve_with(policy::shared, answered, workers);
  EXPECT_EQ(workers.size(), 2u);
  EXPECT_EQ(answered, workers);
}

TEST(cluster, reuseport_workers_serve_on_one_port) {
  std::set<std::string> answered, workers;
  serve_with(policy::reuseport, answered, workers);
  EXPECT_EQ(workers.size(), 2u);
  EXPECT_EQ(answered, workers);  // 32 source ports: the kernel's hash picks both
}

TEST(cluster, a_worker_reports_every_event_and_finishes_its_request_on_sigterm) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}}, loop);
  std::vector<std::string> events;
  std::string answer;
  std::thread client;
  p.on_fork([&](worker_process&) { events.push_back("fork"); });
  p.on_online([&](worker_process&) { events.push_back("online"); });
  p.on_listening([&](worker_process&, const crew::cluster::address& at) {
    int port = at.port;
    events.push_back("listening " + at.host);
    client = std::thread([&answer, port] { answer = get(port, "/slow"); });
  });
  p.on_message([&](worker_process& w, crew::message m) {
    events.push_back("message");
    EXPECT_EQ(m.value()["slow"], std::to_string(w.pid()));
    EXPECT_FALSE(w.kill(SIGTERM));  // the worker disconnects itself, after answering /slow
  });
  p.on_disconnect([&](worker_process&) { events.push_back("disconnect"); });
  p.on_exit([&](worker_process& w, crew::exit_status s) {
    events.push_back("exit " + std::to_string(s.code) + " " + std::to_string(s.signal));
    EXPECT_TRUE(w.is_dead());
    EXPECT_TRUE(w.exited_after_disconnect());
  });
  p.fork();
  crew::test::run_within(loop, 30s);
  if (client.joinable()) client.join();
  EXPECT_EQ(events, (std::vector<std::string>{"fork", "online", "listening 127.0.0.1", "message", "disconnect", "exit 0 0"}));
  EXPECT_FALSE(answer.empty());
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
  p.on_listening([&](worker_process& w, const crew::cluster::address&) {
    listened.push_back(w.pid());
    if (listened.size() == 1) EXPECT_FALSE(w.kill(SIGKILL));
    else
      for (auto& [id, each] : p.workers()) each->disconnect();
  });
  p.fork();
  crew::test::run_within(again, 30s);
  ASSERT_EQ(listened.size(), 2u);
  EXPECT_NE(listened[0], listened[1]);
}

// Two clients (keep-alive, as wrk) run while the primary reloads both workers:
// no request fails, and once the reload is done only new workers answer.
TEST(cluster, a_rolling_reload_under_load_fails_no_request) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}}, loop);
  std::set<std::string> before;
  std::atomic<bool> reloaded{false};
  std::atomic<int> failures{0}, served{0};
  std::mutex lock;
  std::set<std::string> after;
  std::vector<std::thread> clients;
  std::vector<std::string> exits;
  p.on_listening([&](worker_process& w, const crew::cluster::address& at) {
    int port = at.port;
    if (before.size() == 2) return;  // a replacement
    before.insert(std::to_string(w.pid()));
    if (before.size() < 2) return;
    for (int i = 0; i < 2; ++i)
      clients.emplace_back([&, port] {
        client c(port);
        int after_reload = 0;
        for (int n = 0; n < 200'000 && after_reload < 300; ++n) {
          bool done = reloaded;
          std::string pid = c.get();
          if (pid.empty()) ++failures;
          if (++served == 300)
            loop.post([&] { p.reload([&](std::error_code ec) { EXPECT_FALSE(ec); reloaded = true; }); });
          if (!done) continue;
          ++after_reload;
          std::lock_guard guard(lock);
          after.insert(pid);
        }
      });
    std::thread([&] {
      for (auto& t : clients) t.join();
      loop.post([&] { p.shutdown(); });
    }).detach();
  });
  p.on_exit([&](worker_process& w, crew::exit_status s) {
    EXPECT_TRUE(w.exited_after_disconnect());
    exits.push_back(std::to_string(s.code) + " " + std::to_string(s.signal));
  });
  p.fork();
  p.fork();
  crew::test::run_within(loop, 60s);
  EXPECT_EQ(failures, 0);
  EXPECT_TRUE(reloaded);
  EXPECT_FALSE(after.empty());
  for (const auto& pid : after) EXPECT_FALSE(before.count(pid)) << "an old worker answered after the reload: " << pid;
  EXPECT_EQ(exits, std::vector<std::string>(4, "0 0"));  // two old workers, then two new ones at shutdown
}

// Requests in flight when the primary shuts down are answered; every worker
// exits with 0 and the loop ends by itself.
TEST(cluster, shutdown_answers_the_requests_in_flight) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}}, loop);
  constexpr int requests = 4;
  std::vector<std::string> answers(requests);
  std::vector<std::thread> clients;
  int listening = 0, started = 0;
  bool finished = false;
  p.on_listening([&](worker_process&, const crew::cluster::address& at) {
    int port = at.port;
    if (++listening < 2) return;
    for (int i = 0; i < requests; ++i) clients.emplace_back([&answers, port, i] { answers[i] = get(port, "/slow"); });
  });
  p.on_message([&](worker_process&, crew::message) {
    if (++started == requests) p.shutdown([&] { finished = true; });  // all four are being served
  });
  std::vector<crew::exit_status> exits;
  p.on_exit([&](worker_process&, crew::exit_status s) { exits.push_back(s); });
  p.fork();
  p.fork();
  crew::test::run_within(loop, 30s);
  for (auto& t : clients) t.join();
  EXPECT_TRUE(finished);
  for (const auto& a : answers) EXPECT_FALSE(a.empty());
  EXPECT_EQ(exits, std::vector<crew::exit_status>(2, crew::exit_status{0, 0}));
}

// Under load, a worker killed with SIGKILL is replaced while the other goes on
// serving: only the request the dead worker held can fail.
TEST(cluster, a_worker_killed_under_load_is_replaced_while_the_other_serves) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}, .restart = {.enabled = true}}, loop);
  std::vector<std::string> pids;
  std::atomic<int> failures{0};
  std::atomic<bool> killed{false};
  std::mutex lock;
  std::set<std::string> answered_after_kill;
  std::thread load;
  p.on_listening([&](worker_process& w, const crew::cluster::address& at) {
    int port = at.port;
    {
      std::lock_guard guard(lock);  // the load thread reads pids too
      pids.push_back(std::to_string(w.pid()));
      if (pids.size() != 2) return;
    }
    load = std::thread([&, port] {
      for (int n = 0; n < 100'000; ++n) {
        std::string pid = get(port);
        if (n == 200) loop.post([&] {
            for (auto& [id, each] : p.workers())
              if (std::to_string(each->pid()) == pids[0]) { EXPECT_FALSE(each->kill(SIGKILL)); }
            killed = true;
          });
        if (!killed) continue;
        if (pid.empty()) ++failures;
        std::lock_guard guard(lock);
        answered_after_kill.insert(pid);
        if (pids.size() == 3 && answered_after_kill.count(pids[1]) && answered_after_kill.count(pids[2]))
          break;  // the survivor and the replacement both answered
      }
      loop.post([&] { p.shutdown(); });
    });
  });
  p.fork();
  p.fork();
  crew::test::run_within(loop, 60s);
  load.join();
  ASSERT_EQ(pids.size(), 3u);  // two, then the replacement
  std::lock_guard guard(lock);
  EXPECT_TRUE(answered_after_kill.count(pids[1])) << "the survivor stopped serving";
  EXPECT_TRUE(answered_after_kill.count(pids[2])) << "the replacement never served";
  EXPECT_LE(failures, 1);
}

// A primary killed with SIGKILL takes its workers with it.
TEST(cluster, workers_exit_when_their_primary_is_killed) {
  crew::loop loop;
  crew::child_process primary_process = crew::spawn(CREW_FIXTURE, {"cluster-primary", "2"}, {}, loop);
  std::string out;
  std::vector<pid_t> workers;
  primary_process.out().on_data([&](std::string_view data) {
    out += data;  // the workers' own lines come through this pipe too
    std::size_t ready = out.find("ready ");
    std::size_t end = ready == std::string::npos ? ready : out.find('\n', ready);
    if (end == std::string::npos || !workers.empty()) return;
    std::istringstream words(out.substr(ready + 6, end - ready - 6));
    for (pid_t pid; words >> pid;) workers.push_back(pid);
    EXPECT_FALSE(primary_process.kill(SIGKILL));
  });
  crew::test::run_within(loop, 30s);
  ASSERT_EQ(workers.size(), 2u);
  auto alive = [](pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string pid_text, name, state;
    return stat >> pid_text >> name >> state && state != "Z";  // a zombie has exited
  };
  for (int i = 0; i < 1000 && (alive(workers[0]) || alive(workers[1])); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(alive(workers[0]));
  EXPECT_FALSE(alive(workers[1]));
}

// A port another process holds: the worker's listen fails with EADDRINUSE
// (the fixture then exits with 3).
TEST(cluster, a_port_in_use_fails_the_workers_listen) {
  crew::test::held_port holder;
  ASSERT_NE(holder.port(), 0);
  for (policy kind : {policy::round_robin, policy::shared, policy::reuseport}) {
    crew::loop loop;
    primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", std::to_string(holder.port())}, .scheduling = kind}, loop);
    crew::exit_status status;
    p.on_exit([&](worker_process&, crew::exit_status s) { status = s; });
    p.fork();
    crew::test::run_within(loop, 30s);
    EXPECT_EQ(status.code, 3);
  }
}

TEST(cluster, the_primary_knows_each_workers_figures) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}}, loop);
  std::thread load;
  crew::timer poll(loop);
  crew::cluster::worker_figures seen;
  p.on_listening([&](worker_process&, const crew::cluster::address& at) {
    int port = at.port;
    load = std::thread([&, port] {
      for (int i = 0; i < 25; ++i) get(port);
      loop.post([&] {
        // The worker reports each second: look until its count arrives.
        poll.start(50ms, 50ms, [&] {
          seen = p.figures().at(0);
          if (seen.requests_served != 25) return;
          poll.stop();
          p.shutdown();
        });
      });
    });
  });
  p.fork();
  crew::test::run_within(loop, 30s);
  load.join();
  EXPECT_EQ(seen.requests_served, 25u);
  EXPECT_EQ(seen.id, 1);
  EXPECT_GT(seen.pid, 0);
  EXPECT_EQ(seen.restarts, 0);
  EXPECT_GT(seen.memory_bytes, 0u);
  EXPECT_GT(seen.uptime.count(), 0);
}

// A worker past the memory limit is replaced: the new one listens, then the
// old one is disconnected.
TEST(cluster, a_worker_past_the_memory_limit_is_replaced) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}, .restart = {.max_memory_bytes = 48 << 20}}, loop);
  std::vector<int> restarts;
  std::thread grow;
  p.on_listening([&](worker_process& w, const crew::cluster::address& at) {
    int port = at.port;
    restarts.push_back(w.figures().restarts);
    if (restarts.size() == 1) grow = std::thread([port] { get(port, "/grow"); });
  });
  std::vector<bool> expected;
  p.on_exit([&](worker_process& w, crew::exit_status) {
    expected.push_back(w.exited_after_disconnect());
    if (expected.size() == 1) p.shutdown();
  });
  p.fork();
  crew::test::run_within(loop, 60s);
  grow.join();
  EXPECT_EQ(restarts, (std::vector<int>{0, 1}));
  EXPECT_EQ(expected, (std::vector<bool>{true, true}));
}

// Control messages of the wrong shapes (strings for numbers, ports out of
// range, unknown acts) change nothing: the primary goes on, and the same
// worker then listens and serves.
TEST(cluster, malformed_control_messages_leave_the_primary_serving) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-garbage"}}, loop);
  std::string answer;
  std::thread client;
  int bound = 0;
  p.on_listening([&](worker_process& w, const crew::cluster::address& at) {
    int port = at.port;
    bound = port;
    client = std::thread([&, port, pid = w.pid()] {
      answer = get(port);
      EXPECT_EQ(answer, std::to_string(pid));
      loop.post([&] { p.shutdown(); });
    });
  });
  p.fork();
  crew::test::run_within(loop, 30s);
  if (client.joinable()) client.join();
  EXPECT_GT(bound, 0);
  EXPECT_FALSE(answer.empty());
  EXPECT_EQ(p.figures().size(), 0u);
}

// silent: the workers' output comes through pipes the primary's user reads.
TEST(cluster, a_silent_workers_output_is_read_through_its_pipes) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}, .silent = true}, loop);
  std::string out;
  pid_t pid = 0;
  p.on_fork([&](worker_process& w) {
    pid = w.pid();
    w.out().on_data([&](std::string_view data) { out += data; });
  });
  p.on_listening([&](worker_process&, const crew::cluster::address&) { p.shutdown(); });
  p.fork();
  crew::test::run_within(loop, 30s);
  EXPECT_EQ(out, "worker " + std::to_string(pid) + " listening\n");
}

TEST(cluster, policies_have_their_wire_names) {
  for (policy kind : {policy::round_robin, policy::shared, policy::reuseport})
    EXPECT_EQ(crew::cluster::policy_named(crew::cluster::policy_name(kind)), kind);
  EXPECT_EQ(crew::cluster::policy_name(policy::shared), "shared");
  EXPECT_FALSE(crew::cluster::policy_named("roundrobin"));
}

}  // namespace
