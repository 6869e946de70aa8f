// The examples, run as a user runs them: each one's exit status and output.
#include <gtest/gtest.h>

#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
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

// A port another program holds: every worker's listen fails, the primary says
// why and ends with exit code 1, and no worker is restarted (restarts are on).
TEST(examples, cluster_http_on_a_port_in_use_exits_1_naming_eaddrinuse_without_restarting) {
  crew::test::held_port holder;
  ASSERT_NE(holder.port(), 0);
  std::string port = std::to_string(holder.port());
  auto r = crew::test::run_to_end(CREW_BIN "/cluster-http", {"--port", port, "--workers", "2"});
  EXPECT_EQ(r.status, (crew::exit_status{1, 0}));
  EXPECT_NE(r.err.find("cluster: cannot listen on 127.0.0.1:" + port + ": EADDRINUSE (address already in use)\n"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out.find("starting another"), std::string::npos) << r.out;
}

// Every worker greets ("worker PID") and echoes, in each policy. At SIGTERM a
// connection still open is ended by its worker (the client reads the end of
// the stream); once the client closes it, the program exits 0.
TEST(examples, cluster_tcp_echo_echoes_from_every_worker_and_exits_0_on_sigterm) {
  for (std::string policy : {"round_robin", "shared", "reuseport"}) {
    SCOPED_TRACE(policy);
    std::set<std::string> greetings;
    bool echoed = true;
    std::string rest = "unread";
    auto r = crew::test::run_program(
        CREW_BIN "/cluster-tcp-echo", {"--port", "0", "--workers", "2", "--policy", policy},
        "echo on 127\\.0\\.0\\.1:([0-9]+) with 2 workers\n", [&](int port, pid_t primary) {
          for (int i = 0; i < 200 && greetings.size() < 2; ++i) {
            auto c = crew::test::http_connection::to(port);
            greetings.insert(c.read_until("\n"));
            echoed = echoed && c.send("hello, echo\n") && c.read_until("hello, echo\n") == "hello, echo\n";
          }
          auto held = crew::test::http_connection::to(port);
          EXPECT_FALSE(held.read_until("\n").empty());
          kill(primary, SIGTERM);
          rest = held.read_to_end();  // the worker ends its side
        });
    EXPECT_EQ(greetings.size(), 2u);
    for (const auto& g : greetings) EXPECT_TRUE(std::regex_match(g, std::regex("worker [0-9]+\n"))) << g;
    EXPECT_TRUE(echoed);
    EXPECT_EQ(rest, "");
    EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  }
}

// Whether `text` matches `pattern` somewhere (ECMAScript regex).
bool contains(const std::string& text, const std::string& pattern) {
  return std::regex_search(text, std::regex(pattern));
}

TEST(examples, spawn_ls_streams_the_listing_of_usr_and_reports_exit_code_0) {
  auto r = crew::test::run_to_end(CREW_BIN "/spawn-ls", {});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_TRUE(contains(r.out, "^Parent process ID: [0-9]+\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "stdout:[\\s\\S]* bin\n[\\s\\S]* share\n")) << r.out;
  EXPECT_TRUE(r.out.ends_with("child process exited with code 0\n")) << r.out;
}

TEST(examples, exec_prints_the_listing_and_nodes_version) {
  auto r = crew::test::run_to_end(CREW_BIN "/exec", {});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_TRUE(contains(r.out, "Stdout: total [0-9.]+[KMG]?\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "Stdout: v[0-9]+\\.[0-9]+\\.[0-9]+\n")) << r.out;
}

TEST(examples, spawn_ping_streams_three_echo_replies_from_this_machine) {
  auto r = crew::test::run_to_end(CREW_BIN "/spawn-ping", {});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_TRUE(contains(r.out, "3 packets transmitted, 3 received")) << r.out;
  EXPECT_TRUE(r.out.ends_with("ping process exited with code 0\n")) << r.out;
}

TEST(examples, fork_parent_gets_each_answer_of_its_cpp_child) {
  auto r = crew::test::run_to_end(CREW_BIN "/fork-parent", {});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_TRUE(contains(r.out, "Result from child: 42\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "Response from child: \\{\"response\":\"HELLO FROM PARENT\"\\}\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "Message from child: \\{\"received\":true\\}\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "\\[child [0-9]+\\] Message from parent: \\{\"num\":21\\}")) << r.out;
}

TEST(examples, process_reuse_answers_ten_requests_from_one_child) {
  auto r = crew::test::run_to_end(CREW_BIN "/process-reuse", {});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  std::smatch started;
  ASSERT_TRUE(std::regex_search(r.out, started, std::regex("started .*fork-child as pid ([0-9]+)\n"))) << r.out;
  for (int i = 1; i <= 10; ++i)
    EXPECT_NE(r.out.find("answer " + std::to_string(i) + ": {\"result\":" + std::to_string(2 * i) + "} from pid " +
                         started[1].str() + "\n"),
              std::string::npos)
        << r.out;
  EXPECT_TRUE(r.out.ends_with("10 requests, 1 process started\n")) << r.out;
}

TEST(examples, thread_pool_hashes_files_on_the_pool_and_reports_a_missing_one) {
  std::string file = testing::TempDir() + "crew-thread-pool-example";
  std::ofstream(file) << "hello";
  auto r = crew::test::run_to_end(CREW_BIN "/thread-pool", {file, "/no/such/file"});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  // FNV-1a of "hello", stretched 200 times as the example does, is fixed: the
  // same bytes give the same line on every machine.
  EXPECT_TRUE(contains(r.out, "crew-thread-pool-example +5 bytes +fnv1a 953205098b0f62f5\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "/no/such/file +error ENOENT\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "every callback ran on the main thread: yes\n")) << r.out;
  unlink(file.c_str());
}

TEST(examples, fork_node_talks_to_a_node_child_over_nodes_ipc) {
  std::string script = testing::TempDir() + "crew-fork-node-example.js";
  std::ofstream(script) << "process.on('message', m => { process.send({got: m, pid: process.pid}); process.disconnect(); });\n";
  auto r = crew::test::run_to_end(CREW_BIN "/fork-node", {script});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_TRUE(contains(r.out, "^\\{\"got\":\\{\"hello\":\"world\"\\},\"pid\":[0-9]+\\}\n$")) << r.out;
  unlink(script.c_str());
}

// rpc-parent's requests carry ids; each child, crew's and Node's, answers with
// the id it got, and the parent prints the result of each.
TEST(examples, rpc_parent_gets_each_reply_by_id_from_its_crew_child) {
  auto r = crew::test::run_to_end(CREW_BIN "/rpc-parent", {});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_EQ(r.out, "1 + 10 = 11\n2 + 20 = 22\n3 + 30 = 33\n");
}

TEST(examples, rpc_parent_gets_each_reply_by_id_from_an_unchanged_node_child) {
  auto r = crew::test::run_to_end(CREW_BIN "/rpc-parent", {CREW_EXAMPLES "/rpc-child.js"});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_EQ(r.out, "1 + 10 = 11\n2 + 20 = 22\n3 + 30 = 33\n");
}

TEST(examples, rpc_parent_reports_each_request_as_failed_when_its_child_exits_without_answering) {
  auto r = crew::test::run_to_end(CREW_BIN "/rpc-parent", {"/no/such/script.js"});
  EXPECT_EQ(r.status, (crew::exit_status{1, 0}));
  EXPECT_EQ(r.out, "request 1: ERR_IPC_CHANNEL_CLOSED\nrequest 2: ERR_IPC_CHANNEL_CLOSED\nrequest 3: ERR_IPC_CHANNEL_CLOSED\n");
}

TEST(examples, rpc_child_answers_bad_requests_with_an_error_and_good_ones_with_the_sum) {
  crew::loop l;
  crew::child_process child = crew::fork(CREW_BIN "/rpc-child", {}, {}, l);
  std::vector<std::string> replies;
  child.on_message([&](crew::message m) {
    replies.push_back(m.to_string());
    if (replies.size() == 3) child.disconnect();
  });
  child.send(crew::message::value_type::array({1, 2}));
  child.send(crew::message::value_type{{"id", 7}, {"op", "add"}, {"a", "x"}, {"b", 1}});
  child.send(crew::message::value_type{{"id", 8}, {"op", "add"}, {"a", 2}, {"b", 40}});
  std::optional<crew::exit_status> status;
  child.on_exit([&](crew::exit_status s) { status = s; });
  crew::test::run_within(l, std::chrono::seconds(30));
  EXPECT_EQ(replies, (std::vector<std::string>{R"({"id":null,"error":"expected {op: \"add\", a, b}"})",
                                               R"({"id":7,"error":"expected {op: \"add\", a, b}"})",
                                               R"({"id":8,"result":42})"}));
  EXPECT_EQ(status, (crew::exit_status{0, 0}));
}

// The first-day examples and their Node twins (examples/*.js) behave alike:
// each test runs both.
struct twin {
  std::string program;              // crew's example, or node
  std::vector<std::string> before;  // the arguments that come first: node's script
};

std::vector<twin> twins(const std::string& name) {
  return {{CREW_BIN "/" + name, {}}, {"node", {CREW_EXAMPLES "/" + name + ".js"}}};
}

std::vector<std::string> with(const twin& t, std::vector<std::string> args) {
  std::vector<std::string> all = t.before;
  all.insert(all.end(), args.begin(), args.end());
  return all;
}


TEST(examples, rpc_parents_node_twin_prints_the_same_replies_and_failures) {
  auto r = crew::test::run_to_end("node", {CREW_EXAMPLES "/rpc-parent.js"});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_EQ(r.out, "1 + 10 = 11\n2 + 20 = 22\n3 + 30 = 33\n");
  r = crew::test::run_to_end("node", {CREW_EXAMPLES "/rpc-parent.js", "/no/such/script.js"});
  EXPECT_EQ(r.status, (crew::exit_status{1, 0}));
  EXPECT_EQ(r.out, "request 1: ERR_IPC_CHANNEL_CLOSED\nrequest 2: ERR_IPC_CHANNEL_CLOSED\nrequest 3: ERR_IPC_CHANNEL_CLOSED\n");
}

TEST(examples, supervisor_restarts_a_failing_command_with_backoff_until_it_succeeds) {
  for (const twin& t : twins("supervisor")) {
    SCOPED_TRACE(t.program);
    std::string count = testing::TempDir() + "crew-supervisor-runs";
    unlink(count.c_str());
    // Fails on its first two runs, then succeeds.
    std::string script = "n=$(cat " + count + " 2>/dev/null || echo 0); echo $((n + 1)) > " + count + "; [ $n -ge 2 ]";
    auto r = crew::test::run_to_end(t.program, with(t, {"sh", "-c", script}));
    EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
    EXPECT_EQ(r.err, "supervisor: sh failed (code 1); again in 100 ms\nsupervisor: sh failed (code 1); again in 200 ms\n");
    std::string runs;
    std::ifstream(count) >> runs;
    EXPECT_EQ(runs, "3");
    unlink(count.c_str());
  }
}

TEST(examples, supervisor_gives_up_after_five_failures_in_a_row_naming_the_signal) {
  for (const twin& t : twins("supervisor")) {
    SCOPED_TRACE(t.program);
    auto r = crew::test::run_to_end(t.program, with(t, {"sh", "-c", "kill -KILL $$"}));
    EXPECT_EQ(r.status, (crew::exit_status{1, 0}));
    EXPECT_EQ(r.err,
              "supervisor: sh failed (SIGKILL); again in 100 ms\n"
              "supervisor: sh failed (SIGKILL); again in 200 ms\n"
              "supervisor: sh failed (SIGKILL); again in 400 ms\n"
              "supervisor: sh failed (SIGKILL); again in 800 ms\n"
              "supervisor: sh failed 5 times in a row (SIGKILL); giving up\n");
  }
}

TEST(examples, supervisor_reports_a_command_it_cannot_run) {
  for (const twin& t : twins("supervisor")) {
    SCOPED_TRACE(t.program);
    auto r = crew::test::run_to_end(t.program, with(t, {"/no/such/program"}));
    EXPECT_EQ(r.status, (crew::exit_status{127, 0}));
    EXPECT_EQ(r.err, "supervisor: cannot run /no/such/program: ENOENT\n");
  }
}

// Whether a process runs: it exists and is not a zombie (one left to init may
// wait a while to be reaped).
bool running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_text, name, state;
  return stat >> pid_text >> name >> state && state != "Z";
}

// Whether a process stops running within 2 s.
bool ends(pid_t pid) {
  for (int i = 0; i < 200 && running(pid); ++i) std::this_thread::sleep_for(10ms);
  return !running(pid);
}

// SIGTERM stops the command it runs, and what the command started; then the
// supervisor exits 0.
TEST(examples, supervisor_stops_its_command_and_what_it_started_on_sigterm_and_exits_0) {
  for (const twin& t : twins("supervisor")) {
    SCOPED_TRACE(t.program);
    auto r = crew::test::run_program(t.program, with(t, {"sh", "-c", "sleep 31 & echo running $$ $!; exec sleep 30"}),
                                     "running [0-9]+ ([0-9]+)\n",
                                     [&](int, pid_t supervisor) { kill(supervisor, SIGTERM); });
    EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.out, m, std::regex("running ([0-9]+) ([0-9]+)\n"))) << r.out;
    EXPECT_TRUE(ends(std::stoi(m[1])));  // the command
    EXPECT_TRUE(ends(std::stoi(m[2])));  // what it started
  }
}

// A command that fails leaves nothing it started behind when it is started again.
TEST(examples, supervisor_leaves_nothing_a_failed_run_started) {
  for (const twin& t : twins("supervisor")) {
    SCOPED_TRACE(t.program);
    auto r = crew::test::run_to_end(t.program, with(t, {"sh", "-c", "sleep 32 & echo started $!; exit 3"}));
    EXPECT_EQ(r.status, (crew::exit_status{1, 0}));
    std::regex started("started ([0-9]+)\n");
    int count = 0;
    for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), started); it != std::sregex_iterator(); ++it) {
      ++count;
      EXPECT_TRUE(ends(std::stoi((*it)[1])));
    }
    EXPECT_EQ(count, 5);
  }
}

TEST(examples, cluster_json_api_answers_from_every_worker_refuses_bad_input_and_shuts_down) {
  using json = crew::message::value_type;
  for (const twin& t : twins("cluster-json-api")) {
    SCOPED_TRACE(t.program);
    auto r = crew::test::run_program(
        t.program, with(t, {"--port", "0", "--workers", "2"}),
        "listening on 127\\.0\\.0\\.1:([0-9]+)\n[\\s\\S]*listening on 127\\.0\\.0\\.1:[0-9]+\n",
        [&t](int port, pid_t primary) {
          auto answer = [port](const char* method, const char* path, const std::string& body = "") {
            crew::test::http_answer a = crew::test::request(port, method, path, body);
            return std::pair{a.status, json::parse(a.body, nullptr, false)};
          };
          std::set<long> workers;
          for (int i = 0; i < 20; ++i) {
            auto [status, health] = answer("GET", "/api/health");
            EXPECT_EQ(status, 200);
            EXPECT_EQ(health.value("status", ""), "ok");
            workers.insert(health.value("worker", 0L));
          }
          EXPECT_EQ(workers.size(), 2u);
          if (t.before.empty()) {
            // Workers of /proc/self/exe go by the primary's name in ps, not "exe".
            std::ifstream cmdline("/proc/" + std::to_string(*workers.begin()) + "/cmdline");
            std::string name;
            std::getline(cmdline, name, '\0');
            EXPECT_TRUE(name.ends_with("cluster-json-api")) << name;
          }
          auto [status, sum] = answer("POST", "/api/sum", R"({"numbers": [1, 2, 3.5]})");
          EXPECT_EQ(status, 200);
          EXPECT_EQ(sum.value("sum", 0.0), 6.5);
          EXPECT_EQ(sum.value("count", 0), 3);
          for (const char* bad : {"nope", R"({"numbers": [1, "2"]})", R"({"numbers": 3})", "[]"}) {
            auto [refused, error] = answer("POST", "/api/sum", bad);
            EXPECT_EQ(refused, 400) << bad;
            EXPECT_TRUE(error.contains("error")) << bad;
          }
          auto [found, primes] = answer("GET", "/api/primes?below=100");
          EXPECT_EQ(found, 200);
          EXPECT_EQ(primes.value("primes", 0), 25);
          EXPECT_EQ(primes.value("below", 0), 100);
          for (const char* bad : {"/api/primes", "/api/primes?below=x", "/api/primes?below=-1", "/api/primes?below=99999999"})
            EXPECT_EQ(answer("GET", bad).first, 400) << bad;
          kill(primary, SIGTERM);
        });
    EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  }
}


TEST(examples, hash_files_prints_each_sum_in_order_and_names_each_error) {
  std::string dir = testing::TempDir() + "crew-hash-files";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/hello") << "hello";
  std::ofstream(dir + "/empty");
  for (const twin& t : twins("hash-files")) {
    SCOPED_TRACE(t.program);
    auto r = crew::test::run_to_end(t.program, with(t, {dir + "/hello", dir + "/missing", dir + "/empty", dir}));
    EXPECT_EQ(r.status, (crew::exit_status{1, 0}));
    EXPECT_EQ(r.out, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824  " + dir + "/hello\n" +
                         "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  " + dir + "/empty\n");
    EXPECT_EQ(r.err, "hash-files: " + dir + "/missing: ENOENT\nhash-files: " + dir + ": EISDIR\n");
  }
  std::filesystem::remove_all(dir);
}

TEST(examples, worker_pool_runs_more_tasks_than_threads_and_prints_each_result_in_order) {
  auto r = crew::test::run_to_end(CREW_BIN "/worker-pool", {"--size", "2", "--tasks", "5"});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_TRUE(r.out.starts_with("fibonacci(25) = 75025\nfibonacci(26) = 121393\nfibonacci(27) = 196418\n"
                                "fibonacci(28) = 317811\nfibonacci(29) = 514229\n5 tasks on 2 threads; waited "))
      << r.out;
  EXPECT_EQ(crew::test::run_to_end(CREW_BIN "/worker-pool", {"--tasks", "0"}).status, (crew::exit_status{2, 0}));
}


TEST(examples, process_pool_kills_a_hung_task_fails_a_crash_alone_and_runs_100_more) {
  auto r = crew::test::run_to_end(CREW_BIN "/process-pool", {});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_EQ(r.out, "timeout: ETIMEDOUT\ncrash: SIGABRT (killed by a signal: Aborted)\ndone 100\n");
}

TEST(examples, node_pool_runs_tasks_in_node_workers_and_reports_their_errors) {
  auto r = crew::test::run_to_end(CREW_BIN "/node-pool", {});
  EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << r.err;
  EXPECT_EQ(r.out,
            "fib(10) = 55\nfib(20) = 6765\nfib(30) = 832040\nupper(crew) = \"CREW\"\n"
            "fib(-1) failed: ERR_OUT_OF_RANGE: fib needs a whole number >= 0, got -1\n");
}

}  // namespace
