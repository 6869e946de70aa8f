// docs/async.md, use by use: every co_await that page shows, written as it
// shows it, and what it gives. The asan and clang presets run these with
// AddressSanitizer and with clang; the default build with GCC 12.
#include <crew/crew.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using json = crew::message::value_type;

// Runs the loop of the thread (each test's own, made first) until the task is done.
template <class T>
T run(crew::task<T>& t) {
  crew::test::run_within(crew::loop::current(), 30s);
  EXPECT_TRUE(t.done());
  return t.await_resume();
}

// ---- Tasks

crew::task<std::string> kernel() {
  crew::exec_result r = co_await crew::exec("uname -r");
  co_return r.out;
}

crew::task<std::string> report() {
  std::string release = co_await kernel();
  co_return "kernel " + release;
}

TEST(async, a_task_awaits_a_task_that_awaits_exec) {
  crew::loop l;
  crew::task<std::string> t = report();
  EXPECT_FALSE(t.done());
  EXPECT_EQ(run(t), "kernel " + crew::exec_sync("uname -r"));
}

// ---- sleep

crew::task<std::error_code> sleep_then_sleep_with_a_token(std::stop_source& stop) {
  co_await crew::sleep(100ms);
  std::error_code ec = co_await crew::sleep(10s, stop.get_token());
  co_return ec;
}

TEST(async, sleep_resumes_after_the_delay_and_a_stop_request_ends_it_with_ecanceled) {
  crew::loop l;
  std::stop_source stop;
  crew::task<std::error_code> t = sleep_then_sleep_with_a_token(stop);
  crew::set_timeout(150ms, [&] { stop.request_stop(); });
  EXPECT_EQ(crew::error_name(run(t)), "ECANCELED");
}

// ---- exec, exec_file

crew::task<std::vector<std::string>> execs() {
  std::vector<std::string> seen;
  crew::exec_result r = co_await crew::exec("ps aux | head -10");
  seen.push_back(r.out.substr(0, r.out.find('\n')));

  std::vector<std::string> args{"-lh", "/usr"};
  crew::exec_result listing = co_await crew::exec_file("ls", args);
  seen.push_back(listing.out.substr(0, listing.out.find(' ')));

  crew::process_options options{.timeout = 100ms};
  crew::exec_result slow = co_await crew::exec("sleep 10", options);
  seen.push_back(crew::error_name(slow.error));
  co_return seen;
}

TEST(async, exec_and_exec_file_give_the_exec_result) {
  crew::loop l;
  crew::task<std::vector<std::string>> t = execs();
  std::vector<std::string> seen = run(t);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_NE(seen[0].find("PID"), std::string::npos) << seen[0];
  EXPECT_EQ(seen[1], "total");
  EXPECT_EQ(seen[2], "ETIMEDOUT");
}

// ---- exited

crew::task<std::vector<int>> exits() {
  crew::child_process child = crew::spawn("sh", {"-c", "exit 3"});
  crew::result<crew::exit_status> status = co_await child.exited();

  crew::worker w([] { return 7; });
  crew::result<int> code = co_await w.exited();
  co_return std::vector<int>{status ? status->code : -1, code ? *code : -1};
}

TEST(async, exited_gives_a_childs_exit_status_and_a_workers_exit_code) {
  crew::loop l;
  crew::task<std::vector<int>> t = exits();
  EXPECT_EQ(run(t), (std::vector<int>{3, 7}));
}

crew::task<std::vector<std::string>> exits_in_each_state(crew::loop& l) {
  std::vector<std::string> seen;
  crew::child_process done = crew::spawn("true");
  (void)co_await done.exited();
  crew::result<crew::exit_status> again = co_await done.exited();  // already exited: no suspension
  seen.push_back(again ? std::to_string(again->code) : crew::error_name(again.error()));

  crew::child_process missing = crew::spawn("crew-no-such-program");
  crew::result<crew::exit_status> never = co_await missing.exited();
  seen.push_back(crew::error_name(never.error()));

  crew::child_process closed = crew::spawn("sleep", {"10"});
  crew::set_timeout(1ms, [&closed] { closed.close(); }, l);
  crew::result<crew::exit_status> gone = co_await closed.exited();
  seen.push_back(crew::error_name(gone.error()));
  co_return seen;
}

TEST(async, exited_completes_at_once_for_an_exited_child_with_the_spawn_error_and_with_ecanceled_on_close) {
  crew::loop l;
  crew::task<std::vector<std::string>> t = exits_in_each_state(l);
  EXPECT_EQ(run(t), (std::vector<std::string>{"0", "ENOENT", "ECANCELED"}));
}

crew::task<int> exit_twice(crew::child_process& child) {
  crew::result<crew::exit_status> s = co_await child.exited();
  co_return s ? s->code : -1;
}

TEST(async, exited_leaves_on_exit_in_place_and_serves_several_coroutines) {
  crew::loop l;
  crew::child_process child = crew::spawn("sh", {"-c", "exit 5"});
  int event = -1;
  child.on_exit([&](crew::exit_status s) { event = s.code; });
  crew::task<int> a = exit_twice(child);
  crew::task<int> b = exit_twice(child);
  EXPECT_EQ(run(a), 5);
  EXPECT_EQ(b.await_resume(), 5);
  EXPECT_EQ(event, 5);
}

// ---- request

crew::task<std::string> ask(crew::child_process child) {
  json question = {{"op", "add"}, {"a", 1}, {"b", 2}};
  crew::result<crew::message> reply = co_await child.request(question, {.timeout = 10s});
  child.disconnect();
  co_return reply ? reply->value()["result"].dump() : crew::error_name(reply.error());
}

// The page's crew child is the fixture's mode rpc-add.
TEST(async, request_gets_the_reply_that_carries_its_id_from_a_crew_child) {
  crew::loop l;
  std::vector<std::string> mode{"rpc-add"};
  crew::task<std::string> t = ask(crew::fork(CREW_FIXTURE, mode));
  EXPECT_EQ(run(t), "3");
}

TEST(async, request_gets_the_reply_that_carries_its_id_from_an_unchanged_node_child) {
  crew::loop l;
  std::string script = testing::TempDir() + "crew-async-rpc-child.js";
  std::ofstream(script) << "process.on('message', (m) => process.send({ id: m.id, result: m.a + m.b }));\n";
  crew::process_options node{.exec_path = "node"};
  crew::task<std::string> t = ask(crew::fork(script, {}, node));
  EXPECT_EQ(run(t), "3");
  std::remove(script.c_str());
}

// ---- when_all, when_all_settled, when_any

crew::task<std::string> checksum(std::string file) {
  std::vector<std::string> args{file};
  crew::exec_result r = co_await crew::exec_file("sha256sum", args);
  if (!r.ok()) throw std::runtime_error("sha256sum " + file + " failed");
  co_return r.out.substr(0, 64);
}

crew::task<int> might_throw() {
  co_await crew::sleep(1ms);
  throw std::runtime_error("thrown");
}

struct combined {
  std::string os, release;
  std::vector<std::string> sums;
  bool second_threw = false;
  bool timed_out = false;
  std::size_t index = 0;
  std::string sum;
};

crew::task<combined> combinators(std::vector<std::string> files) {
  combined out;
  auto [os, release] = co_await crew::when_all(crew::exec("uname -s"), crew::exec("uname -r"));
  out.os = os.out;
  out.release = release.out;

  std::vector<crew::task<std::string>> jobs;
  for (const std::string& file : files) jobs.push_back(checksum(file));
  std::vector<std::string> sums = co_await crew::when_all(std::move(jobs));
  out.sums = sums;

  auto [value, failure] = co_await crew::when_all_settled(checksum("/etc/hostname"), might_throw());
  out.second_threw = value.ok() && !failure.ok() && failure.exception;

  auto first = co_await crew::when_any(crew::exec("sleep 10"), crew::sleep(100ms));
  out.timed_out = first.index() == 1;

  std::vector<crew::task<std::string>> more_jobs;
  for (const std::string& file : files) more_jobs.push_back(checksum(file));
  auto [index, sum] = co_await crew::when_any(std::move(more_jobs));
  out.index = index;
  out.sum = sum;
  co_return out;
}

TEST(async, when_all_when_all_settled_and_when_any_as_the_page_shows_them) {
  crew::loop l;
  std::vector<std::string> files{"/etc/hostname", "/etc/os-release"};
  crew::task<combined> t = combinators(files);
  combined out = run(t);
  EXPECT_EQ(out.os, crew::exec_sync("uname -s"));
  EXPECT_EQ(out.release, crew::exec_sync("uname -r"));
  ASSERT_EQ(out.sums.size(), 2u);
  for (std::size_t i = 0; i < files.size(); ++i)
    EXPECT_EQ(out.sums[i], crew::exec_sync("sha256sum " + files[i]).substr(0, 64));
  EXPECT_TRUE(out.second_threw);
  EXPECT_TRUE(out.timed_out);
  ASSERT_LT(out.index, files.size());
  EXPECT_EQ(out.sum, out.sums[out.index]);
}

}  // namespace
