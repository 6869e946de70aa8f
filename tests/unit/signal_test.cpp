#include "crew/signal.hpp"

#include <gtest/gtest.h>

#include <csignal>

#include "crew/timer.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

// Raises the signal from a loop callback, once the watchers are installed.
void raise_soon(crew::loop& l, int signum, crew::timer& t) {
  t = crew::scoped_timeout(1ms, [signum] { uv_kill(uv_os_getpid(), signum); }, l);
}

TEST(signal, a_watcher_receives_its_signal_on_the_loop) {
  crew::loop l;
  int received = 0;
  crew::signal_watcher w = crew::on_signal(SIGUSR1, [&](int signum) {
    received = signum;
    EXPECT_TRUE(l.in_loop_thread());
    w.stop();
  }, l);
  EXPECT_EQ(w.signum(), SIGUSR1);
  w.ref();  // keep the loop alive until the signal arrives
  crew::timer t(l);
  raise_soon(l, SIGUSR1, t);
  crew::test::run_within(l);
  EXPECT_EQ(received, SIGUSR1);
  EXPECT_EQ(w.signum(), 0);
}

TEST(signal, every_watcher_of_a_signal_is_called) {
  crew::loop l;
  int calls = 0;
  crew::signal_watcher a(l), b(l);
  ASSERT_FALSE(a.start(SIGUSR2, [&](int) { ++calls, a.stop(); }));
  ASSERT_FALSE(b.start(SIGUSR2, [&](int) { ++calls, b.stop(); }));
  a.ref();
  b.ref();
  crew::timer t(l);
  raise_soon(l, SIGUSR2, t);
  crew::test::run_within(l);
  EXPECT_EQ(calls, 2);
}

TEST(signal, a_oneshot_watcher_fires_once_and_stops) {
  crew::loop l;
  int calls = 0;
  crew::signal_watcher w(l);
  // A second watcher keeps the signal caught after the oneshot one is done, so
  // the second raise does not terminate the test process.
  crew::signal_watcher guard = crew::on_signal(SIGUSR1, [](int) {}, l);
  ASSERT_FALSE(w.start_oneshot(SIGUSR1, [&](int) { ++calls; }));
  w.ref();
  crew::timer first(l), second(l);
  raise_soon(l, SIGUSR1, first);
  second = crew::scoped_timeout(20ms, [] { uv_kill(uv_os_getpid(), SIGUSR1); }, l);
  crew::test::run_within(l);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(w.signum(), 0);
}

TEST(signal, an_invalid_signal_number_is_einval) {
  crew::loop l;
  crew::signal_watcher w(l);
  EXPECT_EQ(w.start(0, [](int) {}), std::errc::invalid_argument);
  EXPECT_EQ(w.start(100000, [](int) {}), std::errc::invalid_argument);
  EXPECT_THROW((void)crew::on_signal(-1, [](int) {}, l), std::system_error);
}

TEST(signal, a_watcher_does_not_keep_the_loop_alive_by_default) {
  crew::loop l;
  bool called = false;
  crew::signal_watcher w = crew::on_signal(SIGUSR1, [&](int) { called = true; }, l);
  EXPECT_FALSE(w.has_ref());
  crew::test::run_within(l, 1s);  // returns at once
  EXPECT_FALSE(called);
}

}  // namespace
