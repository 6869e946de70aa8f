// crew-server, run as a user runs it: its routes, SIGHUP, SIGTERM with
// requests in flight, hostile clients and a full descriptor table in every
// policy, a port in use, a bad command line.
#include <gtest/gtest.h>

#include <dirent.h>
#include <poll.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "../unit/http_client.hpp"
#include "run_program.hpp"

namespace {

using crew::message;
using namespace std::chrono_literals;

using crew::test::run_result;

// Runs crew-server; with_server(port, pid) runs once it serves.
template <class Fn>
run_result run_server(std::vector<std::string> args, Fn with_server) {
  return crew::test::run_program(CREW_SERVER, std::move(args), "on http://127\\.0\\.0\\.1:([0-9]+)/\n", with_server);
}

message::value_type json_of(const crew::test::http_answer& a) {
  return message::value_type::parse(a.body, nullptr, false);
}

TEST(crew_server, serves_every_route_and_exits_0_on_sigterm) {
  run_result r = run_server({"--port", "0", "--workers", "2"}, [](int port, pid_t server) {
    auto hello = crew::test::request(port, "GET", "/");
    EXPECT_EQ(hello.status, 200);
    EXPECT_EQ(json_of(hello)["message"], "Hello from worker");
    EXPECT_TRUE(json_of(hello)["pid"].is_number());
    EXPECT_TRUE(std::regex_match(json_of(hello)["timestamp"].get<std::string>(),
                                 std::regex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z")));

    auto heavy = json_of(crew::test::request(port, "GET", "/heavy"));
    EXPECT_GT(heavy["result"].get<double>(), 400000.0);  // the mean of a million draws in [0, 1) is 0.5
    EXPECT_LT(heavy["result"].get<double>(), 600000.0);
    EXPECT_TRUE(heavy["worker"].is_number());

    auto image = crew::test::request(port, "POST", "/process-image",
                                     R"({"imageData":[{"r":100,"g":100,"b":100},{"r":250,"g":10,"b":3}]})");
    EXPECT_EQ(image.body, R"({"success":true,"result":[{"r":120,"g":110.00000000000001,"b":90},{"r":255,"g":11,"b":2.7}]})");
    EXPECT_EQ(crew::test::request(port, "POST", "/process-image", "not json").status, 400);
    EXPECT_EQ(crew::test::request(port, "POST", "/process-image", R"({"imageData":[{"r":"red"}]})").status, 400);

    auto converted = crew::test::request(port, "POST", "/convert", "caf\xe9");  // ISO-8859-1 to UTF-8
    EXPECT_EQ(converted.status, 200);
    EXPECT_EQ(converted.body, "caf\xc3\xa9");
    auto failed = crew::test::request(port, "POST", "/convert?from=UTF-8&to=ASCII", "caf\xe9");
    EXPECT_EQ(failed.status, 500);
    EXPECT_EQ(json_of(failed)["error"], "Conversion failed");
    EXPECT_NE(json_of(failed)["details"].get<std::string>().find("iconv"), std::string::npos);
    EXPECT_EQ(crew::test::request(port, "POST", "/convert?from=$(reboot)", "x").status, 400);

    auto info = json_of(crew::test::request(port, "GET", "/system-info"));
    EXPECT_NE(info["processes"].get<std::string>().find("PID"), std::string::npos);

    auto metrics = crew::test::request(port, "GET", "/metrics");
    EXPECT_EQ(metrics.status, 200);
    EXPECT_NE(metrics.body.find("crew_workers 2\n"), std::string::npos) << metrics.body;
    EXPECT_NE(metrics.body.find("crew_worker_memory_bytes{worker=\"1\""), std::string::npos) << metrics.body;
    // The answering worker's pool, which ran /heavy or /process-image above (or is idle).
    EXPECT_TRUE(std::regex_search(metrics.body, std::regex("\ncrew_pool_queue_size\\{pid=\"[0-9]+\"\\} 0\n"))) << metrics.body;
    EXPECT_TRUE(std::regex_search(metrics.body, std::regex("\ncrew_pool_run_seconds_count\\{pid=\"[0-9]+\"\\} [0-9]+\n")));
    EXPECT_EQ(crew::test::request(port, "GET", "/nowhere").status, 404);
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

TEST(crew_server, metrics_with_the_primary_stopped_is_503_with_the_workers_own_figures) {
  // reuseport: the workers accept by themselves, so a stopped primary still lets a request in.
  run_result r = run_server({"--port", "0", "--workers", "1", "--policy", "reuseport"}, [](int port, pid_t server) {
    kill(server, SIGSTOP);
    auto metrics = crew::test::request(port, "GET", "/metrics");  // the primary's answer times out in 2 s
    kill(server, SIGCONT);
    EXPECT_EQ(metrics.status, 503);
    EXPECT_EQ(metrics.body.rfind("# the primary cannot answer now: ETIMEDOUT\n", 0), 0U) << metrics.body;
    EXPECT_TRUE(std::regex_search(metrics.body, std::regex("\ncrew_pool_threads\\{pid=\"[0-9]+\"\\} [0-9]+\n"))) << metrics.body;
    EXPECT_EQ(crew::test::request(port, "GET", "/metrics").status, 200);  // and once it goes on, 200 again
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

TEST(crew_server, sighup_replaces_every_worker) {
  run_result r = run_server({"--port", "0", "--workers", "2"}, [](int port, pid_t server) {
    auto pids = [port] {
      std::set<int> seen;
      for (int i = 0; i < 20; ++i) {
        auto a = crew::test::request(port, "GET", "/");
        if (a.status == 200) seen.insert(json_of(a)["pid"].get<int>());
      }
      return seen;
    };
    std::set<int> before = pids();
    EXPECT_EQ(before.size(), 2u);  // round robin: both workers answer
    kill(server, SIGHUP);
    std::set<int> after;
    for (int i = 0; i < 500; ++i) {
      after = pids();
      bool all_new = true;
      for (int pid : after) all_new = all_new && !before.count(pid);
      if (all_new && after.size() == 2) break;
      std::this_thread::sleep_for(20ms);
    }
    EXPECT_EQ(after.size(), 2u);
    for (int pid : after) EXPECT_FALSE(before.count(pid)) << pid;
    EXPECT_NE(crew::test::request(port, "GET", "/metrics").body.find("crew_worker_restarts{worker=\"3\""),
              std::string::npos);
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

// Whether the peer closes the connection (end of file) within 10 s.
bool closed_by_server(crew::test::http_connection& c) {
  pollfd p{c.fd(), POLLIN, 0};
  char byte;
  return poll(&p, 1, 10'000) == 1 && recv(c.fd(), &byte, 1, 0) == 0;
}

// The Date header of an answer.
std::string date_of(const crew::test::http_answer& a) {
  std::smatch m;
  return std::regex_search(a.head, m, std::regex("\r\nDate: ([^\r]*)")) ? m[1].str() : "";
}

class every_policy : public testing::TestWithParam<std::string> {};

// A slowloris (headers held back), an idle keep-alive connection and a body
// that never comes, through the front door in each policy: each is answered
// 408 or closed once its timeout passes, and the Date header moves on.
TEST_P(every_policy, holds_against_slow_and_idle_clients_and_keeps_its_date_current) {
  run_result r = run_server({"--port", "0", "--workers", "2", "--policy", GetParam(), "--headers-timeout-ms", "300",
                             "--request-timeout-ms", "600", "--keep-alive-timeout-ms", "300"},
                            [](int port, pid_t server) {
    auto slowloris = crew::test::http_connection::to(port);
    slowloris.send("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    pollfd p{slowloris.fd(), POLLIN, 0};
    for (int i = 0; i < 500 && poll(&p, 1, 0) == 0; ++i) {
      slowloris.send("z");
      std::this_thread::sleep_for(20ms);
    }
    std::string out = slowloris.read_to_end();
    EXPECT_EQ(out.rfind("HTTP/1.1 408 ", 0), 0u) << out;
    EXPECT_NE(out.find("Connection: close"), std::string::npos) << out;

    auto idle = crew::test::http_connection::to(port);
    EXPECT_TRUE(idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    crew::test::http_answer first = idle.answer();
    EXPECT_EQ(first.status, 200);
    EXPECT_TRUE(closed_by_server(idle)) << "an idle keep-alive connection stayed open";

    auto upload = crew::test::http_connection::to(port);
    upload.send("POST /process-image HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");  // the rest never comes
    out = upload.read_to_end();
    EXPECT_EQ(out.rfind("HTTP/1.1 408 ", 0), 0u) << out;

    std::string later;
    for (int i = 0; i < 300 && (later.empty() || later == date_of(first)); ++i) {
      std::this_thread::sleep_for(10ms);
      later = date_of(crew::test::request(port, "GET", "/"));
    }
    EXPECT_FALSE(date_of(first).empty());
    EXPECT_NE(later, date_of(first)) << "the Date header is frozen";
    kill(server, SIGTERM);
  });
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

// SIGTERM while 20 requests are in flight (on their way, queued, being
// computed): all 20 are answered, none is reset, and the server exits 0.
TEST_P(every_policy, sigterm_answers_every_request_in_flight_and_exits_0) {
  std::vector<crew::test::http_answer> answers;
  run_result r = run_server({"--port", "0", "--workers", "2", "--policy", GetParam()}, [&](int port, pid_t server) {
    std::vector<crew::test::http_connection> in_flight;
    for (int i = 0; i < 20; ++i) {
      in_flight.push_back(crew::test::http_connection::to(port));
      EXPECT_TRUE(in_flight.back().send("GET /heavy HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
    kill(server, SIGTERM);
    for (auto& c : in_flight) answers.push_back(c.answer());
  });
  ASSERT_EQ(answers.size(), 20u);
  for (const auto& a : answers) {
    EXPECT_EQ(a.status, 200);
    EXPECT_TRUE(json_of(a)["worker"].is_number()) << a.body;
  }
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

// SIGTERM during a rolling reload (the replacements' listens are cancelled):
// still a graceful shutdown, exit 0, nothing on stderr.
TEST_P(every_policy, sigterm_during_a_reload_exits_0_quietly) {
  for (auto delay : {0ms, 2ms, 5ms, 10ms}) {
    run_result r = run_server({"--port", "0", "--workers", "2", "--policy", GetParam()}, [&](int, pid_t server) {
      kill(server, SIGHUP);
      std::this_thread::sleep_for(delay);
      kill(server, SIGTERM);
    });
    EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << delay.count() << " ms: " << r.err;
    EXPECT_EQ(r.err, "") << delay.count() << " ms";
  }
}

INSTANTIATE_TEST_SUITE_P(crew_server, every_policy, testing::Values("round_robin", "shared", "reuseport"),
                         [](const auto& param) { return param.param; });

// The TCP sockets of process `pid` in state CLOSE-WAIT (the peer closed, the
// process has not).
int close_wait_sockets(pid_t pid) {
  std::set<std::string> inodes;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      char target[64] = {};
      std::string link = dir + "/" + e->d_name;
      if (readlink(link.c_str(), target, sizeof target - 1) > 0 && std::string_view(target).starts_with("socket:["))
        inodes.insert(std::string(target + 8, std::strlen(target) - 9));
    }
    closedir(d);
  }
  int count = 0;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
      count += state == "08" && inodes.count(inode);
    }
  }
  return count;
}

// Under `ulimit -n 128`, with one worker in the default policy, 400
// connections are opened, each with a request, and held: the worker takes
// what its descriptor table holds and refuses the rest, which the primary
// closes; every connection is answered or closed, none is left hanging. Then
// all are closed: afterwards the primary holds no socket in CLOSE-WAIT, and
// the server answers again.
TEST(crew_server, past_its_descriptor_limit_it_recovers) {
  int left = -1;
  std::size_t settled = 0, answered = 0;
  crew::test::http_answer again;
  run_result r = crew::test::run_program(
      "/bin/sh", {"-c", "ulimit -n 128 && exec \"$0\" \"$@\"", CREW_SERVER, "--port", "0", "--workers", "1"},
      "on http://127\\.0\\.0\\.1:([0-9]+)/\n", [&](int port, pid_t server) {
        std::vector<pollfd> open;
        for (int i = 0; i < 400; ++i) {
          int fd = crew::test::connect_to(port);
          const char request[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
          if (fd >= 0 && send(fd, request, sizeof request - 1, MSG_NOSIGNAL) > 0) open.push_back({fd, POLLIN, 0});
        }
        std::vector<pollfd> waiting = open;
        auto deadline = std::chrono::steady_clock::now() + crew::test::scaled(30s);
        while (!waiting.empty() && std::chrono::steady_clock::now() < deadline) {
          poll(waiting.data(), waiting.size(), 100);
          std::erase_if(waiting, [&](const pollfd& p) {
            if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) return false;
            char head[16] = {};
            ssize_t n = recv(p.fd, head, sizeof head - 1, 0);
            answered += n > 0 && std::string_view(head).starts_with("HTTP/1.1 200");
            return true;
          });
        }
        settled = open.size() - waiting.size();
        for (const pollfd& p : open) close(p.fd);
        // Served again: with one worker, hand-offs go out in turn, so every
        // connection before this one has been settled by then.
        for (int i = 0; i < 200 && (again = crew::test::request(port, "GET", "/")).status != 200; ++i)
          std::this_thread::sleep_for(50ms);
        for (int i = 0; i < 1000 && (left = close_wait_sockets(server)) != 0; ++i) std::this_thread::sleep_for(10ms);
        kill(server, SIGTERM);
      });
  EXPECT_EQ(settled, 400u) << "connections neither answered nor closed";
  EXPECT_GT(answered, 0u);
  EXPECT_LT(answered, 128u);  // the worker's table cannot hold them all: the others were refused
  EXPECT_EQ(left, 0) << "sockets left in CLOSE-WAIT in the primary";
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
}

TEST(crew_server, a_port_in_use_is_a_clear_error_and_exit_code_1) {
  crew::test::held_port holder;
  ASSERT_NE(holder.port(), 0);
  std::string port = std::to_string(holder.port());
  for (const char* policy : {"round_robin", "shared", "reuseport"}) {
    run_result r = run_server({"--port", port, "--workers", "2", "--policy", policy}, [](int, pid_t) {});
    EXPECT_EQ(r.status.code, 1) << policy;
    // One line, whichever worker fails first (the others' cancelled listens are not errors).
    EXPECT_EQ(r.err, "cluster: cannot listen on 127.0.0.1:" + port + ": EADDRINUSE (address already in use)\n")
        << policy;
  }
}

TEST(crew_server, a_bad_command_line_is_exit_code_2) {
  run_result r = run_server({"--workers", "none"}, [](int, pid_t) {});
  EXPECT_EQ(r.status.code, 2);
  EXPECT_NE(r.err.find("usage: crew-server"), std::string::npos);
  EXPECT_EQ(run_server({"--policy", "fastest"}, [](int, pid_t) {}).status.code, 2);
  EXPECT_EQ(run_server({"--headers-timeout-ms", "-1"}, [](int, pid_t) {}).status.code, 2);
  run_result help = run_server({"--help"}, [](int, pid_t) {});
  EXPECT_EQ(help.status.code, 0);
  EXPECT_NE(help.out.find("--keep-alive-timeout-ms"), std::string::npos) << help.out;
}

}  // namespace
