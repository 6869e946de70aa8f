// crew-server, run as a user runs it: its routes, SIGHUP, SIGTERM, a port in
// use, a bad command line.
#include <gtest/gtest.h>

#include <csignal>
#include <regex>
#include <set>
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
    EXPECT_EQ(crew::test::request(port, "GET", "/nowhere").status, 404);
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

TEST(crew_server, a_port_in_use_is_a_clear_error_and_exit_code_1) {
  crew::test::held_port holder;
  ASSERT_NE(holder.port(), 0);
  std::string port = std::to_string(holder.port());
  run_result r = run_server({"--port", port, "--workers", "2"}, [](int, pid_t) {});
  EXPECT_EQ(r.status.code, 1);
  EXPECT_NE(r.err.find("cannot listen on 127.0.0.1:" + port + ": EADDRINUSE"), std::string::npos) << r.err;
}

TEST(crew_server, a_bad_command_line_is_exit_code_2) {
  run_result r = run_server({"--workers", "none"}, [](int, pid_t) {});
  EXPECT_EQ(r.status.code, 2);
  EXPECT_NE(r.err.find("usage: crew-server"), std::string::npos);
  EXPECT_EQ(run_server({"--policy", "fastest"}, [](int, pid_t) {}).status.code, 2);
}

}  // namespace
