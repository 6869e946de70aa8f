#include "crew/child_process.hpp"

#include <gtest/gtest.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>
#include <stop_token>
#include <thread>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

// Everything a child did, as seen through crew's events.
struct observed {
  std::string out, err;
  std::vector<std::string> events;
  std::optional<std::error_code> error;
  std::optional<crew::exit_status> exit, close;

  void watch(crew::child_process& child) {
    child.out().on_data([this](std::string_view s) { out += s; });
    child.err().on_data([this](std::string_view s) { err += s; });
    child.on_spawn([this] { events.push_back("spawn"); });
    child.on_error([this](std::error_code ec) { events.push_back("error"), error = ec; });
    child.on_exit([this](crew::exit_status s) { events.push_back("exit"), exit = s; });
    child.on_close([this](crew::exit_status s) { events.push_back("close"), close = s; });
  }
};

observed run(std::string command, std::vector<std::string> args = {}, crew::spawn_options options = {}) {
  crew::loop l;
  observed o;
  crew::child_process child = crew::spawn(std::move(command), std::move(args), std::move(options), l);
  o.watch(child);
  crew::test::run_within(l);
  return o;
}

TEST(spawn, runs_a_program_and_reports_its_output_and_exit_code) {
  observed o = run("sh", {"-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(o.out, "out\n");
  EXPECT_EQ(o.err, "err\n");
  EXPECT_EQ(o.events, (std::vector<std::string>{"spawn", "exit", "close"}));
  EXPECT_EQ(o.close, (crew::exit_status{3, 0}));
}

TEST(spawn, a_missing_program_is_an_enoent_error_event_then_close_never_a_throw) {
  crew::loop l;
  observed o;
  crew::child_process child = crew::spawn("crew-no-such-program", {}, {}, l);
  EXPECT_EQ(child.pid(), 0);
  o.watch(child);
  EXPECT_TRUE(o.events.empty()) << "events must not run inside spawn()";
  crew::test::run_within(l);
  ASSERT_TRUE(o.error);
  EXPECT_EQ(crew::error_name(*o.error), "ENOENT");
  EXPECT_EQ(o.events, (std::vector<std::string>{"error", "exit", "close"}));
  EXPECT_EQ(o.close->code, -ENOENT);
}

TEST(spawn, a_file_that_is_not_executable_is_eacces) {
  observed o = run("/etc/passwd");
  ASSERT_TRUE(o.error);
  EXPECT_EQ(crew::error_name(*o.error), "EACCES");
}

TEST(spawn, a_missing_working_directory_is_enoent) {
  observed o = run("true", {}, {.cwd = "/crew/no/such/dir"});
  ASSERT_TRUE(o.error);
  EXPECT_EQ(crew::error_name(*o.error), "ENOENT");
}

TEST(spawn, cwd_sets_the_working_directory) {
  EXPECT_EQ(run("pwd", {}, {.cwd = "/tmp"}).out, "/tmp\n");
}

TEST(spawn, env_replaces_the_whole_environment) {
  observed o = run("/usr/bin/env", {}, {.env = crew::environment{{"ONLY", "this"}}});
  EXPECT_EQ(o.out, "ONLY=this\n");
}

TEST(spawn, extra_env_extends_the_parents_environment) {
  setenv("CREW_TEST_INHERITED", "yes", 1);
  observed o = run("sh", {"-c", "echo $CREW_TEST_INHERITED $CREW_TEST_EXTRA"}, {.extra_env = {{"CREW_TEST_EXTRA", "too"}}});
  EXPECT_EQ(o.out, "yes too\n");
}

TEST(spawn, argv0_is_what_the_program_sees_as_its_name) {
  EXPECT_EQ(run("sh", {"-c", "echo $0"}, {.argv0 = "custom-name"}).out, "custom-name\n");
}

TEST(spawn, arguments_reach_the_program_literally) {
  observed o = run("printf", {"%s|", "a b", "$HOME", "'q'", ";", "*", "\"", ""});
  EXPECT_EQ(o.out, "a b|$HOME|'q'|;|*|\"||");
}

TEST(spawn, shell_runs_the_command_line_through_the_shell) {
  observed o = run("echo hello | tr a-z A-Z", {}, {.shell = "/bin/sh"});
  EXPECT_EQ(o.out, "HELLO\n");
}

TEST(spawn, ignored_stdio_goes_to_dev_null_and_has_no_stream) {
  crew::loop l;
  crew::child_process child = crew::spawn("sh", {"-c", "echo lost; read x; echo $?"},
                                          {.stdio = {crew::stdio::ignore(), crew::stdio::ignore(), crew::stdio::pipe()}}, l);
  EXPECT_FALSE(child.in().is_open());
  EXPECT_FALSE(child.out().is_open());
  EXPECT_TRUE(child.err().is_open());
  std::optional<crew::exit_status> status;
  child.on_close([&](crew::exit_status s) { status = s; });
  crew::test::run_within(l);
  EXPECT_EQ(status, (crew::exit_status{0, 0}));
}

TEST(spawn, an_fd_of_ours_becomes_the_childs) {
  int ends[2];
  ASSERT_EQ(pipe2(ends, O_CLOEXEC), 0);
  observed o = run("echo", {"via our pipe"}, {.stdio = {crew::stdio::ignore(), crew::stdio::from_fd(ends[1]), crew::stdio::ignore()}});
  close(ends[1]);
  char buffer[64] = {};
  ssize_t n = read(ends[0], buffer, sizeof buffer - 1);
  close(ends[0]);
  EXPECT_EQ(std::string(buffer, n > 0 ? static_cast<std::size_t>(n) : 0), "via our pipe\n");
  EXPECT_EQ(o.close, (crew::exit_status{0, 0}));
}

TEST(spawn, a_child_inherits_nothing_but_its_stdio) {
  int leaky = open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(leaky, 0);
  observed o = run(CREW_FIXTURE, {"fds"});
  close(leaky);
  EXPECT_EQ(o.out, "0\n1\n2\n");
}

// Reads "pid pgrp session" of the shell that runs it.
std::vector<long> group_and_session(crew::spawn_options options) {
  observed o = run("sh", {"-c", "set -- $(cat /proc/$$/stat); echo $1 $5 $6"}, std::move(options));
  std::istringstream in(o.out);
  std::vector<long> ids(3);
  in >> ids[0] >> ids[1] >> ids[2];
  return ids;
}

TEST(spawn, detached_starts_a_new_session_and_process_group) {
  std::vector<long> ids = group_and_session({.detached = true});
  EXPECT_EQ(ids[1], ids[0]);
  EXPECT_EQ(ids[2], ids[0]);
}

TEST(spawn, process_group_starts_a_group_in_the_same_session) {
  std::vector<long> ids = group_and_session({.process_group = true});
  EXPECT_EQ(ids[1], ids[0]);
  EXPECT_EQ(ids[2], getsid(0));
}

TEST(spawn, uid_and_gid_run_the_child_as_another_user) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  observed o = run("id", {"-u"}, {.uid = 65534, .gid = 65534});
  EXPECT_EQ(o.out, "65534\n");
}

TEST(spawn, timeout_kills_the_child_with_the_kill_signal) {
  crew::loop l;
  observed o;
  crew::child_process child = crew::spawn("sleep", {"30"}, {.timeout = 20ms, .kill_signal = SIGKILL}, l);
  o.watch(child);
  crew::test::run_within(l);
  EXPECT_EQ(o.close, (crew::exit_status{-1, SIGKILL}));
  EXPECT_TRUE(child.killed());
}

TEST(spawn, a_stop_request_from_another_thread_kills_the_child) {
  crew::loop l;
  observed o;
  std::stop_source stop;
  crew::child_process child = crew::spawn("sleep", {"30"}, {.stop = stop.get_token()}, l);
  o.watch(child);
  std::thread requester([&] {
    std::this_thread::sleep_for(10ms);
    stop.request_stop();
  });
  crew::test::run_within(l);
  requester.join();
  EXPECT_EQ(o.close, (crew::exit_status{-1, SIGTERM}));
}

TEST(spawn, kill_sends_a_signal_and_reports_whether_it_was_delivered) {
  crew::loop l;
  observed o;
  crew::child_process child = crew::spawn("sleep", {"30"}, {}, l);
  o.watch(child);
  child.on_spawn([&] { EXPECT_TRUE(child.kill(SIGKILL)); });
  crew::test::run_within(l);
  EXPECT_EQ(o.exit, (crew::exit_status{-1, SIGKILL}));
  EXPECT_TRUE(child.killed());
  EXPECT_FALSE(child.kill()) << "the child is gone";
  EXPECT_THROW(child.kill(-5), std::system_error);
}

TEST(spawn, kill_tree_reaches_the_grandchildren) {
  crew::loop l;
  observed o;
  // The grandchildren hold stdout open, so close arrives only once they died too.
  crew::child_process child = crew::spawn("sh", {"-c", "sleep 30 & sleep 30 & echo started; wait"},
                                          {.process_group = true}, l);
  o.watch(child);
  child.out().on_data([&](std::string_view) { EXPECT_FALSE(child.kill_tree(SIGKILL)); });
  crew::test::run_within(l);
  EXPECT_EQ(o.close, (crew::exit_status{-1, SIGKILL}));
}

TEST(spawn, kill_tree_needs_a_child_that_leads_its_group) {
  crew::loop l;
  crew::child_process child = crew::spawn("true", {}, {}, l);
  EXPECT_EQ(child.kill_tree(SIGKILL), std::errc::invalid_argument);
  crew::test::run_within(l);
}

TEST(spawn, die_with_parent_kills_the_child_when_its_parent_dies) {
  // Become the subreaper, so the orphaned grandchild is reparented to us and we
  // can see how it ended.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  observed o = run(CREW_FIXTURE, {"orphan"});
  pid_t grandchild = std::stoi(o.out);
  int status = 0;
  ASSERT_EQ(waitpid(grandchild, &status, 0), grandchild);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST(spawn, a_child_whose_object_is_destroyed_is_still_reaped) {
  crew::loop l;
  pid_t pid = 0;
  {
    crew::child_process child = crew::spawn("sleep", {"0.01"}, {}, l);
    pid = child.pid();
  }
  crew::test::run_within(l);  // returns once the exit was reaped
  EXPECT_EQ(waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD) << "no zombie left behind";
}

TEST(spawn, a_loop_destroyed_before_its_child_exits_leaves_no_crash) {
  std::optional<crew::loop> l(std::in_place);
  crew::child_process child = crew::spawn("sleep", {"0.01"}, {}, *l);
  pid_t pid = child.pid();
  l.reset();
  EXPECT_FALSE(child.is_open());
  waitpid(pid, nullptr, 0);
}

TEST(spawn, a_flood_of_output_arrives_whole) {
  constexpr long bytes = 64L << 20;
  crew::loop l;
  long received = 0;
  crew::child_process child = crew::spawn(CREW_FIXTURE, {"flood", std::to_string(bytes)}, {}, l);
  child.out().on_data([&](std::string_view s) { received += static_cast<long>(s.size()); });
  crew::test::run_within(l, 60s);
  EXPECT_EQ(received, bytes);
}

int open_fds() {
  int count = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (readdir(dir)) ++count;
    closedir(dir);
  }
  return count;
}

TEST(spawn, ten_thousand_spawns_leave_no_zombie_and_no_extra_fd) {
  crew::loop l;
  int before = open_fds();
  constexpr int total = 10000, concurrent = 16;
  int closed = 0, failed = 0;
  std::vector<crew::child_process> children;  // reserved: no object moves while its callback runs
  children.reserve(total);
  std::function<void()> next = [&] {
    children.push_back(crew::spawn("true", {}, {.stdio = {crew::stdio::ignore(), crew::stdio::pipe(), crew::stdio::ignore()}}, l));
    children.back().out().on_data([](std::string_view) {});
    children.back().on_close([&](crew::exit_status s) {
      ++closed;
      failed += s.code != 0;
      if (children.size() < total) next();
    });
  };
  for (int i = 0; i < concurrent; ++i) next();
  crew::test::run_within(l, 120s);
  EXPECT_EQ(closed, total);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
  EXPECT_LE(open_fds(), before + 1);
}

TEST(spawn, a_full_fd_table_is_emfile_and_spawning_recovers_afterwards) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  crew::loop l;
  rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(open_fds() + 8);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  std::vector<crew::child_process> held;
  std::optional<std::error_code> failure;
  for (int i = 0; i < 20 && !failure; ++i) {
    held.push_back(crew::spawn("sleep", {"30"}, {}, l));
    held.back().on_error([&](std::error_code ec) { failure = ec; });
    // A failed spawn has no pid; its error event comes on the next iteration.
    while (!failure && held.back().pid() == 0 && l.run_once()) {
    }
  }
  setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_TRUE(failure) << "the fd table never filled";
  EXPECT_EQ(crew::error_name(*failure), "EMFILE");
  for (auto& c : held) c.kill(SIGKILL);
  held.clear();
  observed o = run("echo", {"recovered"});
  EXPECT_EQ(o.out, "recovered\n");
  crew::test::run_within(l);
}

}  // namespace
