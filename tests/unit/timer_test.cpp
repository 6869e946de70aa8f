#include "crew/timer.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

TEST(timer, set_timeout_fires_once) {
  crew::loop l;
  int fired = 0;
  crew::timer t = crew::set_timeout(1ms, [&] { ++fired; }, l);
  EXPECT_TRUE(t.active());
  crew::test::run_within(l);
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(t.active());
}

TEST(timer, timeouts_fire_in_order_of_their_deadlines) {
  crew::loop l;
  std::vector<int> order;
  crew::timer late = crew::set_timeout(30ms, [&] { order.push_back(30); }, l);
  crew::timer early = crew::set_timeout(5ms, [&] { order.push_back(5); }, l);
  crew::timer now = crew::set_timeout(0ms, [&] { order.push_back(0); }, l);
  crew::test::run_within(l);
  EXPECT_EQ(order, (std::vector<int>{0, 5, 30}));
}

TEST(timer, set_interval_repeats_until_stopped) {
  crew::loop l;
  int ticks = 0;
  crew::timer t(l);
  t = crew::set_interval(1ms, [&] {
    if (++ticks == 5) t.stop();
  }, l);
  crew::test::run_within(l);
  EXPECT_EQ(ticks, 5);
  EXPECT_FALSE(t.active());
}

TEST(timer, stop_cancels_a_pending_timeout_and_start_rearms_it) {
  crew::loop l;
  int fired = 0;
  crew::timer t = crew::set_timeout(1ms, [&] { ++fired; }, l);
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
  crew::timer t = crew::set_timeout(1ms, [token] {}, l);
  EXPECT_EQ(token.use_count(), 2);
  crew::test::run_within(l);
  EXPECT_EQ(token.use_count(), 1);
}

TEST(timer, the_default_loop_is_the_threads_current_loop) {
  std::thread([] {
    int fired = 0;
    crew::timer t = crew::set_timeout(1ms, [&] { ++fired; });
    crew::test::run_within(crew::loop::current());
    EXPECT_EQ(fired, 1);
  }).join();
}

}  // namespace
