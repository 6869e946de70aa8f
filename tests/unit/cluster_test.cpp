#include "crew/cluster.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <set>
#include <thread>

#include "../../src/detail/cluster_wire.hpp"
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

// Whether the process runs (a zombie has exited).
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_text, name, state;
  return stat >> pid_text >> name >> state && state != "Z";
}

// Waits (at most `limit`, scaled) until `done()` holds; gives whether it did.
template <class Condition>
bool eventually(Condition done, std::chrono::milliseconds limit = 10s) {
  for (auto end = std::chrono::steady_clock::now() + crew::test::scaled(limit); !done();) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
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
// each. Gives the pids that answered and the pids of the workers. Round robin
// and reuseport spread one burst over both (turn by turn; by the kernel's hash
// of 32 source ports). On a shared socket the kernel wakes the workers and the
// first to run accepts: a worker yields after each accept, but on a loaded
// machine one may still take a whole burst, so up to ten bursts are sent there.
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
      std::set<std::string> seen;
      for (int burst = 0; burst < (kind == policy::shared ? 10 : 1) && seen.size() < 2; ++burst) {
        std::vector<std::unique_ptr<crew::test::http_client>> connections;
        for (int i = 0; i < 32; ++i) {
          connections.push_back(std::make_unique<crew::test::http_client>(bound));
          connections.back()->connect();
        }
        for (auto& c : connections) seen.insert(c->get().body);
      }
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

TEST(cluster, shared_sockets_spread_bursts_over_every_worker) {
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
  // A worker that exits at once: a crash loop.
  bool gave_up = false;
  int exits = 0;
  {
    primary p({.exec = "false",
               .args = {},
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

// A worker whose program cannot be started (ENOENT) exits as any other
// worker does: the exit event comes, and a shutdown completes.
TEST(cluster, a_worker_that_cannot_be_started_exits_and_shutdown_completes) {
  crew::loop loop;
  primary p({.exec = "/nonexistent/crew-worker"}, loop);
  std::vector<int> exits;
  bool shut_down = false;
  p.on_exit([&](worker_process&, crew::exit_status s) {
    exits.push_back(s.code);
    p.shutdown([&] { shut_down = true; });
  });
  p.fork();
  crew::test::run_within(loop, 30s);
  EXPECT_EQ(exits, (std::vector<int>{crew::uv_error(UV_ENOENT).value()}));
  EXPECT_TRUE(shut_down);
  EXPECT_TRUE(p.workers().empty());
}

// A reload whose replacement dies before listening (a broken build on disk)
// fails with ESRCH; the replacement is not restarted, and the old worker
// keeps serving alone.
TEST(cluster, a_replacement_that_never_listens_fails_the_reload_and_the_old_worker_serves_on) {
  crew::loop loop;
  std::string marker = testing::TempDir() + "/crew-cluster-once-" + std::to_string(getpid());
  std::remove(marker.c_str());
  primary p({.exec = CREW_FIXTURE,
             .args = {"cluster-http-once", marker},
             .restart = {.enabled = true, .first_delay = 1ms, .max_delay = 4ms, .max_restarts = 3}},
            loop);
  std::error_code reload_error;
  std::vector<int> exit_codes;
  bool crash_loop = false;
  std::string answer;
  int old_pid = 0;
  std::thread client_thread;
  p.on_listening([&](worker_process& w, const crew::cluster::address& at) {
    old_pid = w.pid();
    p.reload([&, port = at.port](std::error_code ec) {
      reload_error = ec;
      // Let the restart policy act if it would, then ask the old worker.
      auto later = std::make_shared<crew::timer>(loop);
      later->start(50ms, {}, [&, port, later] {
        client_thread = std::thread([&, port] {
          answer = client(port).get();
          loop.post([&] { p.shutdown(); });
        });
      });
    });
  });
  p.on_exit([&](worker_process&, crew::exit_status s) { exit_codes.push_back(s.code); });
  p.on_crash_loop([&] { crash_loop = true; });
  p.fork();
  crew::test::run_within(loop, 30s);
  if (client_thread.joinable()) client_thread.join();
  std::remove(marker.c_str());
  EXPECT_EQ(reload_error, std::errc::no_such_process);
  EXPECT_EQ(answer, std::to_string(old_pid));
  EXPECT_FALSE(crash_loop);
  EXPECT_EQ(exit_codes, (std::vector<int>{4, 0}));  // the replacement, then the old worker at shutdown
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
  EXPECT_TRUE(eventually([&] { return !alive(workers[0]) && !alive(workers[1]); }));
}

// A port another process holds: the worker's listen fails with EADDRINUSE
// (the fixture then exits with 3), the primary hears it as what it is, and
// the worker is not restarted, though restarts are on.
TEST(cluster, a_port_in_use_reaches_the_primary_as_eaddrinuse_and_is_not_restarted) {
  crew::test::held_port holder;
  ASSERT_NE(holder.port(), 0);
  for (policy kind : {policy::round_robin, policy::shared, policy::reuseport}) {
    crew::loop loop;
    primary p({.exec = CREW_FIXTURE,
               .args = {"cluster-http", std::to_string(holder.port())},
               .scheduling = kind,
               .restart = {.enabled = true, .first_delay = 1ms}},
              loop);
    std::vector<std::string> events;
    p.on_listen_error([&](worker_process& w, const crew::cluster::address& at, std::error_code ec) {
      events.push_back("listen_error " + std::to_string(w.id()) + " " + at.host + ":" + std::to_string(at.port) + " " +
                       crew::error_name(ec));
    });
    p.on_exit([&](worker_process& w, crew::exit_status s) {
      events.push_back("exit " + std::to_string(w.id()) + " " + std::to_string(s.code));
    });
    p.fork();
    crew::test::run_within(loop, 30s);
    std::string at = "127.0.0.1:" + std::to_string(holder.port());
    EXPECT_EQ(events, (std::vector<std::string>{"listen_error 1 " + at + " EADDRINUSE", "exit 1 3"}))
        << crew::cluster::policy_name(kind);
  }
}

// Node's cluster.settings.args: the primary's own arguments (process.argv.slice(2)).
TEST(cluster, settings_args_default_to_the_primarys_own_arguments) {
  crew::spawn_sync_result r = crew::spawn_sync(CREW_FIXTURE, {"settings-args", "two words", "", "--port", "0"});
  EXPECT_EQ(r.out, "settings-args\ntwo words\n\n--port\n0\n");
  EXPECT_TRUE(r.ok()) << r.err;
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


std::string name_of(const testing::TestParamInfo<policy>& param) {
  return std::string(crew::cluster::policy_name(param.param));
}

class every_policy : public testing::TestWithParam<policy> {};

// Connects to [::1]:port; -1 on failure.
int connect_6(int port) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_port = htons(static_cast<uint16_t>(port));
  address.sin6_addr = in6addr_loopback;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return fd;
  close(fd);
  return -1;
}

bool ipv6_loopback() {
  crew::test::held_port v4;  // any port free on IPv4 is likely free on IPv6 too
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 address{};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  bool ok = fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

// One connection to the cluster-echo fixture: its greeting (the worker's pid)
// and the echo of "hello\n".
struct echo_answer {
  std::string pid;
  std::string echo;
};

// Eight connections opened at once (on a shared socket, the workers that wake
// share a burst, where one of them may take every lone connection), then each
// greeted and echoed.
std::vector<echo_answer> echo_burst(int port, bool v6) {
  std::vector<crew::test::http_connection> burst;
  for (int i = 0; i < 8; ++i) burst.emplace_back(v6 ? connect_6(port) : crew::test::connect_to(port));
  std::vector<echo_answer> answers;
  for (auto& c : burst) {
    std::string greeting = c.is_open() ? c.read_until("\n") : "";
    if (greeting.empty() || !c.send("hello\n")) {
      answers.emplace_back();
      continue;
    }
    answers.push_back({greeting.substr(0, greeting.size() - 1), c.read_until("hello\n")});
  }
  return answers;
}

// Any tcp::server is shared through the primary, in every policy and on IPv4
// and IPv6; the cluster follows a server moved to another object once it
// listens; the workers' figures count the connections their server served.
TEST_P(every_policy, a_plain_tcp_server_that_moves_is_shared_and_counts_its_connections) {
  for (std::string host : {"127.0.0.1", "::1"}) {
    if (host == "::1" && !ipv6_loopback()) continue;
    SCOPED_TRACE(host);
    crew::loop loop;
    primary p({.exec = CREW_FIXTURE, .args = {"cluster-echo", host}, .scheduling = GetParam()}, loop);
    std::set<std::string> pids, greeted;
    int connections = 0, listening = 0;
    bool echoed = true;
    std::uint64_t counted = 0;
    std::thread client;
    crew::timer poll(loop);
    p.on_listening([&](worker_process& w, const crew::cluster::address& at) {
      pids.insert(std::to_string(w.pid()));
      EXPECT_EQ(at.host, host);
      EXPECT_EQ(at.family, host == "::1" ? 6 : 4);
      if (++listening < 2) return;
      client = std::thread([&, port = at.port] {
        for (int i = 0; i < 25 && greeted.size() < 2; ++i) {
          for (const echo_answer& a : echo_burst(port, host == "::1")) {
            greeted.insert(a.pid);
            echoed = echoed && a.echo == "hello\n";
            ++connections;
          }
        }
        loop.post([&] {
          // The workers report each second: look until both counts are in.
          poll.start(50ms, 50ms, [&] {
            counted = 0;
            for (const auto& f : p.figures()) counted += f.requests_served;
            if (counted < static_cast<std::uint64_t>(connections)) return;
            poll.stop();
            p.shutdown();
          });
        });
      });
    });
    crew::exit_status last;
    p.on_exit([&](worker_process&, crew::exit_status s) { last = s; });
    p.fork();
    p.fork();
    crew::test::run_within(loop, 60s);
    if (client.joinable()) client.join();
    EXPECT_EQ(greeted, pids);
    EXPECT_TRUE(echoed);
    EXPECT_EQ(counted, static_cast<std::uint64_t>(connections));
    EXPECT_EQ(last, (crew::exit_status{0, 0}));
  }
}

// SIGTERM's shutdown while connections wait in the port's queue (the
// primary's loop busy meanwhile): each one is handed out and answered before
// the workers disconnect, none reset.
TEST_P(every_policy, shutdown_answers_the_connections_waiting_in_the_ports_queue) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}, .scheduling = GetParam()}, loop);
  static constexpr int count = 10;
  std::vector<std::string> answers(count);
  std::thread reader;
  bool finished = false;
  int listening = 0;
  std::set<std::string> pids;
  p.on_listening([&](worker_process& w, const crew::cluster::address& at) {
    pids.insert(std::to_string(w.pid()));
    if (++listening < 2) return;
    // All in one loop turn: the connections and their requests reach the
    // kernel's queue while the primary accepts none, then the shutdown.
    auto connections = std::make_shared<std::vector<crew::test::http_connection>>();
    for (int i = 0; i < count; ++i) {
      connections->push_back(crew::test::http_connection::to(at.port));
      EXPECT_TRUE(connections->back().send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
    p.shutdown([&] { finished = true; });
    reader = std::thread([&answers, connections] {
      for (int i = 0; i < count; ++i) answers[i] = (*connections)[i].answer().body;
    });
  });
  std::vector<crew::exit_status> exits;
  p.on_exit([&](worker_process&, crew::exit_status s) { exits.push_back(s); });
  p.fork();
  p.fork();
  crew::test::run_within(loop, 60s);
  if (reader.joinable()) reader.join();
  EXPECT_TRUE(finished);
  for (const auto& a : answers) EXPECT_TRUE(pids.count(a)) << "answered: '" << a << "'";
  EXPECT_EQ(exits, std::vector<crew::exit_status>(2, crew::exit_status{0, 0}));
}

INSTANTIATE_TEST_SUITE_P(cluster, every_policy,
                         testing::Values(policy::round_robin, policy::shared, policy::reuseport), name_of);

// Two workers, the first stopped (SIGSTOP: it reads nothing from its channel).
// `count` requests at once, each on its own connection; once `answered_first`
// of them are answered, the stopped worker is killed. Gives each request's
// answer (a worker's pid) and the running worker's pid.
struct with_a_stopped_worker {
  std::vector<std::string> answers;
  std::string running;
};

with_a_stopped_worker requests_with_a_stopped_worker(int count, int answered_first) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}}, loop);
  std::vector<std::string> answers(count);
  std::vector<pid_t> pids;
  std::thread clients;
  p.on_listening([&](worker_process& w, const crew::cluster::address& at) {
    pids.push_back(w.pid());
    if (pids.size() < 2) return;
    pid_t stopped = pids[0];
    EXPECT_EQ(kill(stopped, SIGSTOP), 0);
    clients = std::thread([&, port = at.port, stopped] {
      std::atomic<int> answered{0};
      std::vector<std::thread> each;
      for (int i = 0; i < count; ++i)
        each.emplace_back([&, i] {
          answers[i] = get(port);
          ++answered;
        });
      EXPECT_TRUE(eventually([&] { return answered >= answered_first; })) << answered;
      kill(stopped, SIGKILL);
      for (auto& t : each) t.join();
      loop.post([&] { p.shutdown(); });
    });
  });
  p.fork();
  p.fork();
  crew::test::run_within(loop, 60s);
  if (clients.joinable()) clients.join();
  EXPECT_EQ(pids.size(), 2u);
  return {answers, pids.size() == 2 ? std::to_string(pids[1]) : ""};
}

// Connections handed to a worker that stops reading its channel wait there,
// unanswered (turn by turn, half of them); once it is killed, each of them
// goes to the other worker, which answers them all.
TEST(cluster, a_worker_killed_with_hand_offs_queued_leaves_each_connection_to_another) {
  with_a_stopped_worker r = requests_with_a_stopped_worker(10, 5);
  for (const auto& a : r.answers) EXPECT_EQ(a, r.running);
}

// A worker that stops answering holds at most 64 connections (the primary's
// limit): of 200 at once, the running worker answers every other one until the
// stopped one holds its fill, then all the rest (200 - 64) before the stopped
// one is killed; then what it held goes to the running one too.
TEST(cluster, a_hung_worker_holds_only_its_fill_of_connections) {
  with_a_stopped_worker r = requests_with_a_stopped_worker(200, 200 - 64);
  for (const auto& a : r.answers) EXPECT_EQ(a, r.running);
}

// The primary accepts a connection for a worker that died before the primary
// read the end of its channel: the hand-off fails on a later turn and the
// connection goes to the other worker. (This was a heap-use-after-free: the
// failed send ran the disconnect inside the accept loop, which freed its
// listener.)
TEST(cluster, a_connection_accepted_for_a_worker_that_just_died_goes_to_another) {
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-http", "0"}}, loop);
  std::string first, second, answer;
  std::thread client;
  int listening = 0;
  p.on_listening([&](worker_process&, const crew::cluster::address& at) {
    if (++listening < 2) return;
    client = std::thread([&, port = at.port] {
      first = get(port);  // turn by turn: the next connection goes to `first`'s worker again
      second = get(port);
      std::promise<void> busy, connected;
      loop.post([&] {
        busy.set_value();
        connected.get_future().wait();
        pid_t doomed = std::stoi(first);
        kill(doomed, SIGKILL);
        EXPECT_TRUE(eventually([&] { return !alive(doomed); }));
      });
      busy.get_future().wait();  // the primary's loop is held in the post above
      crew::test::http_connection c = crew::test::http_connection::to(port);
      EXPECT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      connected.set_value();
      answer = c.answer().body;
      loop.post([&] { p.shutdown(); });
    });
  });
  p.fork();
  p.fork();
  crew::test::run_within(loop, 60s);
  if (client.joinable()) client.join();
  EXPECT_NE(first, second);
  EXPECT_EQ(answer, second);
}

// A worker whose descriptor table is full refuses each connection handed to
// it (NACK, past Node's retries): the primary gives it to the other worker, or
// closes it when there is none; once the worker has descriptors again, it
// serves again.
TEST(cluster, a_worker_at_its_descriptor_limit_passes_its_connections_on) {
  for (int workers : {1, 2}) {
    SCOPED_TRACE(workers);
    crew::loop loop;
    primary p({.exec = CREW_FIXTURE, .args = {"cluster-fd-limit"}}, loop);
    std::vector<std::string> while_full, after;
    std::set<std::string> pids;
    std::string full_pid;
    std::thread client;
    int port = 0;
    p.on_listening([&](worker_process& w, const crew::cluster::address& at) {
      pids.insert(std::to_string(w.pid()));
      port = at.port;
      if (static_cast<int>(pids.size()) < workers) return;
      worker_process& first = *p.workers().at(1);
      full_pid = std::to_string(first.pid());
      first.send(crew::message::value_type{{"hoard", true}});
    });
    p.on_message([&](worker_process& w, crew::message m) {
      if (m.value().contains("hoarded")) {
        EXPECT_GT(m.value()["hoarded"].get<int>(), 0);
        client = std::thread([&, id = w.id()] {
          for (int i = 0; i < 4; ++i) while_full.push_back(get(port));
          loop.post([&, id] { p.workers().at(id)->send(crew::message::value_type{{"release", true}}); });
        });
      } else if (m.value().contains("released")) {
        client.join();
        client = std::thread([&] {
          for (int i = 0; i < 4; ++i) after.push_back(get(port));
          loop.post([&] { p.shutdown(); });
        });
      }
    });
    for (int i = 0; i < workers; ++i) p.fork();
    crew::test::run_within(loop, 60s);
    if (client.joinable()) client.join();
    ASSERT_EQ(while_full.size(), 4u);
    ASSERT_EQ(after.size(), 4u);
    std::set<std::string> served_after(after.begin(), after.end());
    if (workers == 1) {
      for (const auto& a : while_full) EXPECT_EQ(a, "");  // closed: no worker could take it
      EXPECT_EQ(served_after, std::set<std::string>{full_pid});
    } else {
      std::set<std::string> others = pids;
      others.erase(full_pid);
      for (const auto& a : while_full) EXPECT_EQ(a, *others.begin());
      EXPECT_EQ(served_after, pids);
    }
  }
}

// Destroying the primary in each state: no event of it runs afterwards, the
// completions it took still run once, and its workers are terminated and reaped.
class primary_destroyed : public testing::TestWithParam<const char*> {};

TEST_P(primary_destroyed, runs_no_event_afterwards_and_its_workers_are_reaped) {
  std::string state = GetParam();
  crew::loop loop;
  std::optional<primary> p(std::in_place,
                           crew::cluster::settings{.exec = CREW_FIXTURE,
                                                   .args = {"cluster-http", "0"},
                                                   .process = {.kill_timeout = 1s}},
                           loop);
  bool destroyed = false;
  int late = 0, shutdown_done = 0, disconnect_done = 0;
  std::vector<std::error_code> reloaded;
  pid_t worker = 0;
  auto destroy = [&] {
    destroyed = true;
    p.reset();
  };
  // Each event: counted if it comes after the destruction; true if this is
  // the state's moment to destroy the primary.
  auto event = [&](const std::string& name) {
    late += destroyed;
    return state == "inside-" + name;
  };
  p->on_fork([&](worker_process&) {
    if (event("on_fork")) destroy();
  });
  p->on_online([&](worker_process&) {
    if (event("on_online")) destroy();
  });
  p->on_listening([&](worker_process& w, const crew::cluster::address&) {
    if (event("on_listening")) return destroy();
    if (state == "inside-on_exit") {
      EXPECT_FALSE(w.kill(SIGKILL));
    }
    if (state == "during-shutdown") p->shutdown([&] { ++shutdown_done; });
    if (state == "during-reload") p->reload([&](std::error_code ec) { reloaded.push_back(ec); });
    if (state == "during-disconnect") p->disconnect([&] { ++disconnect_done; });
    if (state.starts_with("during-")) destroy();
  });
  p->on_message([&](worker_process&, crew::message) { event("on_message"); });
  p->on_disconnect([&](worker_process&) { event("on_disconnect"); });
  p->on_exit([&](worker_process&, crew::exit_status) {
    if (event("on_exit")) destroy();
  });
  if (state == "before-fork") destroy();
  if (p) worker = p->fork().pid();
  if (state == "after-fork") destroy();
  // A little while for anything that would still run.
  crew::timer grace(loop);
  std::function<void()> wait_for_destruction = [&] {
    grace.start(destroyed ? 300ms : 10ms, {}, [&] {
      if (!destroyed) wait_for_destruction();
    });
  };
  wait_for_destruction();
  crew::test::run_within(loop, 30s);
  EXPECT_TRUE(destroyed);
  EXPECT_EQ(late, 0);
  EXPECT_EQ(shutdown_done, state == "during-shutdown" ? 1 : 0);
  EXPECT_EQ(disconnect_done, state == "during-disconnect" ? 1 : 0);
  std::vector<std::error_code> cancelled{crew::uv_error(UV_ECANCELED)};
  EXPECT_EQ(reloaded, state == "during-reload" ? cancelled : std::vector<std::error_code>{});
  if (worker != 0) {
    EXPECT_TRUE(eventually([&] { return kill(worker, 0) != 0 && errno == ESRCH; })) << "not reaped";
  }
}

INSTANTIATE_TEST_SUITE_P(cluster, primary_destroyed,
                         testing::Values("before-fork", "after-fork", "inside-on_fork", "inside-on_online",
                                         "inside-on_listening", "inside-on_exit", "during-shutdown", "during-reload",
                                         "during-disconnect"),
                         [](const auto& param) {
                           std::string name = param.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

// A worker's side of the cluster and its channel belong to its loop: a worker
// that destroys its loop (or its server) in each state leaves nothing behind
// and runs no callback late (the fixture checks, and prints "STATE ok"; under
// AddressSanitizer a use after free would end it).
class worker_side_destroyed : public testing::TestWithParam<std::tuple<const char*, policy>> {};

TEST_P(worker_side_destroyed, leaves_nothing_behind) {
  auto [state, kind] = GetParam();
  crew::loop loop;
  primary p({.exec = CREW_FIXTURE, .args = {"cluster-lifetime", state}, .silent = true, .scheduling = kind}, loop);
  std::string out, err;
  crew::exit_status status{-1, 0};
  p.on_fork([&](worker_process& w) {
    w.out().on_data([&](std::string_view data) { out += data; });
    w.err().on_data([&](std::string_view data) { err += data; });
  });
  p.on_exit([&](worker_process&, crew::exit_status s) { status = s; });
  p.fork();
  crew::test::run_within(loop, 60s);
  EXPECT_EQ(out, std::string(state) + " ok\n") << err;
  EXPECT_EQ(status, (crew::exit_status{0, 0})) << err;
}

INSTANTIATE_TEST_SUITE_P(
    cluster, worker_side_destroyed,
    testing::Combine(testing::Values("made", "awaiting", "listening", "disconnecting", "server-gone-awaiting",
                                     "server-gone-listening"),
                     testing::Values(policy::round_robin, policy::shared, policy::reuseport)),
    [](const auto& param) {
      std::string name = std::string(std::get<0>(param.param)) + "_" +
                         std::string(crew::cluster::policy_name(std::get<1>(param.param)));
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

// A primary other than crew's may answer a queryServer without the port: a
// worker on a shared socket then tells the socket's own port, both to its
// listen callback and in its `listening` message, and serves on it.
TEST(cluster, a_shared_answer_without_the_port_gives_the_sockets_own) {
  using crew::cluster::wire::act;
  using crew::cluster::wire::read_control;
  crew::loop loop;
  int listening = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(bind(listening, reinterpret_cast<sockaddr*>(&address), length), 0);
  ASSERT_EQ(listen(listening, 64), 0);
  ASSERT_EQ(getsockname(listening, reinterpret_cast<sockaddr*>(&address), &length), 0);
  int port = ntohs(address.sin_port);
  crew::child_process worker =
      crew::fork(CREW_FIXTURE, {"cluster-http", "0"}, {.extra_env = {{"NODE_UNIQUE_ID", "1"}}}, loop);
  int told = -1;
  std::string answered;
  std::thread client;
  worker.channel().on_internal_message([&](crew::message m) {
    auto c = read_control(m.value());
    if (c && c->what == act::query_server) {
      crew::message answer(crew::message::value_type{{"cmd", "NODE_CLUSTER"}, {"ack", c->seq}, {"key", "k"},
                                                     {"policy", "shared"}});
      answer.fds().push_back(listening);
      worker.send(std::move(answer));
    } else if (c && c->what == act::listening) {
      told = c->port;
      client = std::thread([&] {
        std::string body = get(port);
        loop.post([&, body] {
          answered = body;
          EXPECT_FALSE(worker.kill(SIGKILL));
        });
      });
    }
  });
  worker.on_exit([&](crew::exit_status) { loop.stop(); });
  crew::test::run_within(loop, 60s);
  if (client.joinable()) client.join();
  ::close(listening);
  EXPECT_EQ(told, port);
  EXPECT_EQ(answered, std::to_string(worker.pid()));
}

// What a worker sends is read without trusting it: wrong types, out-of-range
// numbers and unknown acts read as nothing (or, for a query, as a port that
// gets EINVAL); what the writer writes reads back the same.
TEST(cluster, control_messages_are_read_without_trusting_the_sender) {
  using crew::cluster::wire::act;
  using crew::cluster::wire::control;
  using crew::cluster::wire::read_control;
  using crew::cluster::wire::write_control;
  auto read = [](const char* text) { return read_control(crew::message::value_type::parse(text)); };
  EXPECT_FALSE(read(R"({"cmd":"NODE_CLUSTER","act":7})"));
  EXPECT_FALSE(read(R"({"cmd":"NODE_CLUSTER","act":"no such act"})"));
  EXPECT_FALSE(read(R"({"cmd":"NODE_HANDLE","act":"online"})"));
  EXPECT_FALSE(read(R"(["cmd","NODE_CLUSTER"])"));
  EXPECT_FALSE(read(R"({"cmd":"NODE_CLUSTER","act":"queryServer","port":80,"seq":"y"})"));  // nothing to answer
  EXPECT_FALSE(read(R"({"cmd":"NODE_CLUSTER","act":"crew:figures","requests":-5})"));
  EXPECT_FALSE(read(R"({"cmd":"NODE_CLUSTER","ack":-1})"));
  EXPECT_FALSE(read(R"({"cmd":"NODE_CLUSTER","act":"newconn","seq":1e300,"key":"k"})"));
  auto query = read(R"({"cmd":"NODE_CLUSTER","act":"queryServer","port":99999999999,"seq":3,"address":"::1"})");
  ASSERT_TRUE(query);
  EXPECT_EQ(query->what, act::query_server);
  EXPECT_EQ(query->seq, 3);
  EXPECT_EQ(query->port, -1);  // answered with EINVAL
  EXPECT_EQ(query->address_type, 6);
  auto answer = read(R"({"cmd":"NODE_CLUSTER","ack":4,"accepted":"yes"})");
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->what, act::answer);
  EXPECT_FALSE(answer->accepted);  // only true is true
  for (const control& c :
       {control{.what = act::query_server, .seq = 1, .address = "127.0.0.1", .port = 0, .backlog = 64},
        control{.what = act::listening, .address = "::", .port = 8080, .address_type = 6},
        control{.what = act::answer, .ack = 9, .port = 8080, .key = "k", .scheduling = policy::shared},
        control{.what = act::answer, .ack = 2, .error = UV_EADDRINUSE}, control{.what = act::figures, .requests = 7},
        control{.what = act::newconn, .seq = 5, .key = "127.0.0.1:80:4"}, control{.what = act::disconnect}}) {
    crew::message text(write_control(c));
    auto back = crew::message::parse(text.to_string());
    ASSERT_TRUE(back);
    EXPECT_EQ(read_control(back->value()), c) << text.to_string();
  }
}

}  // namespace
