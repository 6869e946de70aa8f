#include "crew/child_process.hpp"

#include <gtest/gtest.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
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

// Numbers of the fds open in this process.
std::set<int> open_fd_set() {
  std::set<int> fds;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* entry = readdir(dir))
      if (entry->d_name[0] != '.' && std::atoi(entry->d_name) != dirfd(dir)) fds.insert(std::atoi(entry->d_name));
    closedir(dir);
  }
  return fds;
}

// Whether crew's background reaper thread runs now (it names itself).
bool reaper_runs() {
  bool found = false;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (dirent* entry = readdir(dir)) {
      std::string name;
      std::getline(std::ifstream(std::string("/proc/self/task/") + entry->d_name + "/comm"), name);
      found = found || name == "crew-reaper";
    }
    closedir(dir);
  }
  return found;
}

// The pids of our child processes, found in /proc/*/stat (only those in
// `state`, such as 'Z' for zombies, if given).
std::vector<pid_t> children_of_ours(char state = 0) {
  std::vector<pid_t> found;
  DIR* proc = opendir("/proc");
  if (!proc) return found;
  while (dirent* entry = readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::ifstream stat(std::string("/proc/") + entry->d_name + "/stat");
    std::string line;
    std::getline(stat, line);
    std::size_t name_end = line.rfind(')');  // the command name may hold spaces and parentheses
    if (name_end == std::string::npos) continue;
    std::istringstream fields(line.substr(name_end + 1));
    char its_state = 0;
    long parent = 0;
    if (fields >> its_state >> parent && parent == getpid() && (!state || its_state == state))
      found.push_back(std::atoi(entry->d_name));
  }
  closedir(proc);
  return found;
}

// Whether `pid` is no child of ours any more: it exited and someone reaped it.
bool gone(pid_t pid) {
  siginfo_t info{};
  return waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD;
}

// Polls `done` until it holds or `limit` (scaled) has passed; says whether it held.
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds limit = 10s) {
  auto end = std::chrono::steady_clock::now() + crew::test::scaled(limit);
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

observed run(std::string command, std::vector<std::string> args = {}, crew::process_options options = {}) {
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
  EXPECT_EQ(o.events, (std::vector<std::string>{"error", "close"})) << "as in Node: no exit event";
  EXPECT_EQ(o.close->code, -ENOENT);
  EXPECT_EQ(child.status(), (crew::exit_status{-ENOENT, 0}));
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
std::vector<long> group_and_session(crew::process_options options) {
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
  child.on_spawn([&] {
    o.events.push_back("spawn");
    EXPECT_FALSE(child.kill(0)) << "signal 0 only checks that the child exists";
    EXPECT_FALSE(child.killed());
    EXPECT_FALSE(child.kill(SIGKILL));
  });
  crew::test::run_within(l);
  EXPECT_EQ(o.exit, (crew::exit_status{-1, SIGKILL}));
  EXPECT_TRUE(child.killed());
  EXPECT_EQ(child.kill(), std::errc::no_such_process) << "the child is gone";
  EXPECT_EQ(o.events, (std::vector<std::string>{"spawn", "exit", "close"})) << "kill() reports no error event";
}

TEST(spawn, kill_and_kill_tree_return_einval_for_a_bad_signal_number_and_go_on) {
  crew::loop l;
  observed o;
  crew::child_process child = crew::spawn("sleep", {"30"}, {.process_group = true}, l);
  o.watch(child);
  for (int bad : {-5, NSIG, 1000}) {
    EXPECT_EQ(crew::error_name(child.kill(bad)), "EINVAL");
    EXPECT_EQ(crew::error_name(child.kill_tree(bad)), "EINVAL");
  }
  EXPECT_FALSE(child.killed());
  EXPECT_FALSE(child.kill_tree(SIGKILL));
  crew::test::run_within(l);
  EXPECT_EQ(o.exit, (crew::exit_status{-1, SIGKILL}));
  EXPECT_EQ(o.events, (std::vector<std::string>{"spawn", "exit", "close"}));
}

TEST(spawn, kill_of_a_closed_or_failed_child_is_esrch) {
  crew::loop l;
  crew::child_process missing = crew::spawn("crew-no-such-program", {}, {}, l);
  EXPECT_EQ(missing.kill(), std::errc::no_such_process);
  crew::child_process closed = crew::spawn("sleep", {"30"}, {}, l);
  closed.close();
  EXPECT_EQ(closed.kill(), std::errc::no_such_process);
  EXPECT_EQ(closed.kill_tree(), std::errc::no_such_process);
  EXPECT_EQ(closed.terminate(), std::errc::no_such_process);
  crew::test::run_within(l);
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

TEST(spawn, kill_and_kill_tree_send_sigterm_by_default) {
  crew::loop l;
  observed one;
  crew::child_process child = crew::spawn("sleep", {"30"}, {}, l);
  one.watch(child);
  child.on_spawn([&] { EXPECT_FALSE(child.kill()); });
  // The grandchildren hold stdout open: close comes once SIGTERM ended them too.
  observed tree;
  crew::child_process group = crew::spawn("sh", {"-c", "sleep 30 & sleep 30 & echo started; wait"},
                                          {.process_group = true}, l);
  tree.watch(group);
  group.out().on_data([&](std::string_view) { EXPECT_FALSE(group.kill_tree()); });
  crew::test::run_within(l);
  EXPECT_EQ(one.close, (crew::exit_status{-1, SIGTERM}));
  EXPECT_EQ(tree.close, (crew::exit_status{-1, SIGTERM}));
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

TEST(spawn, a_flood_of_output_arrives_whole) {
  constexpr long bytes = 64L << 20;
  crew::loop l;
  long received = 0;
  crew::child_process child = crew::spawn(CREW_FIXTURE, {"flood", std::to_string(bytes)}, {}, l);
  child.out().on_data([&](std::string_view s) { received += static_cast<long>(s.size()); });
  crew::test::run_within(l, 60s);
  EXPECT_EQ(received, bytes);
}

int open_fds() { return static_cast<int>(open_fd_set().size()); }

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
  tight.rlim_cur = static_cast<rlim_t>(open_fds() + 11);  // room for a few children, 3 pipes each
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
  for (auto& c : held) c.close();
  held.clear();
  observed o = run("echo", {"recovered"});
  EXPECT_EQ(o.out, "recovered\n");
  crew::test::run_within(l);
}

TEST(fork, takes_the_same_options_and_adds_the_ipc_entry_that_stdio_lacks) {
  crew::loop l;
  crew::child_process child = crew::fork(
      CREW_FIXTURE, {"echo"},
      {.stdio = {crew::stdio::ignore(), crew::stdio::ignore(), crew::stdio::pipe()}, .process_group = true}, l);
  EXPECT_TRUE(child.err().is_open());
  EXPECT_FALSE(child.out().is_open());
  std::string echoed;
  child.on_message([&](crew::message m) {
    echoed = m.to_string();
    child.disconnect();
  });
  child.send(crew::message::value_type{{"over", "fd 3"}});
  std::optional<crew::exit_status> status;
  child.on_close([&](crew::exit_status s) { status = s; });
  EXPECT_FALSE(child.kill_tree(0)) << "process_group reached fork";
  crew::test::run_within(l);
  EXPECT_EQ(echoed, R"({"over":"fd 3"})");
  EXPECT_EQ(status, (crew::exit_status{0, 0}));
}

// Children are always reaped (docs/reaping.md).


// Runs l until `child` has printed "ready" (the fixture's ignore-term mode has
// then set SIGTERM aside).
void wait_until_ready(crew::child_process& child, crew::loop& l) {
  bool ready = false;
  std::string out;
  child.out().on_data([&](std::string_view s) { ready = (out += s).find("ready\n") != std::string::npos; });
  while (!ready && child.is_open() && l.run_once()) {
  }
  ASSERT_TRUE(ready);
}

TEST(reaping, a_destroyed_child_gets_its_kill_signal_and_is_reaped) {
  crew::loop l;
  pid_t pid = 0;
  int events = 0;
  {
    crew::child_process child = crew::spawn("sleep", {"30"}, {}, l);
    pid = child.pid();
    child.on_exit([&](crew::exit_status) { ++events; });
    child.on_close([&](crew::exit_status) { ++events; });
  }
  crew::test::run_within(l);
  EXPECT_TRUE(eventually([&] { return gone(pid); })) << "sleep 30 was not killed, or not reaped";
  EXPECT_EQ(events, 0) << "no event after the object is gone";
}

TEST(reaping, a_closed_child_that_ignores_sigterm_gets_sigkill_after_kill_timeout) {
  crew::loop l;
  crew::child_process child = crew::spawn(CREW_FIXTURE, {"ignore-term"}, {.kill_timeout = 100ms}, l);
  pid_t pid = child.pid();
  wait_until_ready(child, l);
  int events = 0;
  child.on_exit([&](crew::exit_status) { ++events; });
  child.on_close([&](crew::exit_status) { ++events; });
  child.close();
  EXPECT_FALSE(child.is_open());
  EXPECT_EQ(child.pid(), pid) << "pid() stays readable";
  EXPECT_FALSE(child.in().is_open()) << "close() closes the pipes";
  crew::test::run_within(l);
  EXPECT_TRUE(eventually([&] { return gone(pid); })) << "only SIGKILL ends it within 60 s";
  EXPECT_EQ(events, 0);
}

TEST(reaping, a_loop_destroyed_while_its_child_runs_hands_the_child_to_the_reaper) {
  std::optional<crew::loop> l(std::in_place);
  crew::child_process child = crew::spawn(CREW_FIXTURE, {"ignore-term"}, {.kill_timeout = 100ms}, *l);
  pid_t pid = child.pid();
  wait_until_ready(child, *l);
  l.reset();
  EXPECT_FALSE(child.is_open());
  EXPECT_TRUE(eventually([&] { return gone(pid); }));
}

TEST(reaping, closing_a_group_leader_terminates_its_whole_group) {
  crew::loop l;
  // The grandchild ignores SIGTERM too: SIGKILL for the group ends it.
  crew::child_process child = crew::spawn("sh", {"-c", "trap '' TERM; sleep 30 & echo $!; wait"},
                                          {.process_group = true, .kill_timeout = 100ms}, l);
  std::string out;
  child.out().on_data([&](std::string_view s) { out += s; });
  while (out.find('\n') == std::string::npos && l.run_once()) {
  }
  int grandchild = static_cast<int>(syscall(SYS_pidfd_open, std::stoi(out), 0));
  ASSERT_GE(grandchild, 0);
  child.close();
  crew::test::run_within(l);
  pollfd ended{grandchild, POLLIN, 0};
  EXPECT_EQ(poll(&ended, 1, static_cast<int>(crew::test::scaled(10s).count())), 1) << "the grandchild outlived its group";
  close(grandchild);
  EXPECT_TRUE(eventually([&] { return children_of_ours().empty(); }));
}

TEST(reaping, a_detached_child_is_not_killed_by_close_but_is_reaped_when_it_exits) {
  int to_child[2], from_child[2];
  ASSERT_EQ(pipe2(to_child, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(from_child, O_CLOEXEC), 0);
  crew::loop l;
  crew::child_process cat = crew::spawn(
      "cat", {},
      {.stdio = {crew::stdio::from_fd(to_child[0]), crew::stdio::from_fd(from_child[1]), crew::stdio::ignore()},
       .detached = true},
      l);
  pid_t pid = cat.pid();
  close(to_child[0]);
  close(from_child[1]);
  cat.close();  // a non-detached child would have its SIGTERM pending now
  ASSERT_EQ(write(to_child[1], "still here\n", 11), 11);
  char echoed[16] = {};
  EXPECT_EQ(read(from_child[0], echoed, sizeof echoed), 11);
  EXPECT_STREQ(echoed, "still here\n");
  close(to_child[1]);  // end of input: cat exits by itself
  EXPECT_TRUE(eventually([&] { return gone(pid); })) << "the reaper waits for a detached child too";
  close(from_child[0]);
  crew::test::run_within(l);
}

TEST(reaping, exit_sends_sigkill_to_the_children_still_pending_but_not_to_a_detached_one) {
  observed o = run(CREW_FIXTURE, {"exit-with-children"});
  EXPECT_EQ(o.close, (crew::exit_status{0, 0})) << o.err;  // LeakSanitizer, in its builds, found nothing
  std::istringstream pids(o.out);
  pid_t pending = 0, detached = 0;
  ASSERT_TRUE(pids >> pending >> detached) << o.out;
  // Neither is our child: watch them through pidfds.
  int detached_fd = static_cast<int>(syscall(SYS_pidfd_open, detached, 0));
  ASSERT_GE(detached_fd, 0) << "the detached child must outlive its parent";
  pollfd ended{detached_fd, POLLIN, 0};
  EXPECT_EQ(poll(&ended, 1, 0), 0) << "the detached child was killed";
  EXPECT_EQ(syscall(SYS_pidfd_send_signal, detached_fd, SIGKILL, nullptr, 0), 0);
  close(detached_fd);
  int pending_fd = static_cast<int>(syscall(SYS_pidfd_open, pending, 0));
  if (pending_fd < 0) return;  // gone already: SIGKILLed and reaped by init
  ended = {pending_fd, POLLIN, 0};
  EXPECT_EQ(poll(&ended, 1, static_cast<int>(crew::test::scaled(10s).count())), 1)
      << "it ignores SIGTERM and its SIGKILL was 60 s away: only the exit hook ends it";
  close(pending_fd);
}

TEST(reaping, a_process_made_by_fork_reaps_its_own_children_not_its_parents) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer stops a forked child of a threaded process that starts a thread";
#endif
  crew::loop l;
  crew::child_process parents = crew::spawn(CREW_FIXTURE, {"ignore-term"}, {.kill_timeout = 300ms}, l);
  pid_t parents_pid = parents.pid();
  wait_until_ready(parents, l);
  parents.close();  // the reaper thread now holds it
  // Not while the thread is being made: the sanitizers' runtimes are not
  // fork-safe then (their locks would stay held in the copy).
  ASSERT_TRUE(eventually([] { return reaper_runs(); }));
  pid_t forked = fork();
  if (forked == 0) {
    // The copy has the reaper's list but not its thread.
    crew::loop own;
    crew::child_process child = crew::spawn("sleep", {"30"}, {}, own);
    pid_t pid = child.pid();
    child.close();
    _exit(eventually([&] { return gone(pid); }) ? 0 : 1);
  }
  ASSERT_GT(forked, 0);
  int status = 0;
  ASSERT_EQ(waitpid(forked, &status, 0), forked);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the forked copy did not reap its own child";
  EXPECT_TRUE(eventually([&] { return gone(parents_pid); })) << "the parent's reaper lost its child";
}

TEST(reaping, a_stream_moved_out_of_a_closed_child_outlives_it) {
  crew::loop l;
  std::string read;
  crew::stream out;
  {
    crew::child_process child = crew::spawn("sh", {"-c", "echo one; exec sleep 30"}, {}, l);
    out = std::move(child.out());
    out.on_data([&](std::string_view s) { read += s; });
    while (read.empty() && l.run_once()) {
    }
  }
  crew::test::run_within(l);  // ends when the killed child's stdout closes
  EXPECT_EQ(read, "one\n");
  EXPECT_FALSE(out.is_open());
}

// The callback contract of child_process, one rule per test.

TEST(child_process_events, no_event_runs_inside_spawn_kill_terminate_or_close) {
  crew::loop l;
  observed o;
  crew::child_process child = crew::spawn("sleep", {"30"}, {}, l);
  o.watch(child);
  EXPECT_FALSE(child.kill(0));
  EXPECT_EQ(crew::error_name(child.kill(-1)), "EINVAL");
  EXPECT_FALSE(child.terminate());
  EXPECT_TRUE(o.events.empty());
  crew::test::run_within(l);
  EXPECT_EQ(o.events, (std::vector<std::string>{"spawn", "exit", "close"}));

  crew::child_process closed = crew::spawn("sleep", {"30"}, {}, l);
  observed after_close;
  after_close.watch(closed);
  closed.close();
  crew::test::run_within(l);
  EXPECT_TRUE(after_close.events.empty()) << "closed before any event: none runs";
}

TEST(child_process_events, spawn_exit_and_close_run_at_most_once_and_close_is_last) {
  crew::loop l;
  // A group leader is kept unreaped until close while its grandchild holds
  // stdout: its exit must still be reported once, not on every loop turn.
  observed o;
  crew::child_process child = crew::spawn("sh", {"-c", "(sleep 0.2; echo late) & exit 4"}, {.process_group = true}, l);
  o.watch(child);
  crew::test::run_within(l);
  EXPECT_EQ(o.events, (std::vector<std::string>{"spawn", "exit", "close"}));
  EXPECT_EQ(o.out, "late\n");
  EXPECT_EQ(o.close, (crew::exit_status{4, 0}));
  EXPECT_TRUE(eventually([&] { return children_of_ours().empty(); }));
}

TEST(child_process_events, a_callback_may_destroy_its_own_child_process) {
  crew::loop l;
  std::vector<std::string> after;
  pid_t pids[3] = {};
  std::optional<crew::child_process> in_spawn, in_exit, in_close;
  in_spawn = crew::spawn("sleep", {"30"}, {}, l);
  pids[0] = in_spawn->pid();
  in_spawn->on_spawn([&] { in_spawn.reset(); });
  in_spawn->on_exit([&](crew::exit_status) { after.push_back("exit after spawn"); });
  in_exit = crew::spawn("true", {}, {}, l);
  pids[1] = in_exit->pid();
  in_exit->on_exit([&](crew::exit_status) { in_exit.reset(); });
  in_exit->on_close([&](crew::exit_status) { after.push_back("close after exit"); });
  in_close = crew::spawn("true", {}, {}, l);
  pids[2] = in_close->pid();
  in_close->on_close([&](crew::exit_status) { in_close.reset(); });
  crew::test::run_within(l);
  EXPECT_FALSE(in_spawn || in_exit || in_close);
  EXPECT_TRUE(after.empty());
  for (pid_t pid : pids) EXPECT_TRUE(eventually([&] { return gone(pid); })) << pid;
}

TEST(child_process_events, a_failed_spawn_gives_error_then_close_and_never_exit) {
  crew::loop l;
  observed o;
  int exits = 0;
  crew::child_process child = crew::spawn("/crew/no/such/program", {}, {}, l);
  o.watch(child);
  child.on_exit([&](crew::exit_status) { ++exits; });
  crew::test::run_within(l);
  EXPECT_EQ(o.events, (std::vector<std::string>{"error", "close"}));
  EXPECT_EQ(exits, 0);
  EXPECT_EQ(crew::error_name(*o.error), "ENOENT");
}

TEST(child_process_events, a_failed_fork_gives_error_then_disconnect_then_close) {
  crew::loop l;
  observed o;
  crew::child_process child = crew::fork("/crew/no/such/program", {}, {}, l);
  o.watch(child);
  child.on_disconnect([&] { o.events.push_back("disconnect"); });
  crew::test::run_within(l);
  // Node emits disconnect on the turn after close; crew keeps close the last event.
  EXPECT_EQ(o.events, (std::vector<std::string>{"error", "disconnect", "close"}));
  EXPECT_EQ(crew::error_name(*o.error), "ENOENT");
  EXPECT_EQ(o.close, (crew::exit_status{-ENOENT, 0}));
  EXPECT_FALSE(child.connected());
  std::optional<std::error_code> sent;
  EXPECT_FALSE(child.send(crew::message::value_type{{"late", true}}, [&](std::error_code ec) { sent = ec; }));
  crew::test::run_within(l);
  EXPECT_EQ(crew::error_name(sent.value_or(std::error_code{})), "ERR_IPC_CHANNEL_CLOSED");
}

// The contract at scale: 1,000 children abandoned in every way, then no child,
// no zombie, no fd and no thread is left over.

constexpr auto short_kill_timeout = 50ms;

// Every fourth child ignores SIGTERM; half have pipes, half /dev/null.
crew::child_process some_child(int i, crew::loop& l) {
  crew::process_options options{.kill_timeout = short_kill_timeout};
  if (i % 2) options.stdio = {crew::stdio::ignore(), crew::stdio::ignore(), crew::stdio::ignore()};
  if (i % 4 == 0) return crew::spawn(CREW_FIXTURE, {"ignore-term"}, std::move(options), l);
  return crew::spawn("sleep", {"30"}, std::move(options), l);
}

// The fds open now that `before` did not list, with what they are.
std::string new_fds(const std::set<int>& before) {
  std::string list;
  for (int fd : open_fd_set()) {
    if (before.contains(fd)) continue;
    char target[256] = {};
    ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), target, sizeof target - 1);
    list += std::to_string(fd) + " -> " + (n > 0 ? target : "?") + "; ";
  }
  return list;
}

TEST(reaping, a_thousand_children_abandoned_every_way_leave_no_zombie_and_no_fd) {
  // Earlier tests' children may still be with the reaper: start once they are gone.
  ASSERT_TRUE(eventually([] { return children_of_ours().empty() && !reaper_runs(); }));
  { crew::loop first; }  // libuv keeps a few fds of its own from the first loop on
  std::set<int> fds_before = open_fd_set();
  std::size_t abandoned = 0;
  int exec_timeouts = 0;
  int sync_timeouts = 0;
  {
    crew::loop l;
    std::vector<crew::child_process> children;
    for (int i = 0; i < 250; ++i) children.push_back(some_child(i, l));
    l.run_once();
    abandoned += children.size();
    children.clear();  // 250 destroyed while they run, after a turn of their loop
    for (int i = 0; i < 250; ++i, ++abandoned) some_child(i, l).close();  // 250 closed while they run
    for (int round = 0; round < 5; ++round) {  // 250 whose loop is destroyed while they run
      std::optional<crew::loop> doomed(std::in_place);
      for (int i = 0; i < 50; ++i) children.push_back(some_child(i, *doomed));
      doomed->run_once();
      doomed.reset();
      abandoned += children.size();
      children.clear();
    }
    // 230 exec timeouts, then 20 spawn_sync timeouts, on shell trees that ignore SIGTERM.
    const std::string stubborn = "trap '' TERM; sleep 30 & sleep 30; wait";
    for (int i = 0; i < 230; ++i, ++abandoned)
      crew::exec(stubborn, {.timeout = 20ms, .kill_timeout = short_kill_timeout},
                 [&](crew::exec_result r) { exec_timeouts += r.error == std::errc::timed_out; }, l);
    crew::test::run_within(l, 60s);
    for (int i = 0; i < 20; ++i, ++abandoned) {
      crew::spawn_sync_result r = crew::spawn_sync("sh", {"-c", stubborn}, {.timeout = 10ms, .kill_timeout = 30ms});
      sync_timeouts += r.error == std::errc::timed_out;
    }
  }
  EXPECT_EQ(abandoned, 1000u);
  EXPECT_EQ(exec_timeouts, 230);
  EXPECT_EQ(sync_timeouts, 20);
  EXPECT_TRUE(eventually([] { return children_of_ours().empty(); }, 30s))
      << children_of_ours().size() << " children left, " << children_of_ours('Z').size() << " of them zombies";
  EXPECT_TRUE(eventually([&] { return open_fd_set() == fds_before; })) << "leaked: " << new_fds(fds_before);
  EXPECT_TRUE(eventually([] { return !reaper_runs(); })) << "the reaper thread did not end";
}

}  // namespace
