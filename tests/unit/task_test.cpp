// crew::task, crew::awaitable and the when_* combinators; and the code shapes
// that GCC 12 mis-compiles inside co_await, each written as crew's documented
// uses write them (this suite runs under ASan in the asan preset, with GCC,
// the default compiler, and with clang in the clang preset).
#include "crew/task.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "crew/child_process.hpp"
#include "crew/error.hpp"
#include "crew/timer.hpp"
#include "crew/worker_threads.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

crew::task<int> after(crew::loop& l, std::chrono::milliseconds delay, int value, std::vector<int>* order = nullptr) {
  co_await crew::sleep(delay, l);
  if (order) order->push_back(value);
  co_return value;
}

crew::task<int> throws_after(crew::loop& l, std::chrono::milliseconds delay, const char* what) {
  co_await crew::sleep(delay, l);
  throw std::runtime_error(what);
}

// ---- crew::task

crew::task<> hold_until_resumed(crew::loop& l, std::shared_ptr<int> token, bool* resumed = nullptr) {
  co_await crew::sleep(1h, l);
  if (resumed) *resumed = token != nullptr;
}

TEST(task, a_task_whose_loop_is_destroyed_is_destroyed_with_it_and_never_resumed) {
  auto token = std::make_shared<int>(0);
  bool resumed = false;
  auto l = std::make_unique<crew::loop>();
  crew::task<> t = hold_until_resumed(*l, token, &resumed);
  EXPECT_EQ(token.use_count(), 2);
  l.reset();
  EXPECT_EQ(token.use_count(), 1) << "the frame's locals were destroyed";
  EXPECT_FALSE(resumed);
  EXPECT_TRUE(t.done()) << "the task object learned its coroutine is gone";
  EXPECT_THROW(t.await_resume(), std::system_error);
}

crew::task<int> parent_of(crew::loop& l, std::shared_ptr<int> token) {
  crew::task<> child = hold_until_resumed(l, token);
  co_await child;
  co_return 1;
}

TEST(task, destroying_the_loop_frees_a_chain_of_awaiting_tasks_in_any_order) {
  auto token = std::make_shared<int>(0);
  {
    crew::loop l;
    crew::task<int> kept = parent_of(l, token);  // outlives the loop
    { crew::task<int> dropped = parent_of(l, token); }
    EXPECT_EQ(token.use_count(), 5) << "each parent and child frame holds a copy";
  }
  EXPECT_EQ(token.use_count(), 1);
}

crew::task<std::string> finish_later(crew::loop& l, std::shared_ptr<int> token) {
  co_await crew::sleep(1ms, l);
  co_return "done " + std::to_string(token.use_count());
}

TEST(task, a_dropped_task_runs_to_its_end_and_frees_itself) {
  crew::loop l;
  auto token = std::make_shared<int>(0);
  { crew::task<std::string> dropped = finish_later(l, token); }
  EXPECT_EQ(token.use_count(), 2);
  crew::test::run_within(l);
  EXPECT_EQ(token.use_count(), 1);
}

TEST(task, a_task_moved_while_it_runs_is_awaited_through_its_new_owner) {
  crew::loop l;
  auto token = std::make_shared<int>(0);
  crew::task<std::string> first = finish_later(l, token);
  crew::task<std::string> second = std::move(first);
  EXPECT_TRUE(first.done());
  crew::test::run_within(l);
  ASSERT_TRUE(second.done());
  EXPECT_EQ(second.await_resume(), "done 2");
}

crew::task<> await_each_kind(crew::child_process& child, crew::loop& l, std::shared_ptr<int> token) {
  crew::message::value_type question = {{"ask", true}};
  co_await crew::when_all(child.exited(), child.request(question), crew::exec("sleep 3600", l), crew::sleep(1h, l));
  *token = 1;
}

TEST(task, destroying_the_loop_while_a_task_awaits_each_kind_of_operation_frees_it_and_resumes_nothing) {
  auto token = std::make_shared<int>(0);
  std::optional<crew::task<>> t;
  {
    crew::loop l;
    std::vector<std::string> args{"3600"};
    crew::child_process child = crew::fork("sleep", args, crew::process_options(), l);  // never answers
    t.emplace(await_each_kind(child, l, token));
    crew::set_timeout(5ms, [&l] { l.stop(); }, l);  // the operations get under way
    l.run();
    EXPECT_FALSE(t->done());
  }
  EXPECT_EQ(*token, 0);
  EXPECT_EQ(token.use_count(), 1) << "the frame was destroyed";
  EXPECT_TRUE(t->done());
}

// ---- crew::awaitable: start when awaited, cancel when dropped

TEST(awaitable, an_awaitable_never_awaited_never_starts) {
  crew::loop l;
  std::string file = testing::TempDir() + "crew-awaitable-never-started";
  unlink(file.c_str());
  { auto never = crew::exec("touch " + file, l); }
  crew::test::run_within(l);
  EXPECT_NE(access(file.c_str(), F_OK), 0);
}

// ---- when_all, when_all_settled, when_any

crew::task<> all_of_three(crew::loop& l, std::tuple<int, int, std::error_code>& out, std::vector<int>& order) {
  out = co_await crew::when_all(after(l, 20ms, 1, &order), after(l, 1ms, 2, &order), crew::sleep(5ms, l));
}

TEST(when_all, gives_every_value_in_argument_order_whatever_order_they_finish_in) {
  crew::loop l;
  std::tuple<int, int, std::error_code> out;
  std::vector<int> order;
  crew::task<> t = all_of_three(l, out, order);
  crew::test::run_within(l);
  ASSERT_TRUE(t.done());
  t.await_resume();
  EXPECT_EQ(std::get<0>(out), 1);
  EXPECT_EQ(std::get<1>(out), 2);
  EXPECT_FALSE(std::get<2>(out));
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
}

crew::task<std::vector<int>> all_of(crew::loop& l, int n) {
  std::vector<crew::task<int>> tasks;
  for (int i = 0; i < n; ++i) tasks.push_back(after(l, std::chrono::milliseconds(n - i), i));
  co_return co_await crew::when_all(std::move(tasks));
}

TEST(when_all, over_a_vector_gives_a_vector_in_order_and_over_none_completes_at_once) {
  crew::loop l;
  crew::task<std::vector<int>> five = all_of(l, 5);
  crew::task<std::vector<int>> none = all_of(l, 0);
  EXPECT_TRUE(none.done()) << "nothing to wait for: no suspension";
  EXPECT_TRUE(none.await_resume().empty());
  crew::test::run_within(l);
  EXPECT_EQ(five.await_resume(), (std::vector<int>{0, 1, 2, 3, 4}));
}

crew::task<> all_with_failures(crew::loop& l, std::vector<int>& finished, std::string& caught) {
  try {
    co_await crew::when_all(after(l, 20ms, 1, &finished), throws_after(l, 10ms, "second"), throws_after(l, 1ms, "third"));
  } catch (const std::runtime_error& e) {
    caught = e.what();
  }
}

TEST(when_all, waits_for_every_branch_when_one_throws_then_rethrows_the_first_in_argument_order) {
  crew::loop l;
  std::vector<int> finished;
  std::string caught;
  crew::task<> t = all_with_failures(l, finished, caught);
  crew::test::run_within(l);
  EXPECT_EQ(finished, (std::vector<int>{1})) << "the slow branch finished before when_all completed";
  EXPECT_EQ(caught, "second");
}

crew::task<> settle(crew::loop& l, std::tuple<crew::settled<int>, crew::settled<int>>& out) {
  out = co_await crew::when_all_settled(after(l, 1ms, 7), throws_after(l, 1ms, "no"));
}

TEST(when_all_settled, gives_each_value_or_exception_and_never_throws) {
  crew::loop l;
  std::tuple<crew::settled<int>, crew::settled<int>> out;
  crew::task<> t = settle(l, out);
  crew::test::run_within(l);
  t.await_resume();
  ASSERT_TRUE(std::get<0>(out).ok());
  EXPECT_EQ(*std::get<0>(out).value, 7);
  EXPECT_FALSE(std::get<1>(out).ok());
  EXPECT_THROW(std::rethrow_exception(std::get<1>(out).exception), std::runtime_error);
}

crew::task<> race(crew::loop& l, std::variant<int, std::error_code>& out) {
  out = co_await crew::when_any(after(l, 5ms, 42), crew::sleep(1h, l));
}

TEST(when_any, gives_the_first_to_finish_and_cancels_a_pending_timer) {
  crew::loop l;
  std::variant<int, std::error_code> out;
  crew::task<> t = race(l, out);
  crew::test::run_within(l);  // an hour-long sleep left running would fail this
  t.await_resume();
  ASSERT_EQ(out.index(), 0u);
  EXPECT_EQ(std::get<0>(out), 42);
}

crew::task<std::size_t> command_or_timeout() {
  auto first = co_await crew::when_any(crew::exec("sleep 3600"), crew::sleep(10ms));
  co_return first.index();
}

TEST(when_any, a_command_that_loses_is_killed) {
  crew::loop l;
  crew::task<std::size_t> t = command_or_timeout();
  crew::test::run_within(l);  // a command left running for an hour would fail this
  EXPECT_EQ(t.await_resume(), 1u);
}

crew::task<> race_tasks(crew::loop& l, std::variant<int, int>& out, std::vector<int>& order) {
  out = co_await crew::when_any(after(l, 30ms, 1, &order), after(l, 1ms, 2, &order));
}

TEST(when_any, a_task_that_loses_runs_on_detached) {
  crew::loop l;
  std::variant<int, int> out;
  std::vector<int> order;
  crew::task<> t = race_tasks(l, out, order);
  crew::test::run_within(l);
  t.await_resume();
  EXPECT_EQ(out.index(), 1u);
  EXPECT_EQ(std::get<1>(out), 2);
  EXPECT_EQ(order, (std::vector<int>{2, 1})) << "the loser finished after the race";
}

crew::task<std::pair<std::size_t, int>> first_of(crew::loop& l) {
  std::vector<crew::task<int>> tasks;
  tasks.push_back(after(l, 20ms, 10));
  tasks.push_back(after(l, 1ms, 11));
  tasks.push_back(after(l, 10ms, 12));
  co_return co_await crew::when_any(std::move(tasks));
}

TEST(when_any, over_a_vector_gives_the_index_and_value_of_the_first) {
  crew::loop l;
  crew::task<std::pair<std::size_t, int>> t = first_of(l);
  crew::test::run_within(l);
  auto [index, value] = t.await_resume();
  EXPECT_EQ(index, 1u);
  EXPECT_EQ(value, 11);
}

crew::task<> race_throw(crew::loop& l, std::string& caught) {
  try {
    co_await crew::when_any(throws_after(l, 1ms, "first"), crew::sleep(1h, l));
  } catch (const std::runtime_error& e) {
    caught = e.what();
  }
}

TEST(when_any, rethrows_when_the_first_to_finish_threw) {
  crew::loop l;
  std::string caught;
  crew::task<> t = race_throw(l, caught);
  crew::test::run_within(l);
  EXPECT_EQ(caught, "first");
}

crew::task<> nested(crew::loop& l, std::variant<std::tuple<int, int>, std::error_code>& out) {
  out = co_await crew::when_any(crew::when_all(after(l, 1ms, 1), after(l, 2ms, 2)), crew::sleep(1h, l));
}

TEST(when_any, composes_with_when_all) {
  crew::loop l;
  std::variant<std::tuple<int, int>, std::error_code> out;
  crew::task<> t = nested(l, out);
  crew::test::run_within(l);
  t.await_resume();
  ASSERT_EQ(out.index(), 0u);
  EXPECT_EQ(std::get<0>(out), std::make_tuple(1, 2));
}

crew::task<int> ready_now() { co_return 5; }

crew::task<> both_ready(std::tuple<int, int>& out) { out = co_await crew::when_all(ready_now(), ready_now()); }

TEST(when_all, of_finished_tasks_does_not_suspend) {
  crew::loop l;
  std::tuple<int, int> out;
  crew::task<> t = both_ready(out);
  EXPECT_TRUE(t.done());
  EXPECT_EQ(out, std::make_tuple(5, 5));
}

crew::task<> wait_all_forever(crew::loop& l, std::shared_ptr<int> token) {
  co_await crew::when_all(crew::sleep(1h, l), hold_until_resumed(l, token));
}

TEST(when_all, destroying_the_loop_while_it_waits_frees_every_branch) {
  auto token = std::make_shared<int>(0);
  {
    crew::loop l;
    crew::task<> t = wait_all_forever(l, token);
    EXPECT_EQ(token.use_count(), 3);
  }
  EXPECT_EQ(token.use_count(), 1);
}

// ---- GCC 12 (docs/async.md): the patterns it mis-compiles, as crew's API lets
// them be written now. Each crashed (free(): invalid pointer) or failed to
// build before; the build-time rejections are in tests/compile.

crew::task<crew::result<crew::exit_status>> converse(std::string name, crew::child_process child) {
  EXPECT_EQ(name, "x");
  co_return co_await child.exited();
}

crew::task<> fork_inside_co_await(crew::loop& l, crew::result<crew::exit_status>& out) {
  // fork's defaulted args and options used to be `{}`: destroyed twice.
  out = co_await converse("x", crew::fork(CREW_FIXTURE));
  (void)l;
}

TEST(gcc12, a_call_with_default_options_inside_co_await_fork) {
  crew::loop l;
  crew::result<crew::exit_status> out = crew::uv_error(UV_EINVAL);
  crew::task<> t = fork_inside_co_await(l, out);
  crew::test::run_within(l);
  t.await_resume();
  ASSERT_TRUE(out) << crew::error_name(out.error());
  EXPECT_EQ(out->code, 2) << "the fixture without a mode prints its usage and exits 2";
}

crew::task<crew::result<crew::exit_status>> exit_of(crew::child_process child) { co_return co_await child.exited(); }

crew::task<> spawn_inside_co_await(crew::result<crew::exit_status>& out) { out = co_await exit_of(crew::spawn("true")); }

TEST(gcc12, a_call_with_default_options_inside_co_await_spawn) {
  crew::loop l;
  crew::result<crew::exit_status> out = crew::uv_error(UV_EINVAL);
  crew::task<> t = spawn_inside_co_await(out);
  crew::test::run_within(l);
  t.await_resume();
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, (crew::exit_status{0, 0}));
}

crew::task<> exec_inside_co_await(std::string& out, int& code) {
  crew::exec_result r = co_await crew::exec("echo $((6 * 7))");
  out = r.out;
  crew::exec_result f = co_await crew::exec_file("false");
  code = f.status.code;
}

TEST(gcc12, a_call_with_default_options_inside_co_await_exec_and_exec_file) {
  crew::loop l;
  std::string out;
  int code = -1;
  crew::task<> t = exec_inside_co_await(out, code);
  crew::test::run_within(l);
  t.await_resume();
  EXPECT_EQ(out, "42\n");
  EXPECT_EQ(code, 1);
}

crew::task<crew::result<int>> exit_code_of(crew::worker w) { co_return co_await w.exited(); }

crew::task<> worker_inside_co_await(crew::result<int>& out) {
  out = co_await exit_code_of(crew::worker([] { return 3; }));
}

TEST(gcc12, a_call_with_default_options_inside_co_await_worker) {
  crew::loop l;
  crew::result<int> out = crew::uv_error(UV_EINVAL);
  crew::task<> t = worker_inside_co_await(out);
  crew::test::run_within(l);
  t.await_resume();
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, 3);
}

crew::task<> named_options(std::string& out) {
  // A braced options struct goes into a named variable, outside the co_await.
  crew::process_options options{.cwd = "/", .extra_env = {{"CREW_GREETING", "a value long enough to live on the heap"}}};
  crew::exec_result r = co_await crew::exec("pwd; echo $CREW_GREETING", options);
  out = r.out;
}

TEST(gcc12, an_options_struct_named_before_co_await) {
  crew::loop l;
  std::string out;
  crew::task<> t = named_options(out);
  crew::test::run_within(l);
  t.await_resume();
  EXPECT_EQ(out, "/\na value long enough to live on the heap\n");
}

crew::task<> sleep_and_when_all_temporaries(crew::loop& l, int& out) {
  // Awaitables and tasks are classes with constructors, not braced
  // aggregates: temporaries of them inside co_await are safe.
  auto [a, b] = co_await crew::when_all(after(l, 1ms, static_cast<int>(std::string("forty").size())), after(l, 1ms, 37));
  out = a + b;
}

TEST(gcc12, temporaries_of_crew_awaitables_and_tasks_inside_co_await) {
  crew::loop l;
  int out = 0;
  crew::task<> t = sleep_and_when_all_temporaries(l, out);
  crew::test::run_within(l);
  t.await_resume();
  EXPECT_EQ(out, 42);
}

}  // namespace
