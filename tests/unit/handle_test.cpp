// The handle-lifetime rule (detail/handle.hpp), exercised through timers.
// Run under ASan, these tests catch any use of a freed handle block.
#include "crew/detail/handle.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <optional>

#include "crew/signal.hpp"
#include "crew/timer.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

static_assert(std::is_nothrow_move_constructible_v<crew::timer>);
static_assert(std::is_nothrow_move_assignable_v<crew::timer>);
static_assert(!std::is_copy_constructible_v<crew::timer>);

TEST(handle, destroying_the_owner_before_the_event_cancels_the_callback) {
  crew::loop l;
  bool fired = false;
  {
    crew::timer t = crew::scoped_timeout(1ms, [&] { fired = true; }, l);
  }
  crew::test::run_within(l);
  EXPECT_FALSE(fired);
}

TEST(handle, a_callback_may_destroy_its_own_owner) {
  crew::loop l;
  auto owner = std::make_unique<crew::timer>(l);
  auto captured = std::make_shared<int>(42);
  int seen = 0;
  owner->start(1ms, 1ms, [&, captured] {
    seen = *captured;
    owner.reset();  // closes the timer while its callback runs
    seen += *captured;  // the running callback and its captures are still alive
  });
  crew::test::run_within(l);
  EXPECT_EQ(seen, 84);
  EXPECT_EQ(captured.use_count(), 1);  // the callback was freed once the handle closed
}

TEST(handle, a_callback_may_restart_its_timer_with_a_new_callback) {
  crew::loop l;
  crew::timer t(l);
  std::vector<std::string> calls;
  t.start(1ms, {}, [&] {
    calls.push_back("first");
    t.start(1ms, {}, [&] { calls.push_back("second"); });
    calls.push_back("first, after restart");
  });
  crew::test::run_within(l);
  EXPECT_EQ(calls, (std::vector<std::string>{"first", "first, after restart", "second"}));
}

TEST(handle, a_loop_destroyed_with_handles_open_closes_them_and_detaches_their_owners) {
  std::optional<crew::loop> l(std::in_place);
  crew::timer t = crew::scoped_interval(1ms, [] {}, *l);
  crew::signal_watcher w(*l);
  ASSERT_TRUE(t.is_open());
  l.reset();  // ASan would flag a leak of the blocks or a later touch of them
  EXPECT_FALSE(t.is_open());
  EXPECT_FALSE(w.is_open());
  t.stop();                                    // inert, not a crash
  t.start(1ms, 1ms, [] {});                   // ignored
  EXPECT_FALSE(t.active());
  EXPECT_EQ(w.start(SIGUSR1, [](int) {}), std::errc::bad_file_descriptor);
}

TEST(handle, moving_an_owner_moves_the_handle) {
  crew::loop l;
  int fired = 0;
  crew::timer a = crew::scoped_timeout(1ms, [&] { ++fired; }, l);
  crew::timer b = std::move(a);
  EXPECT_FALSE(a.is_open());  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(b.is_open());
  crew::timer c(l);
  c = std::move(b);  // c's own idle timer is closed, b's is taken
  crew::test::run_within(l);
  EXPECT_EQ(fired, 1);
}

TEST(handle, close_is_idempotent_and_unref_lets_the_loop_end) {
  crew::loop l;
  crew::timer t = crew::scoped_interval(1ms, [] {}, l);
  EXPECT_TRUE(t.has_ref());
  t.unref();
  EXPECT_FALSE(t.has_ref());
  crew::test::run_within(l);  // an unreferenced interval does not keep run() going
  t.close();
  t.close();
  EXPECT_FALSE(t.is_open());
}

}  // namespace
