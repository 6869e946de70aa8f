// Pipe streams, exercised through `cat` children.
#include "crew/stream.hpp"

#include <gtest/gtest.h>

#include "crew/child_process.hpp"
#include "crew/timer.hpp"

#include <optional>
#include <vector>
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

TEST(stream, what_is_written_to_stdin_comes_back_through_cat) {
  crew::loop l;
  crew::child_process cat = crew::spawn("cat", {}, {}, l);
  std::string echoed;
  bool ended = false, closed = false;
  cat.out().on_data([&](std::string_view s) { echoed += s; });
  cat.out().on_end([&] { ended = true; });
  cat.out().on_close([&] { closed = true; });
  std::optional<std::error_code> written;
  EXPECT_TRUE(cat.in().write("hello ", [&](std::error_code ec) { written = ec; }));
  EXPECT_FALSE(written) << "done must not run inside write()";
  cat.in().write(crew::buffer(std::string_view("world")));
  cat.in().end();
  crew::test::run_within(l);
  EXPECT_EQ(echoed, "hello world");
  EXPECT_TRUE(ended && closed);
  EXPECT_EQ(written, std::error_code{});
}

TEST(stream, write_reports_back_pressure_and_drain_follows) {
  crew::loop l;
  crew::child_process cat = crew::spawn("cat", {}, {}, l);
  std::size_t received = 0;
  cat.out().on_data([&](std::string_view s) { received += s.size(); });
  cat.out().pause();  // cat blocks on its full stdout, so our writes pile up
  std::string chunk(64 * 1024, 'x');
  std::size_t sent = 0;
  int accepted = 0;
  while (cat.in().write(chunk) && accepted < 1000) sent += chunk.size(), ++accepted;
  sent += chunk.size();
  EXPECT_LT(accepted, 1000) << "write never reported a full queue";
  EXPECT_GE(cat.in().buffered(), crew::stream::high_water_mark);
  bool drained = false;
  cat.in().on_drain([&] {
    drained = true;
    cat.in().end();
  });
  crew::timer later = crew::scoped_timeout(20ms, [&] { cat.out().resume(); }, l);
  crew::test::run_within(l);
  EXPECT_TRUE(drained);
  EXPECT_EQ(received, sent);
}

TEST(stream, writing_to_a_child_that_exited_is_an_error_not_a_crash) {
  crew::loop l;
  crew::child_process child = crew::spawn("true", {}, {}, l);
  std::optional<std::error_code> error, done;
  child.in().on_error([&](std::error_code ec) { error = ec; });
  child.on_exit([&](crew::exit_status) {
    child.in().write(std::string(1 << 20, 'x'), [&](std::error_code ec) { done = ec; });
  });
  crew::test::run_within(l);
  ASSERT_TRUE(done);
  EXPECT_EQ(*done, std::errc::broken_pipe);
  EXPECT_EQ(error, done);
  EXPECT_FALSE(child.in().is_open());
}

TEST(stream, a_closed_stream_ignores_calls_and_fails_writes_on_the_loop) {
  crew::loop l;
  crew::stream none;
  none.pause();
  none.resume();
  none.end();
  std::optional<std::error_code> done;
  // The failure is posted to the calling thread's loop, which `l` is.
  ASSERT_EQ(&crew::loop::current(), &l);
  EXPECT_FALSE(none.write("x", [&](std::error_code ec) { done = ec; }));
  EXPECT_FALSE(done);
  crew::loop::keep_alive hold(l);
  l.post([&] { hold = {}; });
  crew::test::run_within(l);
  EXPECT_EQ(done, std::errc::broken_pipe);
}

TEST(stream, writes_still_queued_when_the_stream_closes_complete_with_ecanceled) {
  crew::loop l;
  crew::child_process cat = crew::spawn("cat", {}, {}, l);
  cat.out().pause();  // cat blocks on its full stdout, so our writes stay queued
  std::vector<std::error_code> outcomes;
  std::string chunk(256 * 1024, 'x');
  for (int i = 0; i < 16; ++i) cat.in().write(chunk, [&](std::error_code ec) { outcomes.push_back(ec); });
  crew::timer later = crew::scoped_timeout(20ms, [&] {
    cat.in().close();
    EXPECT_TRUE(outcomes.empty() || outcomes.back() != std::errc::operation_canceled)
        << "a completion ran inside close()";
    cat.out().resume();
  }, l);
  crew::test::run_within(l);
  ASSERT_EQ(outcomes.size(), 16u) << "every completion runs exactly once";
  EXPECT_EQ(outcomes.back(), std::errc::operation_canceled);
}

TEST(stream, an_error_found_inside_write_arrives_on_a_later_turn) {
  crew::loop l;
  crew::child_process child = crew::spawn("true", {}, {}, l);
  bool inside_write = false, error_inside = false;
  std::optional<std::error_code> error;
  child.in().on_error([&](std::error_code ec) {
    error = ec;
    error_inside = inside_write;
  });
  child.on_exit([&](crew::exit_status) {
    inside_write = true;
    child.in().write(std::string(1 << 20, 'x'));  // no completion: written at once, and fails at once
    inside_write = false;
  });
  crew::test::run_within(l);
  EXPECT_EQ(error, std::errc::broken_pipe);
  EXPECT_FALSE(error_inside) << "the error event ran inside write()";
}

}  // namespace
