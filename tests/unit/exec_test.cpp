// exec, exec_file and the _sync forms.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <stop_token>
#include <thread>

#include "crew/child_process.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

crew::exec_result exec(std::string command, crew::process_options options = {}) {
  crew::loop l;
  std::optional<crew::exec_result> result;
  crew::exec(std::move(command), std::move(options), [&](crew::exec_result r) { result = std::move(r); }, l);
  EXPECT_FALSE(result) << "the callback must not run inside exec()";
  crew::test::run_within(l);
  return result ? std::move(*result) : crew::exec_result{};
}

TEST(exec, buffers_the_output_of_a_shell_command) {
  crew::exec_result r = exec("echo one; echo two >&2; echo three");
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.out, "one\nthree\n");
  EXPECT_EQ(r.err, "two\n");
  EXPECT_EQ(r.command, "echo one; echo two >&2; echo three");
}

TEST(exec, a_failing_command_reports_its_exit_code_and_stderr) {
  crew::exec_result r = exec("echo oops >&2; exit 7");
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r.error);
  EXPECT_EQ(r.status.code, 7);
  EXPECT_EQ(r.err, "oops\n");
}

TEST(exec, a_command_the_shell_cannot_find_exits_127) {
  crew::exec_result r = exec("crew-no-such-command");
  EXPECT_EQ(r.status.code, 127);
  EXPECT_NE(r.err.find("not found"), std::string::npos) << r.err;
}

TEST(exec, a_timeout_kills_the_whole_tree_the_command_started) {
  // Both sleeps inherit stdout: the callback arrives only once they are dead too.
  crew::exec_result r = exec("sleep 30 & sleep 30; wait", {.timeout = 50ms});
  EXPECT_EQ(r.error, std::errc::timed_out);
  EXPECT_TRUE(r.killed);
  EXPECT_EQ(r.status.signal, SIGTERM);
}

TEST(exec, a_timeout_ends_a_tree_that_ignores_sigterm) {
  // Without the SIGKILL that follows kill_signal, the sleeps would hold stdout for 30 s.
  crew::exec_result r = exec("trap '' TERM; sleep 30 & sleep 30; wait", {.timeout = 50ms, .kill_timeout = 100ms});
  EXPECT_EQ(r.error, std::errc::timed_out);
  EXPECT_TRUE(r.killed);
}

TEST(exec, sigkill_follows_the_kill_signal_after_kill_timeout) {
  // The output that passes max_buffer comes after the trap: SIGTERM is surely ignored.
  crew::exec_result r = exec("trap '' TERM; sleep 30 & echo more than five bytes; wait",
                             {.kill_timeout = 100ms, .max_buffer = 5});
  EXPECT_EQ(crew::error_name(r.error), "ERR_CHILD_PROCESS_STDIO_MAXBUFFER");
  EXPECT_EQ(r.status.signal, SIGKILL);
  EXPECT_EQ(r.out, "more ");
}

TEST(exec, output_past_max_buffer_kills_the_command_and_says_so) {
  crew::exec_result r = exec("yes", {.max_buffer = 1000});
  EXPECT_EQ(crew::error_name(r.error), "ERR_CHILD_PROCESS_STDIO_MAXBUFFER");
  EXPECT_EQ(r.out.size(), 1000u);
  EXPECT_TRUE(r.killed);
}

TEST(exec, a_stop_request_cancels_the_command) {
  crew::loop l;
  std::stop_source stop;
  std::optional<crew::exec_result> result;
  crew::exec("sleep 30", {.stop = stop.get_token()}, [&](crew::exec_result r) { result = std::move(r); }, l);
  std::thread requester([&] { std::this_thread::sleep_for(10ms), stop.request_stop(); });
  crew::test::run_within(l);
  requester.join();
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, std::errc::operation_canceled);
}

TEST(exec, cwd_and_env_apply_to_the_command) {
  crew::exec_result r = exec("pwd; echo $GREETING", {.cwd = "/tmp", .extra_env = {{"GREETING", "hi"}}});
  EXPECT_EQ(r.out, "/tmp\nhi\n");
}

TEST(exec_file, passes_arguments_literally_without_a_shell) {
  crew::loop l;
  std::optional<crew::exec_result> result;
  crew::exec_file("printf", {"%s|", "a b", "$(reboot)", "`x`", ";", "*"}, {},
                  [&](crew::exec_result r) { result = std::move(r); }, l);
  crew::test::run_within(l);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->out, "a b|$(reboot)|`x`|;|*|");
}

TEST(exec_file, a_missing_program_is_enoent) {
  crew::loop l;
  std::optional<crew::exec_result> result;
  crew::exec_file("crew-no-such-program", {}, {}, [&](crew::exec_result r) { result = std::move(r); }, l);
  crew::test::run_within(l);
  ASSERT_TRUE(result);
  EXPECT_EQ(crew::error_name(result->error), "ENOENT");
  EXPECT_FALSE(result->ok());
}

TEST(spawn_sync, writes_input_and_returns_the_output) {
  crew::spawn_sync_result r = crew::spawn_sync("tr", {"a-z", "A-Z"}, {.input = "shout\n"});
  EXPECT_TRUE(r.ok());
  EXPECT_GT(r.pid, 0);
  EXPECT_EQ(r.out, "SHOUT\n");
}

TEST(spawn_sync, a_large_input_and_output_pass_through_whole) {
  std::string big(3 << 20, 'z');
  crew::spawn_sync_result r = crew::spawn_sync("cat", {}, {.max_buffer = 4 << 20, .input = big});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.out.size(), big.size());
}

TEST(spawn_sync, a_timeout_kills_the_child) {
  crew::spawn_sync_result r = crew::spawn_sync("sleep", {"30"}, {.timeout = 30ms});
  EXPECT_EQ(r.error, std::errc::timed_out);
  EXPECT_EQ(r.status.signal, SIGTERM);
}

TEST(spawn_sync, a_child_that_ignores_sigterm_gets_sigkill_and_the_call_returns) {
  // "ready" (past max_buffer) is printed once SIGTERM is ignored.
  crew::spawn_sync_result r = crew::spawn_sync(CREW_FIXTURE, {"ignore-term"}, {.kill_timeout = 100ms, .max_buffer = 3});
  EXPECT_EQ(crew::error_name(r.error), "ERR_CHILD_PROCESS_STDIO_MAXBUFFER");
  EXPECT_EQ(r.status.signal, SIGKILL);
  siginfo_t info{};
  EXPECT_EQ(waitid(P_PID, static_cast<id_t>(r.pid), &info, WEXITED | WNOHANG), -1) << "no zombie";
  EXPECT_EQ(errno, ECHILD);
}

TEST(spawn_sync, stdio_replaces_the_default_pipes) {
  crew::spawn_sync_result r = crew::spawn_sync(
      "sh", {"-c", "echo lost; echo kept >&2; exit 5"},
      {.stdio = {crew::stdio::ignore(), crew::stdio::ignore(), crew::stdio::pipe()}});
  EXPECT_EQ(r.status.code, 5);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "kept\n");
}

TEST(spawn_sync, needs_no_loop_and_leaves_the_callers_loop_alone) {
  std::thread([] {
    crew::spawn_sync_result r = crew::spawn_sync("echo", {"alone"});
    EXPECT_EQ(r.out, "alone\n");
  }).join();
}

TEST(exec_sync, returns_stdout) { EXPECT_EQ(crew::exec_sync("echo $((6 * 7))"), "42\n"); }

TEST(exec_sync, throws_with_the_commands_stderr_when_it_fails) {
  try {
    (void)crew::exec_sync("echo broken >&2; exit 2");
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("broken"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("exit code 2"), std::string::npos) << e.what();
  }
}

TEST(exec_sync, a_timeout_on_a_tree_that_ignores_sigterm_throws_etimedout_without_hanging) {
  try {
    (void)crew::exec_sync("trap '' TERM; sleep 30 & sleep 30; wait", {.timeout = 50ms, .kill_timeout = 100ms});
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::timed_out);
  }
}

TEST(exec_file_sync, a_missing_program_throws_enoent) {
  try {
    (void)crew::exec_file_sync("crew-no-such-program");
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(crew::error_name(e.code()), "ENOENT");
  }
}

}  // namespace

// The awaitable forms, through crew::task.
#include "crew/task.hpp"

namespace {

// A braced list of arguments goes into a named variable (GCC 12, docs/async.md).
crew::task<std::string> uppercase_of(std::string word, crew::loop& l) {
  crew::exec_result r = co_await crew::exec("echo " + word + " | tr a-z A-Z", l);
  co_return r.out;
}

crew::task<int> two_in_sequence(crew::loop& l, std::vector<std::string>& seen) {
  seen.push_back(co_await uppercase_of("first", l));
  std::vector<std::string> args{"%s", "second; literally"};
  crew::exec_result r = co_await crew::exec_file("printf", std::move(args), l);
  seen.push_back(r.out);
  co_return r.status.code;
}

TEST(exec_awaitable, co_await_exec_reads_like_nodes_promise_api) {
  crew::loop l;
  std::vector<std::string> seen;
  crew::task<int> t = two_in_sequence(l, seen);
  EXPECT_FALSE(t.done()) << "suspended at its first co_await";
  crew::test::run_within(l);
  ASSERT_TRUE(t.done());
  EXPECT_EQ(seen, (std::vector<std::string>{"FIRST\n", "second; literally"}));
}

crew::task<> missing_program(crew::loop& l, std::error_code& error) {
  crew::exec_result r = co_await crew::exec_file("crew-no-such-program", {}, l);
  error = r.error;
}

TEST(exec_awaitable, a_failure_is_in_the_result) {
  crew::loop l;
  std::error_code error;
  crew::task<> t = missing_program(l, error);
  crew::test::run_within(l);
  EXPECT_EQ(crew::error_name(error), "ENOENT");
}

crew::task<> throws_after_exec(crew::loop& l) {
  (void)co_await crew::exec("true", l);
  throw std::runtime_error("after exec");
}

TEST(exec_awaitable, a_dropped_task_runs_on_and_its_exception_reaches_run) {
  crew::loop l;
  { crew::task<> dropped = throws_after_exec(l); }
  EXPECT_THROW(l.run(), std::runtime_error);
}

}  // namespace
