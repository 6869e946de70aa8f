#include "crew/loop.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "crew/timer.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

TEST(loop, current_is_one_loop_per_thread) {
  crew::loop& here = crew::loop::current();
  EXPECT_EQ(&here, &crew::loop::current());
  crew::loop* there = nullptr;
  std::thread([&] { there = &crew::loop::current(); }).join();
  EXPECT_NE(there, &here);
}

TEST(loop, the_first_loop_made_on_a_thread_becomes_its_current_loop) {
  std::thread([] {
    crew::loop mine;
    EXPECT_EQ(&crew::loop::current(), &mine);
    EXPECT_TRUE(mine.in_loop_thread());
  }).join();
}

TEST(loop, run_returns_at_once_when_nothing_keeps_it_alive) {
  crew::loop l;
  EXPECT_FALSE(l.alive());
  crew::test::run_within(l, 1s);
}

TEST(loop, a_post_runs_after_the_posting_call_returns_never_inside_it) {
  crew::loop l;
  crew::loop::keep_alive hold(l);
  std::vector<int> order;
  l.post([&] {
    order.push_back(2);
    hold = {};
  });
  order.push_back(1);
  crew::test::run_within(l);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

// A post alone lets run() return before it ran; later() keeps run() going
// until its function has run, never inside the call.
TEST(loop, later_keeps_the_loop_running_until_its_function_has_run) {
  crew::loop l;
  int posted = 0, later = 0;
  l.post([&] { ++posted; });
  l.later([&] { ++later; });
  EXPECT_EQ(later, 0);
  crew::test::run_within(l);
  EXPECT_EQ(later, 1);
  EXPECT_EQ(posted, 1);  // drained with it
}

TEST(loop, posts_from_one_thread_run_in_order) {
  crew::loop l;
  crew::loop::keep_alive hold(l);
  std::vector<int> seen;
  std::thread producer([&] {
    for (int i = 0; i < 10000; ++i) l.post([&seen, i] { seen.push_back(i); });
    l.post([&] { hold = {}; });
  });
  crew::test::run_within(l);
  producer.join();
  ASSERT_EQ(seen.size(), 10000u);
  for (int i = 0; i < 10000; ++i) ASSERT_EQ(seen[i], i);
}

TEST(loop, posts_from_many_threads_at_once_all_run_on_the_loop_thread) {
  crew::loop l;
  constexpr int threads = 8, each = 5000;
  crew::loop::keep_alive hold(l);
  int ran = 0;  // loop thread only: no atomic needed, TSan checks that claim
  bool all_on_loop_thread = true;
  std::atomic<int> finished{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < threads; ++t)
    producers.emplace_back([&] {
      for (int i = 0; i < each; ++i)
        l.post([&] {
          ++ran;
          all_on_loop_thread = all_on_loop_thread && l.in_loop_thread();
        });
      if (finished.fetch_add(1) + 1 == threads) l.post([&] { hold = {}; });
    });
  crew::test::run_within(l);
  for (auto& p : producers) p.join();
  EXPECT_EQ(ran, threads * each);
  EXPECT_TRUE(all_on_loop_thread);
}

TEST(loop, keep_alive_holds_run_until_released_from_another_thread) {
  crew::loop l;
  crew::loop::keep_alive hold(l);
  std::atomic<bool> released{false};
  std::thread other([&] {
    std::this_thread::sleep_for(20ms);
    released = true;
    crew::loop::keep_alive gone = std::move(hold);  // released when it leaves scope
  });
  crew::test::run_within(l);
  EXPECT_TRUE(released);
  other.join();
}

TEST(loop, an_exception_from_a_callback_stops_the_loop_and_leaves_run) {
  crew::loop l;
  bool later_timer_ran = false;
  l.post([] { throw std::runtime_error("boom"); });
  crew::loop::keep_alive hold(l);
  crew::timer later = crew::scoped_timeout(50ms, [&] { later_timer_ran = true; }, l);
  EXPECT_THROW(l.run(), std::runtime_error);
  EXPECT_FALSE(later_timer_ran);
  // The loop is still usable afterwards.
  hold = {};
  crew::test::run_within(l);
  EXPECT_TRUE(later_timer_ran);
}

TEST(loop, posts_never_run_are_destroyed_with_the_loop) {
  auto token = std::make_shared<int>(0);
  bool ran = false;
  {
    crew::loop l;
    l.post([token, &ran] { ran = true; });
    EXPECT_EQ(token.use_count(), 2);
  }
  EXPECT_FALSE(ran);
  EXPECT_EQ(token.use_count(), 1);
}

TEST(loop, stop_makes_run_return_while_handles_are_active) {
  crew::loop l;
  int ticks = 0;
  crew::timer t = crew::scoped_interval(1ms, [&] {
    if (++ticks == 3) l.stop();
  }, l);
  crew::test::run_within(l);
  EXPECT_EQ(ticks, 3);
  EXPECT_TRUE(t.active());
}

TEST(loop, run_once_reports_whether_work_remains) {
  crew::loop l;
  bool fired = false;
  crew::timer t = crew::scoped_timeout(1ms, [&] { fired = true; }, l);
  while (l.run_once()) {
  }
  EXPECT_TRUE(fired);
}

}  // namespace
