#include "crew/work.hpp"

#include <gtest/gtest.h>

#include <optional>

#include <atomic>
#include <future>
#include <stdexcept>
#include <thread>

#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;

// Known pool size, so that tests can occupy every pool thread. libuv reads the
// variable when the pool starts, at the first queue_work of the process.
const bool pool_sized = [] { return setenv("UV_THREADPOOL_SIZE", "2", 1) == 0; }();

TEST(queue_work, runs_the_job_on_a_pool_thread_and_completes_on_the_loop) {
  ASSERT_TRUE(pool_sized);
  crew::loop l;
  std::thread::id job_thread;
  std::optional<crew::result<int>> outcome;
  bool completed_on_loop = false;
  (void)crew::queue_work(
      [&] {
        job_thread = std::this_thread::get_id();
        return 6 * 7;
      },
      [&](crew::result<int> r) {
        completed_on_loop = l.in_loop_thread();
        outcome.emplace(std::move(r));
      },
      l);
  EXPECT_FALSE(outcome) << "the completion must not run inside queue_work";
  crew::test::run_within(l);
  ASSERT_TRUE(outcome && *outcome);
  EXPECT_EQ(**outcome, 42);
  EXPECT_NE(job_thread, std::this_thread::get_id());
  EXPECT_TRUE(completed_on_loop);
}

TEST(queue_work, a_void_job_completes_with_success) {
  crew::loop l;
  std::atomic<bool> ran{false};
  std::optional<std::error_code> status;
  (void)crew::queue_work([&] { ran = true; }, [&](std::error_code ec) { status = ec; }, l);
  crew::test::run_within(l);
  ASSERT_TRUE(status);
  EXPECT_FALSE(*status);
  EXPECT_TRUE(ran);
}

TEST(queue_work, a_job_still_queued_can_be_cancelled) {
  crew::loop l;
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::atomic<int> blockers_started{0};
  int blockers_done = 0;
  // Occupy both pool threads, so the next job waits in the queue.
  for (int i = 0; i < 2; ++i)
    (void)crew::queue_work([&, gate] { ++blockers_started, gate.wait(); },
                           [&](std::error_code ec) { blockers_done += !ec; }, l);
  while (blockers_started < 2) std::this_thread::yield();

  std::atomic<bool> queued_job_ran{false};
  std::optional<crew::result<int>> outcome;
  crew::work queued = crew::queue_work([&] { return queued_job_ran = true, 1; },
                                       [&](crew::result<int> r) { outcome.emplace(std::move(r)); }, l);
  EXPECT_FALSE(queued.cancel());
  EXPECT_EQ(queued.cancel(), std::errc::device_or_resource_busy) << "a second cancel finds nothing to cancel";
  release.set_value();
  crew::test::run_within(l);
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->error(), std::errc::operation_canceled);
  EXPECT_EQ(crew::error_name(outcome->error()), "ECANCELED");
  EXPECT_FALSE(queued_job_ran);
  EXPECT_EQ(blockers_done, 2);
}

TEST(queue_work, cancelling_a_finished_job_is_ebusy) {
  crew::loop l;
  crew::work job = crew::queue_work([] {}, [](std::error_code) {}, l);
  crew::test::run_within(l);
  EXPECT_EQ(job.cancel(), std::errc::device_or_resource_busy);
  EXPECT_EQ(crew::work().cancel(), std::errc::invalid_argument);
}

TEST(queue_work, an_exception_in_the_job_arrives_in_done_as_an_error_with_the_exception) {
  crew::loop l;
  std::optional<crew::result<int>> outcome;
  (void)crew::queue_work([]() -> int { throw std::runtime_error("job failed"); },
                         [&](crew::result<int> r) { outcome.emplace(std::move(r)); }, l);
  std::optional<std::error_code> void_outcome;
  (void)crew::queue_work([] { throw 42; }, [&](std::error_code ec) { void_outcome = ec; }, l);
  EXPECT_NO_THROW(crew::test::run_within(l));
  ASSERT_TRUE(outcome);
  EXPECT_EQ(crew::error_name(outcome->error()), "ERR_UNCAUGHT_EXCEPTION");
  ASSERT_TRUE(outcome->exception());
  EXPECT_THROW((void)outcome->value(), std::runtime_error) << "value() rethrows what the job threw";
  EXPECT_EQ(crew::error_name(void_outcome.value_or(std::error_code{})), "ERR_UNCAUGHT_EXCEPTION");
}

TEST(queue_work, many_jobs_all_complete_with_their_own_results) {
  crew::loop l;
  constexpr int jobs = 1000;
  long long sum = 0;
  int completed = 0;
  for (int i = 0; i < jobs; ++i)
    (void)crew::queue_work([i] { return static_cast<long long>(i) * i; },
                           [&](crew::result<long long> r) { sum += r.value(), ++completed; }, l);
  crew::test::run_within(l);
  EXPECT_EQ(completed, jobs);
  EXPECT_EQ(sum, 332833500LL);  // sum of i*i for i < 1000
}

TEST(queue_work, jobs_carry_move_only_results) {
  crew::loop l;
  std::unique_ptr<std::string> got;
  (void)crew::queue_work([] { return std::make_unique<std::string>("moved"); },
                         [&](crew::result<std::unique_ptr<std::string>> r) { got = std::move(r).value(); }, l);
  crew::test::run_within(l);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "moved");
}

}  // namespace
