#include "crew/shared_buffer.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "crew/child_process.hpp"
#include "crew/timer.hpp"
#include "crew/worker_threads.hpp"
#include "test_support.hpp"

namespace {

using crew::atomic_view;
using crew::shared_buffer;
using crew::wait_result;
using namespace std::chrono_literals;

TEST(shared_buffer, starts_zeroed_and_copies_share_the_same_bytes) {
  shared_buffer a(64);
  ASSERT_EQ(a.size(), 64u);
  for (std::byte b : a.bytes()) EXPECT_EQ(b, std::byte{0});
  shared_buffer b = a;
  b.data()[3] = std::byte{42};
  EXPECT_EQ(a.data()[3], std::byte{42});
  EXPECT_TRUE(a == b);
  EXPECT_GE(a.fd(), 0);
  EXPECT_EQ(shared_buffer().fd(), -1);
}

TEST(shared_buffer, from_fd_maps_the_same_memory_and_rejects_what_is_not_a_file) {
  shared_buffer a(16);
  auto b = shared_buffer::from_fd(dup(a.fd()));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->size(), 16u);
  atomic_view<std::int32_t>(a).store(2, 7);
  EXPECT_EQ(atomic_view<std::int32_t>(*b).load(2), 7);

  int ends[2];
  ASSERT_EQ(pipe(ends), 0);
  close(ends[1]);
  EXPECT_EQ(shared_buffer::from_fd(ends[0]).error(), std::errc::invalid_argument);
  EXPECT_EQ(shared_buffer::from_fd(-1).error(), std::errc::bad_file_descriptor);
}

TEST(atomic_view, every_operation_returns_what_atomics_return) {
  shared_buffer memory(32);
  atomic_view<std::int32_t> v(memory);
  EXPECT_EQ(v.size(), 8u);
  EXPECT_EQ(v.store(0, 5), 5);
  EXPECT_EQ(v.add(0, 3), 5);
  EXPECT_EQ(v.sub(0, 2), 8);
  EXPECT_EQ(v.load(0), 6);
  EXPECT_EQ(v.bit_and(0, 0b100), 6);
  EXPECT_EQ(v.bit_or(0, 0b011), 4);
  EXPECT_EQ(v.bit_xor(0, 0b001), 7);
  EXPECT_EQ(v.exchange(0, 100), 6);
  EXPECT_EQ(v.compare_exchange(0, 99, 1), 100);  // no match: unchanged
  EXPECT_EQ(v.compare_exchange(0, 100, 1), 100);
  EXPECT_EQ(v.load(0), 1);

  atomic_view<std::int64_t> wide(memory, 8, 2);
  EXPECT_EQ(wide.size(), 2u);
  wide.store(1, std::int64_t{1} << 40);
  EXPECT_EQ(wide.add(1, 1), std::int64_t{1} << 40);
  EXPECT_EQ(wide.load(1), (std::int64_t{1} << 40) + 1);
}

TEST(atomic_view, bounds_and_alignment_are_checked) {
  shared_buffer memory(16);
  atomic_view<std::int32_t> v(memory);
  EXPECT_THROW(v.load(4), std::out_of_range);
  EXPECT_THROW(atomic_view<std::int64_t>(memory, 4), std::invalid_argument);
  EXPECT_THROW(atomic_view<std::int32_t>(memory, 8, 3), std::out_of_range);
  EXPECT_THROW(atomic_view<std::int32_t>(memory, 20), std::out_of_range);
}

TEST(atomic_view, wait_reports_not_equal_and_timed_out) {
  shared_buffer memory(8);
  atomic_view<std::int32_t> v(memory);
  v.store(0, 1);
  EXPECT_EQ(v.wait(0, 0, 1s), wait_result::not_equal);
  EXPECT_EQ(v.wait(0, 1, 20ms), wait_result::timed_out);
  EXPECT_EQ(v.notify(0), 0);  // nobody waits
}

TEST(atomic_view, notify_wakes_a_waiting_thread_and_counts_it) {
  shared_buffer memory(8);
  atomic_view<std::int32_t> v(memory);
  wait_result result = wait_result::timed_out;
  std::thread waiter([&] { result = v.wait(0, 0, 60s); });
  int woken = 0;
  while (woken == 0) {  // until the waiter is asleep and this wakes it
    woken = v.notify(0, 1);
    std::this_thread::sleep_for(1ms);
  }
  waiter.join();
  EXPECT_EQ(woken, 1);
  EXPECT_EQ(result, wait_result::ok);
}

TEST(atomic_view, counts_exactly_under_contention_between_threads) {
  shared_buffer memory(8);
  atomic_view<std::int64_t> counter(memory);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([counter] {
      for (int i = 0; i < 100000; ++i) counter.add(0, 1);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter.load(0), 400000);
}

TEST(atomic_view, wait_and_notify_work_between_processes_over_the_ipc_channel) {
  crew::loop loop;
  shared_buffer memory(8);
  atomic_view<std::int32_t> cells(memory);
  crew::child_process child = crew::fork(CREW_FIXTURE, {"shared"}, {}, loop);
  std::vector<std::string> answers;
  crew::timer notifier(loop);
  child.on_message([&](crew::message m) {
    answers.push_back(m.get<std::string>());
    if (answers.back() == "added") {
      // The child now sleeps on cell 1 (or is about to): notify until it wakes.
      notifier.start(1ms, 1ms, [&] {
        if (cells.notify(1) > 0) notifier.stop();
      });
    }
  });
  crew::message m(crew::message::value_type{{"adds", 10000}});
  m.fds().push_back(memory.fd());
  child.send(std::move(m));
  cells.add(0, 5);
  crew::test::run_within(loop, 30s);
  EXPECT_EQ(answers, (std::vector<std::string>{"added", "woke"}));
  EXPECT_EQ(cells.load(0), 10005);
}

TEST(atomic_view, terminate_ends_a_worker_blocked_in_wait) {
  crew::loop loop;
  shared_buffer memory(8);
  wait_result seen = wait_result::ok;
  crew::worker w([memory, &seen] {
    EXPECT_FALSE(crew::parent_port()->post_message("about to wait"));
    seen = atomic_view<std::int32_t>(memory).wait(0, 0);
  });
  w.on_message([&](crew::message) { w.terminate(); });
  int code = -1;
  w.on_exit([&](int c) { code = c; });
  crew::test::run_within(loop);
  EXPECT_EQ(seen, wait_result::stopped);
  EXPECT_EQ(code, 1);
}

}  // namespace
