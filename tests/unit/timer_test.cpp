#include "crew/timer.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <stop_token>
#include <thread>
#include <vector>

#include "crew/error.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

TEST(timer, set_timeout_fires_once) {
  crew::loop l;
  int fired = 0;
  crew::timer t = crew::scoped_timeout(1ms, [&] { ++fired; }, l);
  EXPECT_TRUE(t.active());
  crew::test::run_within(l);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(t.active());
}

TEST(timer, timeouts_fire_in_order_of_their_deadlines) {
  crew::loop l;
  std::vector<int> order;
  crew::timer late = crew::scoped_timeout(30ms, [&] { order.push_back(30); }, l);
  crew::timer early = crew::scoped_timeout(5ms, [&] { order.push_back(5); }, l);
  crew::timer now = crew::scoped_timeout(0ms, [&] { order.push_back(0); }, l);
  crew::test::run_within(l);
  EXPECT_EQ(order, (std::vector<int>{0, 5, 30}));
}

TEST(timer, set_interval_repeats_until_stopped) {
  crew::loop l;
  int ticks = 0;
  crew::timer t(l);
  t = crew::scoped_interval(1ms, [&] {
    if (++ticks == 5) t.stop();
  }, l);
  crew::test::run_within(l);
  EXPECT_EQ(ticks, 5);
  EXPECT_FALSE(t.active());
}

TEST(timer, stop_cancels_a_pending_timeout_and_start_rearms_it) {
  crew::loop l;
  int fired = 0;
  crew::timer t = crew::scoped_timeout(1ms, [&] { ++fired; }, l);
  t.stop();
  crew::test::run_within(l);
  EXPECT_EQ(fired, 0);
  t.start(1ms, {}, [&] { fired += 10; });
  crew::test::run_within(l);
  EXPECT_EQ(fired, 10);
}

TEST(timer, a_timer_releases_its_callback_after_its_last_firing) {
  crew::loop l;
  auto token = std::make_shared<int>(0);
  crew::timer t = crew::scoped_timeout(1ms, [token] {}, l);
  EXPECT_EQ(token.use_count(), 2);
  crew::test::run_within(l);
  EXPECT_EQ(token.use_count(), 1);
}

TEST(timer, the_default_loop_is_the_threads_current_loop) {
  std::thread([] {
    int fired = 0;
    crew::timer t = crew::scoped_timeout(1ms, [&] { ++fired; });
    crew::test::run_within(crew::loop::current());
    EXPECT_EQ(fired, 1);
  }).join();
}

// Timers the loop owns: Node's setTimeout, setInterval and clear*.

TEST(loop_timer, set_timeout_runs_once_without_a_handle_kept_and_keeps_the_loop_alive_until_then) {
  crew::loop l;
  int fired = 0;
  crew::timer_id id = crew::set_timeout(20ms, [&] { ++fired; }, l);
  EXPECT_NE(id.value(), 0u);
  EXPECT_TRUE(id.active());
  EXPECT_TRUE(l.alive()) << "a pending timeout keeps run() going, as in Node";
  crew::test::run_within(l);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(id.active()) << "a timeout is freed once it has run";
}

TEST(loop_timer, a_timeout_never_runs_inside_set_timeout_even_with_a_zero_delay) {
  crew::loop l;
  bool fired = false;
  crew::set_timeout(0ms, [&] { fired = true; }, l);
  EXPECT_FALSE(fired);
  crew::test::run_within(l);
  EXPECT_TRUE(fired);
}

TEST(loop_timer, clear_timeout_cancels_and_frees_the_timer_and_its_callback) {
  crew::loop l;
  auto token = std::make_shared<int>(0);
  bool fired = false;
  crew::timer_id id = crew::set_timeout(10ms, [&fired, token] { fired = true; }, l);
  EXPECT_EQ(token.use_count(), 2);
  crew::clear_timeout(id);
  EXPECT_FALSE(id.active());
  crew::test::run_within(l);
  EXPECT_FALSE(fired);
  EXPECT_EQ(token.use_count(), 1) << "the cleared timer's callback is destroyed";
  crew::clear_timeout(id);  // a stale id is ignored
  crew::clear_timeout({});  // and so is the empty one
}

TEST(loop_timer, a_timeout_frees_its_callback_after_running) {
  crew::loop l;
  auto token = std::make_shared<int>(0);
  crew::set_timeout(1ms, [token] {}, l);
  crew::test::run_within(l);
  EXPECT_EQ(token.use_count(), 1);
}

TEST(loop_timer, set_interval_repeats_until_its_own_callback_clears_it) {
  crew::loop l;
  int ticks = 0;
  crew::timer_id id;
  id = crew::set_interval(1ms, [&] {
    if (++ticks == 5) crew::clear_interval(id);
  }, l);
  crew::test::run_within(l);
  EXPECT_EQ(ticks, 5);
  EXPECT_FALSE(id.active());
}

TEST(loop_timer, clear_timeout_and_clear_interval_clear_either_kind_as_in_node) {
  crew::loop l;
  int fired = 0;
  crew::timer_id interval = crew::set_interval(1ms, [&] { ++fired; }, l);
  crew::timer_id timeout = crew::set_timeout(1ms, [&] { ++fired; }, l);
  crew::clear_timeout(interval);
  crew::clear_interval(timeout);
  crew::test::run_within(l);
  EXPECT_EQ(fired, 0);
}

TEST(loop_timer, a_timeout_may_clear_itself_and_set_another) {
  crew::loop l;
  std::vector<int> order;
  crew::timer_id first;
  first = crew::set_timeout(1ms, [&] {
    order.push_back(1);
    crew::clear_timeout(first);
    crew::set_timeout(1ms, [&] { order.push_back(2); }, l);
  }, l);
  crew::test::run_within(l);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(loop_timer, an_unreferenced_timer_does_not_keep_the_loop_alive_but_fires_while_it_runs) {
  crew::loop l;
  int ticks = 0;
  crew::timer_id background = crew::set_interval(1ms, [&] { ++ticks; }, l);
  background.unref();
  EXPECT_FALSE(background.has_ref());
  EXPECT_FALSE(l.alive());
  bool done = false;
  crew::set_timeout(30ms, [&] { done = true; }, l);
  crew::test::run_within(l);  // returns once the referenced timeout has run
  EXPECT_TRUE(done);
  EXPECT_GT(ticks, 0);
  EXPECT_TRUE(background.active());
  background.ref();
  EXPECT_TRUE(background.has_ref());
  crew::clear_interval(background);
}

TEST(loop_timer, destroying_the_loop_drops_its_pending_timers_without_running_them) {
  auto token = std::make_shared<int>(0);
  bool fired = false;
  crew::timer_id id;
  {
    crew::loop l;
    id = crew::set_timeout(1ms, [&fired, token] { fired = true; }, l);
    crew::set_interval(1ms, [&fired, token] { fired = true; }, l);
  }
  EXPECT_FALSE(fired);
  EXPECT_EQ(token.use_count(), 1);
  EXPECT_FALSE(id.active());
  crew::clear_timeout(id);  // the loop is gone: nothing to clear
}

TEST(loop_timer, an_id_from_another_threads_loop_does_nothing_here) {
  crew::loop l;
  bool fired = false;
  crew::timer_id id = crew::set_timeout(20ms, [&] { fired = true; }, l);
  std::thread([id] {
    EXPECT_FALSE(id.active());
    crew::clear_timeout(id);
  }).join();
  crew::test::run_within(l);
  EXPECT_TRUE(fired);
}

// The default constructor is not explicit: a struct holding a timer takes
// designated initializers (issue 12, item 11).
struct session {
  crew::timer idle;
  int requests = 0;
};

TEST(timer, a_struct_holding_a_timer_takes_designated_initializers) {
  crew::loop l;
  session s{.requests = 1};
  bool fired = false;
  s.idle.start(1ms, {}, [&] { fired = true; });
  crew::test::run_within(l);
  EXPECT_TRUE(fired);
  EXPECT_EQ(s.requests, 1);
}

// co_await crew::sleep(d): timers/promises' setTimeout.

crew::task<> sleep_then(crew::loop& l, std::vector<std::string>& seen, std::error_code& result) {
  seen.push_back("before");
  result = co_await crew::sleep(10ms, l);
  seen.push_back("after");
}

TEST(sleep, co_await_sleep_resumes_on_the_loop_after_the_delay) {
  crew::loop l;
  std::vector<std::string> seen;
  std::error_code result = crew::uv_error(UV_EINVAL);
  crew::task<> t = sleep_then(l, seen, result);
  EXPECT_EQ(seen, (std::vector<std::string>{"before"})) << "suspended, never resumed inside the co_await";
  EXPECT_TRUE(l.alive()) << "the sleep keeps the loop alive";
  crew::test::run_within(l);
  EXPECT_EQ(seen, (std::vector<std::string>{"before", "after"}));
  EXPECT_FALSE(result);
}

crew::task<std::error_code> sleep_with(crew::loop& l, std::stop_token stop) {
  co_return co_await crew::sleep(10s, std::move(stop), l);
}

TEST(sleep, a_stop_request_ends_the_sleep_with_ecanceled) {
  crew::loop l;
  std::stop_source source;
  crew::task<std::error_code> t = sleep_with(l, source.get_token());
  crew::set_timeout(5ms, [&] { source.request_stop(); }, l);
  crew::test::run_within(l);
  ASSERT_TRUE(t.done());
  std::error_code ec = t.await_resume();
  EXPECT_EQ(crew::error_name(ec), "ECANCELED");
}

TEST(sleep, a_token_stopped_already_ends_it_on_the_next_turn) {
  crew::loop l;
  std::stop_source source;
  source.request_stop();
  crew::task<std::error_code> t = sleep_with(l, source.get_token());
  EXPECT_FALSE(t.done());
  crew::test::run_within(l);
  EXPECT_EQ(crew::error_name(t.await_resume()), "ECANCELED");
}

}  // namespace
