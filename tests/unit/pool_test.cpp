#include "crew/pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <set>
#include <thread>
#include <vector>

#include "crew/child_process.hpp"
#include "crew/timer.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew::message;
using crew::result;

// A task that waits until its run is stopped (or 60 s pass), then says whether it was.
message wait_for_stop(message, const crew::task_context& context) {
  for (auto end = std::chrono::steady_clock::now() + 60s; !context.stop.stop_requested();) {
    if (std::chrono::steady_clock::now() > end) return "never stopped";
    std::this_thread::sleep_for(1ms);
  }
  return "stopped";
}

// Holds the pool's threads busy until open() is called (from any thread).
struct gate {
  std::atomic<bool> opened{false};
  std::atomic<int> waiting{0};
  crew::pool_task task() {
    return [this](message m) {
      ++waiting;
      while (!opened) std::this_thread::sleep_for(1ms);
      return m;
    };
  }
  void open() { opened = true; }
};

std::string name_of(const result<message>& r) { return r ? "ok" : crew::error_name(r.error()); }

TEST(pool, runs_each_named_task_on_a_pool_thread_and_answers_on_the_calling_loop) {
  crew::loop loop;
  std::thread::id loop_thread = std::this_thread::get_id();
  std::set<std::thread::id> task_threads;
  std::mutex seen;
  crew::pool pool({{"square", [&](message m) {
                      std::lock_guard lock(seen);
                      task_threads.insert(std::this_thread::get_id());
                      return m.get<long>() * m.get<long>();
                    }},
                   {"greet", [](message m) { return "hello " + m.get<std::string>(); }}},
                  {.max_threads = 2});
  std::vector<long> squares;
  std::string greeting;
  bool inside_run = true;
  for (long i = 1; i <= 3; ++i)
    pool.run(i, {.task = "square"}, [&](result<message> r) {
      EXPECT_FALSE(inside_run);
      EXPECT_EQ(std::this_thread::get_id(), loop_thread);
      squares.push_back(r.value().get<long>());
    });
  pool.run("crew", {.task = "greet"}, [&](result<message> r) { greeting = r.value().get<std::string>(); });
  inside_run = false;
  crew::test::run_within(loop);
  std::sort(squares.begin(), squares.end());
  EXPECT_EQ(squares, (std::vector<long>{1, 4, 9}));
  EXPECT_EQ(greeting, "hello crew");
  EXPECT_FALSE(task_threads.empty());
  EXPECT_FALSE(task_threads.count(loop_thread));
}

TEST(pool, a_pool_of_one_function_runs_it_without_a_name) {
  crew::loop loop;
  crew::pool pool([](message m) { return m.get<int>() + 1; });
  int got = 0;
  pool.run(41, {}, [&](result<message> r) { got = r.value().get<int>(); });
  crew::test::run_within(loop);
  EXPECT_EQ(got, 42);
}

// A task's failure is the run's: a thrown exception (ERR_UNCAUGHT_EXCEPTION,
// with the exception), or the error of the crew::result it returns.
TEST(pool, each_failure_is_an_error_value_with_its_name_never_inside_run) {
  crew::loop loop;
  crew::pool pool({{"throws", [](message) -> message { throw std::runtime_error("bad input"); }},
                   {"get", [](message m) { return m.get<int>(); }},
                   {"fails", [](message) -> result<int> { return crew::uv_error(UV_ENOENT); }}});
  std::vector<std::string> errors;
  bool inside_run = true;
  auto record = [&](result<message> r) {
    EXPECT_FALSE(inside_run);
    errors.push_back(name_of(r));
    if (r.exception()) {
      try {
        std::rethrow_exception(r.exception());
      } catch (const std::system_error& e) {
        errors.push_back(crew::error_name(e.code()));
      } catch (const std::runtime_error& e) {
        errors.push_back(e.what());
      }
    }
  };
  pool.run(1, {.task = "no such task"}, record);
  pool.run(1, {.task = "throws"}, record);
  pool.run("not a number", {.task = "get"}, record);
  pool.run(0, {.task = "fails"}, record);
  inside_run = false;
  crew::test::run_within(loop);
  std::multiset<std::string> got(errors.begin(), errors.end());
  EXPECT_EQ(got, (std::multiset<std::string>{"ERR_POOL_UNKNOWN_TASK", "ERR_UNCAUGHT_EXCEPTION", "bad input",
                                             "ERR_UNCAUGHT_EXCEPTION", "ERR_INVALID_MESSAGE", "ENOENT"}));
}

// A running task past its timeout: ETIMEDOUT at once, and the task sees its
// stop token; a queued one is taken off the queue and never runs. The other
// tasks go on.
TEST(pool, a_timeout_fails_the_run_stops_a_running_task_and_drops_a_queued_one) {
  crew::loop loop;
  std::atomic<int> ran_queued{0};
  std::atomic<bool> saw_stop{false}, started{false};
  crew::pool pool({{"wait", [&](message m, const crew::task_context& c) {
                      started = true;
                      message said = wait_for_stop(std::move(m), c);
                      saw_stop = said.get<std::string>() == "stopped";
                      return said;
                    }},
                   {"count", [&](message) { return ++ran_queued; }},
                   {"echo", [](message m) { return m; }}},
                  {.min_threads = 1, .max_threads = 1});
  std::vector<std::string> outcomes;
  pool.run(0, {.task = "wait", .timeout = 200ms}, [&](result<message> r) { outcomes.push_back("wait " + name_of(r)); });
  pool.run(0, {.task = "count", .timeout = 20ms}, [&](result<message> r) { outcomes.push_back("count " + name_of(r)); });
  pool.run(7, {.task = "echo"}, [&](result<message> r) { outcomes.push_back("echo " + std::to_string(r.value().get<int>())); });
  // The timeouts fire from the loop: once "wait" runs (however slow the machine), its timeout finds it running.
  while (!started) std::this_thread::sleep_for(1ms);
  crew::test::run_within(loop);
  EXPECT_EQ(outcomes, (std::vector<std::string>{"count ETIMEDOUT", "wait ETIMEDOUT", "echo 7"}));
  EXPECT_EQ(ran_queued, 0);
  EXPECT_TRUE(saw_stop);
}

// A stop request cancels a run: a queued task never runs; a running one sees
// its token. Each completes once, with ECANCELED.
TEST(pool, a_stop_token_cancels_a_queued_run_and_stops_a_running_one) {
  crew::loop loop;
  std::atomic<int> queued_ran{0};
  std::atomic<bool> saw_stop{false}, started{false};
  crew::pool pool({{"wait", [&](message m, const crew::task_context& c) {
                      started = true;
                      saw_stop = wait_for_stop(std::move(m), c).get<std::string>() == "stopped";
                      return 0;
                    }},
                   {"count", [&](message) { return ++queued_ran; }}},
                  {.min_threads = 1, .max_threads = 1});
  std::stop_source running, queued, before;
  before.request_stop();
  std::vector<std::string> outcomes;
  pool.run(0, {.task = "wait"}, [&](result<message> r) { outcomes.push_back("running " + name_of(r)); },
           running.get_token());
  pool.run(0, {.task = "count"}, [&](result<message> r) { outcomes.push_back("queued " + name_of(r)); },
           queued.get_token());
  pool.run(0, {.task = "count"}, [&](result<message> r) { outcomes.push_back("stopped before " + name_of(r)); },
           before.get_token());
  crew::timer later(loop);
  later.start(5ms, 5ms, [&] {
    if (!started) return;  // once the first task runs, however slow the machine
    later.stop();
    queued.request_stop();
    std::thread([&] { running.request_stop(); }).join();  // from another thread
  });
  crew::test::run_within(loop);
  pool.close();
  crew::test::run_within(loop);  // close's done comes once the running task has returned
  std::multiset<std::string> got(outcomes.begin(), outcomes.end());
  EXPECT_EQ(got, (std::multiset<std::string>{"running ECANCELED", "queued ECANCELED", "stopped before ECANCELED"}));
  EXPECT_EQ(queued_ran, 0);
  EXPECT_TRUE(saw_stop);
}

TEST(pool, higher_priorities_run_first_and_equal_ones_in_order) {
  crew::loop loop;
  gate g;
  std::mutex order_mutex;
  std::vector<int> order;
  crew::pool pool({{"gate", g.task()}, {"note", [&](message m) {
                                          std::lock_guard lock(order_mutex);
                                          order.push_back(m.get<int>());
                                          return 0;
                                        }}},
                  {.min_threads = 1, .max_threads = 1});
  pool.run(0, {.task = "gate"}, [](result<message>) {});
  for (auto [value, priority] : {std::pair{1, 0}, {2, 5}, {3, 0}, {4, 9}, {5, 5}})
    pool.run(value, {.task = "note", .priority = priority}, [](result<message>) {});
  g.open();
  crew::test::run_within(loop);
  EXPECT_EQ(order, (std::vector<int>{4, 2, 5, 1, 3}));
}

TEST(pool, past_max_queue_a_run_fails_with_err_queue_full_and_auto_is_max_threads_squared) {
  for (std::size_t max_queue : {std::size_t{3}, crew::pool_options::auto_queue}) {
    crew::loop loop;
    gate g;
    crew::pool pool({{"gate", g.task()}}, {.min_threads = 2, .max_threads = 2, .max_queue = max_queue});
    std::size_t limit = max_queue == crew::pool_options::auto_queue ? 4 : max_queue;
    std::vector<std::string> outcomes;
    auto record = [&](result<message> r) { outcomes.push_back(name_of(r)); };
    pool.run(0, {.task = "gate"}, record);
    pool.run(0, {.task = "gate"}, record);
    for (std::size_t i = 0; i < limit + 1; ++i) {
      // The two running ones leave the queue first: wait until both threads hold one.
      while (i == 0 && g.waiting < 2) std::this_thread::sleep_for(1ms);
      pool.run(0, {.task = "gate"}, record);
    }
    EXPECT_EQ(pool.stats().queue_size, limit);
    crew::timer opener(loop);
    opener.start(10ms, {}, [&] { g.open(); });
    crew::test::run_within(loop);
    EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "ok"), static_cast<long>(limit + 2));
    EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "ERR_QUEUE_FULL"), 1);
  }
}

// A burst on an idle pool: the runs its threads take at once (started or not
// yet) do not count against max_queue, as piscina's do not.
TEST(pool, a_burst_on_an_idle_pool_counts_only_what_waits_for_a_thread_against_max_queue) {
  crew::loop loop;
  gate g;
  crew::pool pool({{"gate", g.task()}}, {.max_threads = 1, .max_queue = crew::pool_options::auto_queue});
  std::vector<std::string> outcomes;
  for (int i = 0; i < 3; ++i) pool.run(0, {.task = "gate"}, [&](result<message> r) { outcomes.push_back(name_of(r)); });
  g.open();
  crew::test::run_within(loop);
  std::sort(outcomes.begin(), outcomes.end());
  EXPECT_EQ(outcomes, (std::vector<std::string>{"ERR_QUEUE_FULL", "ok", "ok"}));  // one running, one waiting
}

// close(): what was sent still runs; what comes after fails; done once, after the last.
TEST(pool, close_lets_the_queue_drain_refuses_new_runs_and_completes_once) {
  crew::loop loop;
  crew::pool pool([](message m) {
    std::this_thread::sleep_for(2ms);
    return m;
  }, {.max_threads = 2});
  std::vector<std::string> outcomes;
  int closed = 0;
  for (int i = 0; i < 10; ++i) pool.run(i, {}, [&](result<message> r) { outcomes.push_back(name_of(r)); });
  pool.close([&] {
    ++closed;
    EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "ok"), 10);
  });
  pool.run(99, {}, [&](result<message> r) { outcomes.push_back(name_of(r)); });
  crew::test::run_within(loop);
  EXPECT_EQ(closed, 1);
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "ok"), 10);
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "ERR_POOL_CLOSED"), 1);
}

// destroy(), or destroying the pool object: every run not complete gets
// ECANCELED once; a running task sees its stop token; destroy's done comes once
// they have returned.
TEST(pool, destroy_cancels_what_is_queued_or_running_and_completes_once) {
  for (bool by_destructor : {false, true}) {
    SCOPED_TRACE(by_destructor ? "destructor" : "destroy()");
    crew::loop loop;
    auto pool = std::make_unique<crew::pool>(wait_for_stop, crew::pool_options{.min_threads = 2, .max_threads = 2});
    std::vector<std::string> outcomes;
    for (int i = 0; i < 6; ++i) pool->run(i, {}, [&](result<message> r) { outcomes.push_back(name_of(r)); });
    int destroyed = 0;
    crew::timer later(loop);
    later.start(10ms, {}, [&] {
      if (by_destructor)
        pool.reset();
      else
        pool->destroy([&] { ++destroyed; });
    });
    crew::test::run_within(loop);
    EXPECT_EQ(outcomes, std::vector<std::string>(6, "ECANCELED"));
    EXPECT_EQ(destroyed, by_destructor ? 0 : 1);
    if (pool) {
      pool->run(1, {}, [&](result<message> r) { outcomes.push_back(name_of(r)); });
      crew::test::run_within(loop);
      EXPECT_EQ(outcomes.back(), "ERR_POOL_CLOSED");
    }
  }
}

// A pool destroyed while a run's timeout is armed: the run completes once,
// with ECANCELED, and its timer, due before the loop hears of the
// cancellation, finds the pool gone (the sanitizer builds check).
TEST(pool, a_timeout_due_after_the_pool_is_destroyed_completes_the_run_once_with_ecanceled) {
  crew::loop loop;
  auto pool = std::make_unique<crew::pool>(wait_for_stop, crew::pool_options{.min_threads = 1, .max_threads = 1});
  std::vector<std::string> outcomes;
  pool->run(0, {.timeout = 1ms}, [&](result<message> r) { outcomes.push_back(name_of(r)); });
  std::this_thread::sleep_for(5ms);  // the timer is due before the loop runs again
  pool.reset();
  crew::test::run_within(loop);
  EXPECT_EQ(outcomes, std::vector<std::string>{"ECANCELED"});
}

TEST(pool, a_task_sees_the_worker_data_and_its_threads_number) {
  crew::loop loop;
  crew::pool pool([](message, const crew::task_context& c) { return message::value_type{c.worker_data, c.thread}; },
                  {.min_threads = 2, .max_threads = 2, .worker_data = {{"model", "small"}}});
  std::set<int> threads;
  for (int i = 0; i < 20; ++i)
    pool.run(i, {}, [&](result<message> r) {
      EXPECT_EQ(r->value()[0]["model"], "small");
      threads.insert(r->value()[1].get<int>());
    });
  crew::test::run_within(loop);
  for (int t : threads) EXPECT_TRUE(t == 1 || t == 2) << t;
}

// Threads start as tasks come, up to max_threads, and those beyond
// min_threads stop once idle for idle_timeout.
TEST(pool, threads_grow_with_the_load_and_shrink_back_when_idle) {
  crew::loop loop;
  gate g;
  crew::pool pool({{"gate", g.task()}}, {.min_threads = 1, .max_threads = 3, .idle_timeout = 20ms});
  EXPECT_EQ(pool.stats().threads, 1u);
  for (int i = 0; i < 3; ++i) pool.run(0, {.task = "gate"}, [](result<message>) {});
  EXPECT_EQ(pool.stats().threads, 3u);
  g.open();
  crew::test::run_within(loop);
  for (auto end = std::chrono::steady_clock::now() + crew::test::scaled(10s);
       pool.stats().threads > 1 && std::chrono::steady_clock::now() < end;)
    std::this_thread::sleep_for(5ms);
  EXPECT_EQ(pool.stats().threads, 1u);
}

TEST(pool, without_threads_to_be_had_it_goes_on_with_those_it_has_and_fails_runs_only_when_it_has_none) {
  crew::loop loop;
  crew::exec_result r;
  crew::exec_file(CREW_FIXTURE, {"pool-no-threads"}, {}, [&](crew::exec_result done) { r = std::move(done); });
  crew::test::run_within(loop);
  if (r.status.code == 77) GTEST_SKIP() << r.out;  // root that cannot become nobody
  EXPECT_TRUE(r.ok()) << r.err;
  EXPECT_EQ(r.out, "0 1 2 3 / EAGAIN \n");
}

TEST(pool, stats_count_the_tasks_and_time_their_waits_and_runs) {
  crew::loop loop;
  crew::pool pool([](message m) {
    std::this_thread::sleep_for(2ms);
    return m;
  }, {.min_threads = 1, .max_threads = 1});
  for (int i = 0; i < 10; ++i) pool.run(i, {}, [](result<message>) {});
  crew::test::run_within(loop);
  crew::pool_stats s = pool.stats();
  EXPECT_EQ(s.completed, 10u);
  EXPECT_EQ(s.queue_size, 0u);
  EXPECT_EQ(s.running, 0u);
  EXPECT_EQ(s.run_time.count, 10u);
  EXPECT_EQ(s.wait_time.count, 10u);
  // Each task sleeps 2 ms: no reading of its run time can be below that (less 1/16).
  EXPECT_GE(s.run_time.p50, 2000 * 15 / 16.0);
  EXPECT_GE(s.run_time.min, 2000);
  EXPECT_LE(s.run_time.p50, s.run_time.p99);
  EXPECT_LE(s.run_time.p99, s.run_time.max * 17 / 16.0);
  // One thread for ten: the last waited for the nine before it.
  EXPECT_GE(s.wait_time.max, 9 * 2000);
  EXPECT_GT(s.utilization, 0);
  EXPECT_LE(s.utilization, 1);
}

crew::task<> sum_of_squares(crew::pool& pool, long& total) {
  for (long i = 1; i <= 3; ++i) {
    result<message> r = co_await pool.run(i, {.task = "square", .timeout = 5s});
    total += r.value().get<long>();
  }
}

TEST(pool, a_run_can_be_awaited) {
  crew::loop loop;
  crew::pool pool({{"square", [](message m) { return m.get<long>() * m.get<long>(); }}});
  long total = 0;
  crew::task<> t = sum_of_squares(pool, total);
  crew::test::run_within(loop);
  EXPECT_TRUE(t.done());
  EXPECT_EQ(total, 14);
}

// Runs made from names that are gone before they are awaited, as a loop that
// fills a vector for when_all makes them (found by a new user, under ASan).
crew::task<> twice_each(crew::pool& pool, std::vector<long>& got) {
  std::vector<crew::awaitable<result<message>>> runs;
  for (long i = 0; i < 3; ++i) {
    std::string name = "twice-the-number-given";  // past the small-string buffer: freed at the end of the block
    runs.push_back(pool.run(i, {.task = name}));
  }
  for (result<message>& r : co_await crew::when_all(std::move(runs))) got.push_back(r ? r->get<long>() : -1);
}

TEST(pool, an_awaited_run_keeps_its_task_name_until_it_starts) {
  crew::loop loop;
  crew::pool pool({{"twice-the-number-given", [](message m) { return m.get<long>() * 2; }}});
  std::vector<long> got;
  crew::task<> t = twice_each(pool, got);
  crew::test::run_within(loop);
  EXPECT_EQ(got, (std::vector<long>{0, 2, 4}));
}

// Done once the task runs (however long a thread takes to start), then 5 ms on.
crew::task<int> once_started(const std::atomic<bool>& started) {
  while (!started) co_await crew::sleep(1ms);
  co_await crew::sleep(5ms);
  co_return 0;
}

crew::task<> race(crew::pool& pool, const std::atomic<bool>& started, std::size_t& winner) {
  auto first = co_await crew::when_any(pool.run(0), once_started(started));
  winner = first.index();
}

// Losing a when_any destroys the awaitable, which cancels the run: the running
// task sees its stop token, and nothing completes afterwards.
TEST(pool, an_awaited_run_dropped_by_when_any_is_cancelled) {
  crew::loop loop;
  std::atomic<bool> started{false}, saw_stop{false};
  crew::pool pool([&](message m, const crew::task_context& c) {
    started = true;
    saw_stop = wait_for_stop(std::move(m), c).get<std::string>() == "stopped";
    return 0;
  });
  std::size_t winner = 9;
  crew::task<> t = race(pool, started, winner);
  crew::test::run_within(loop);
  EXPECT_EQ(winner, 1u);
  pool.close();
  crew::test::run_within(loop);  // close's done comes once the task has returned
  EXPECT_TRUE(saw_stop);
}

// Several threads, each with its own loop, share one pool: each gets its own
// results, on its own thread, each exactly once.
TEST(pool, many_loops_share_one_pool_and_each_gets_its_own_results) {
  crew::pool pool([](message m) { return m.get<long>() * 2; }, {.max_threads = 2});
  constexpr int loops = 4, each = 2000;
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < loops; ++t)
    threads.emplace_back([&, t] {
      crew::loop loop;
      std::vector<int> seen(each, 0);
      std::thread::id me = std::this_thread::get_id();
      for (long i = 0; i < each; ++i)
        pool.run(t * each + i, {}, [&, i](result<message> r) {
          if (std::this_thread::get_id() != me || r.value().get<long>() != 2 * (t * each + i)) ++wrong;
          ++seen[i];
        });
      crew::test::run_within(loop, 60s);
      wrong += static_cast<int>(std::count_if(seen.begin(), seen.end(), [](int n) { return n != 1; }));
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong, 0);
}

TEST(pool, a_million_tiny_tasks_each_complete_exactly_once) {
  crew::loop loop;
  crew::pool pool([](message m) { return m.get<int>() + 1; }, {.max_threads = 2});
  constexpr int count = 1'000'000;
  std::vector<std::uint8_t> seen(count, 0);
  int wrong = 0;
  for (int i = 0; i < count; ++i)
    pool.run(i, {}, [&, i](result<message> r) {
      if (!r || r->get<int>() != i + 1) ++wrong;
      ++seen[i];
    });
  crew::test::run_within(loop, 120s);
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), count);
}

// A loop destroyed while its runs are pending: their callbacks never run, and
// nothing leaks (the sanitizer builds check); the pool serves other loops on.
TEST(pool, a_loop_destroyed_with_runs_pending_drops_them_and_the_pool_goes_on) {
  gate g;
  crew::pool pool({{"gate", g.task()}, {"echo", [](message m) { return m; }}}, {.max_threads = 2});
  int called = 0;
  {
    crew::loop doomed;
    for (int i = 0; i < 4; ++i) pool.run(i, {.task = "gate", .timeout = 10s}, [&](result<message>) { ++called; });
  }
  g.open();
  crew::loop loop;
  int echoed = 0;
  pool.run(5, {.task = "echo"}, [&](result<message> r) { echoed = r.value().get<int>(); });
  crew::test::run_within(loop);
  EXPECT_EQ(called, 0);
  EXPECT_EQ(echoed, 5);
}

// The same with the runs finished, their results waiting for a loop that is
// destroyed before it takes them (ASan saw their jobs freed while the inbox
// still walked its list).
TEST(pool, a_loop_destroyed_with_results_waiting_drops_them) {
  crew::pool pool([](message m) { return m; }, {.max_threads = 2});
  int called = 0;
  {
    crew::loop doomed;
    for (int i = 0; i < 4; ++i) pool.run(i, {}, [&](result<message>) { ++called; });
    // Every result is in the loop's mailbox once no task runs and all four are done.
    while (pool.stats().completed < 4 || pool.stats().running > 0) std::this_thread::yield();
  }
  EXPECT_EQ(called, 0);
  crew::loop loop;
  int echoed = 0;
  pool.run(5, {}, [&](result<message> r) { echoed = r.value().get<int>(); });
  crew::test::run_within(loop);
  EXPECT_EQ(echoed, 5);
}

}  // namespace
