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


// A reader that comes late loses nothing (Node keeps unread output too).

// The lines of `seq 1 n`.
std::string numbers_up_to(int n) {
  std::string text;
  for (int i = 1; i <= n; ++i) text += std::to_string(i) + "\n";
  return text;
}

// Spawns `seq 1 n`, runs the loop until the child's close event (nobody reads
// meanwhile), then reads its stdout; returns what came, and whether on_end
// followed the bytes.
std::pair<std::string, bool> read_after_close(int n) {
  crew::loop l;
  crew::child_process seq = crew::spawn("seq", {"1", std::to_string(n)}, {}, l);
  std::optional<crew::exit_status> closed;
  seq.on_close([&](crew::exit_status s) { closed = s; });
  crew::test::run_within(l);
  EXPECT_EQ(closed, (crew::exit_status{0, 0})) << "the close event comes though nobody read";
  std::string read;
  bool ended = false;
  seq.out().on_end([&] { ended = !read.empty(); });
  seq.out().on_data([&](std::string_view s) { read += s; });
  EXPECT_TRUE(read.empty()) << "kept bytes come on a later turn, not inside on_data";
  crew::test::run_within(l);
  EXPECT_FALSE(seq.out().is_open()) << "the pipe closes after its end";
  return {read, ended};
}

TEST(stream, a_reader_set_after_the_child_wrote_and_exited_gets_every_byte_then_the_end) {
  auto [read, ended] = read_after_close(3);
  EXPECT_EQ(read, numbers_up_to(3));
  EXPECT_TRUE(ended);
}

TEST(stream, output_past_the_high_water_mark_left_by_an_exited_child_is_kept_too) {
  // 108,894 bytes: more than is kept while the child runs, less than that
  // plus what even a pipe of the default size (64 KiB) holds.
  auto [read, ended] = read_after_close(20000);
  ASSERT_GT(numbers_up_to(20000).size(), crew::stream::high_water_mark);
  EXPECT_EQ(read.size(), numbers_up_to(20000).size());
  EXPECT_TRUE(read == numbers_up_to(20000));
  EXPECT_TRUE(ended);
}

TEST(stream, a_reader_set_a_while_after_spawn_gets_the_first_line) {
  crew::loop l;
  crew::child_process child = crew::spawn("sh", {"-c", "echo first; sleep 0.3; echo second"}, {}, l);
  std::string read;
  // As in the trial that found the bug: on_data set a while after spawn, once
  // the first line has come (kept, with no reader) or the child has exited.
  crew::timer later = crew::scoped_interval(5ms, [&] {
    if (child.out().readable_length() == 0 && !child.status()) return;
    later.stop();
    child.out().on_data([&](std::string_view s) { read += s; });
  }, l);
  crew::test::run_within(l);
  EXPECT_EQ(read, "first\nsecond\n");
}

TEST(stream, a_child_writing_more_than_the_high_water_mark_blocks_until_read) {
  crew::loop l;
  constexpr long total = 8 << 20;  // more than what is kept plus what the pipe holds
  crew::child_process child =
      crew::spawn(CREW_FIXTURE, {"flood", std::to_string(total)}, {}, l);
  std::size_t received = 0;
  std::optional<crew::exit_status> closed;
  child.on_close([&](crew::exit_status s) { closed = s; });
  // Nobody reads: the stream keeps exactly high_water_mark bytes and stops
  // reading, and the child, which has more to write than the pipe holds, cannot
  // have finished. Checked on a few ticks once the stream is full.
  int full_ticks = 0;
  crew::timer poll(l);
  poll.start(10ms, 10ms, [&] {
    if (child.out().readable_length() < crew::stream::high_water_mark) return;
    EXPECT_EQ(child.out().readable_length(), crew::stream::high_water_mark);
    EXPECT_FALSE(child.status()) << "the child finished writing with nobody reading";
    if (++full_ticks < 5) return;
    poll.stop();
    child.out().on_data([&](std::string_view s) { received += s.size(); });
  });
  crew::test::run_within(l);
  EXPECT_EQ(full_ticks, 5);
  EXPECT_EQ(received, static_cast<std::size_t>(total));
  EXPECT_EQ(closed, (crew::exit_status{0, 0}));
}

TEST(stream, a_paused_stream_delivers_nothing_and_resume_delivers_what_was_kept_first) {
  crew::loop l;
  crew::child_process seq = crew::spawn("seq", {"1", "20000"}, {}, l);
  std::string read;
  int paused_ticks = 0;
  crew::timer poll(l);
  poll.start(10ms, 10ms, [&] {
    if (paused_ticks == 0) {
      if (seq.out().readable_length() == 0) return;  // nothing read ahead yet
      seq.out().pause();
      seq.out().on_data([&](std::string_view s) { read += s; });
    }
    EXPECT_TRUE(read.empty()) << "a paused stream delivered";
    if (++paused_ticks < 5) return;
    poll.stop();
    seq.out().resume();
  });
  crew::test::run_within(l);
  EXPECT_EQ(paused_ticks, 5);
  EXPECT_TRUE(read == numbers_up_to(20000));
}

TEST(stream, resume_without_a_reader_drops_the_output_as_node_does) {
  crew::loop l;
  crew::child_process child = crew::spawn(CREW_FIXTURE, {"flood", std::to_string(8 << 20)}, {}, l);
  child.out().resume();  // more than kept plus the pipe: only dropping it lets the child finish
  bool ended = false;
  child.out().on_end([&] { ended = true; });
  std::optional<crew::exit_status> closed;
  child.on_close([&](crew::exit_status s) { closed = s; });
  crew::test::run_within(l);
  EXPECT_TRUE(ended);
  EXPECT_EQ(closed, (crew::exit_status{0, 0}));
}

}  // namespace
