// The server examples, run as a user runs them: cluster-http and graceful-shutdown.
#include <gtest/gtest.h>

#include <csignal>
#include <set>
#include <string>
#include <thread>

#include "../unit/http_client.hpp"
#include "run_program.hpp"

namespace {

using namespace std::chrono_literals;

TEST(examples, graceful_shutdown_answers_the_request_in_flight_then_exits_0) {
  crew::test::http_answer slow;
  auto r = crew::test::run_program(CREW_BIN "/graceful-shutdown", {"--port", "0", "--delay-ms", "300"},
                                   "listening on port ([0-9]+)\n", [&](int port, pid_t server) {
                                     // The request is on its way (in the kernel) when SIGTERM arrives.
                                     auto c = crew::test::http_connection::to(port);
                                     c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
                                     kill(server, SIGTERM);
                                     slow = c.answer();
                                   });
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(slow.body, "slow hello\n");
  EXPECT_NE(slow.head.find("Connection: close"), std::string::npos);
  EXPECT_NE(r.out.find("SIGTERM received: closing the server\nserver closed; every request answered\n"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.status, (crew::exit_status{0, 0}));
}

TEST(examples, cluster_http_answers_from_every_worker_reloads_and_shuts_down) {
  // Ready once both workers listen.
  auto r = crew::test::run_program(
      CREW_BIN "/cluster-http", {"--port", "0", "--workers", "2"},
      "listening on 127\\.0\\.0\\.1:([0-9]+)\n[\\s\\S]*listening on 127\\.0\\.0\\.1:[0-9]+\n",
      [](int port, pid_t primary) {
        auto hellos = [port] {
          std::set<std::string> seen;
          for (int i = 0; i < 20; ++i) seen.insert(crew::test::request(port, "GET", "/").body);
          return seen;
        };
        std::set<std::string> before = hellos();
        EXPECT_EQ(before.size(), 2u);
        for (const auto& hello : before) EXPECT_TRUE(hello.starts_with("hello from worker ")) << hello;
        kill(primary, SIGHUP);
        std::set<std::string> after;
        for (int i = 0; i < 500; ++i) {
          after = hellos();
          bool all_new = after.size() == 2;
          for (const auto& hello : after) all_new = all_new && !before.count(hello);
          if (all_new) break;
          std::this_thread::sleep_for(20ms);
        }
        for (const auto& hello : after) EXPECT_FALSE(before.count(hello)) << hello;
        kill(primary, SIGTERM);
      });
  EXPECT_NE(r.out.find("all workers exited\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.status, (crew::exit_status{0, 0}));
}

}  // namespace
