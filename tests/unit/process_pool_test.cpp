#include "crew/process_pool.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <set>
#include <thread>

#include "crew/timer.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using crew::message;
using crew::result;

// A pool of crew-fixture pool-worker processes (tests/fixtures/crew-fixture.cpp).
crew::process_pool_options fixture(std::size_t workers) {
  return {.program = CREW_FIXTURE, .args = {"pool-worker"}, .min_workers = 1, .max_workers = workers};
}

std::string name_of(const result<message>& r) { return r ? "ok" : crew::error_name(r.error()); }

// Whether a process runs (a zombie has exited).
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_text, name, state;
  return stat >> pid_text >> name >> state && state != "Z";
}

TEST(process_pool, runs_tasks_in_worker_processes_and_answers_on_the_loop) {
  crew::loop loop;
  crew::process_pool pool(fixture(2));
  std::vector<int> echoed;
  std::set<int> pids;
  bool inside_run = true;
  for (int i = 0; i < 6; ++i) {
    pool.run(i, {.task = "echo"}, [&](result<message> r) {
      EXPECT_FALSE(inside_run);
      echoed.push_back(r.value().get<int>());
    });
    pool.run(0, {.task = "pid"}, [&](result<message> r) { pids.insert(r.value().get<int>()); });
  }
  inside_run = false;
  crew::test::run_within(loop, 30s);
  std::sort(echoed.begin(), echoed.end());
  EXPECT_EQ(echoed, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_FALSE(pids.empty());
  EXPECT_LE(pids.size(), 2u);
  EXPECT_FALSE(pids.count(getpid()));
}

// A task past its timeout: ETIMEDOUT, and its worker is killed and replaced;
// a crash fails only its task, with the signal's name; an exit, a returned
// error and a thrown exception each fail their task as what they are. The
// other tasks go on.
TEST(process_pool, a_hang_a_crash_and_an_exit_fail_only_their_task_and_workers_are_replaced) {
  crew::loop loop;
  crew::process_pool pool(fixture(2));
  std::map<std::string, std::string> outcome;
  std::string thrown;
  auto record = [&](std::string what) { return [&, what](result<message> r) { outcome[what] = name_of(r); }; };
  pool.run(0, {.task = "hang", .timeout = 200ms}, record("hang"));
  pool.run(0, {.task = "crash"}, record("crash"));
  pool.run(0, {.task = "exit"}, record("exit"));
  pool.run(0, {.task = "fail"}, record("fail"));
  pool.run(0, {.task = "throw"}, [&](result<message> r) {
    outcome["throw"] = name_of(r);
    try {
      r.value();
    } catch (const std::exception& e) {
      thrown = e.what();
    }
  });
  pool.run(0, {.task = "nothing"}, record("unknown"));
  int later = 0;
  for (int i = 0; i < 20; ++i) pool.run(i, {.task = "echo"}, [&](result<message> r) { later += r ? 1 : 0; });
  crew::test::run_within(loop, 30s);
  EXPECT_EQ(outcome, (std::map<std::string, std::string>{{"hang", "ETIMEDOUT"},
                                                         {"crash", "SIGABRT"},
                                                         {"exit", "ERR_POOL_WORKER_EXITED"},
                                                         {"fail", "ENOENT"},
                                                         {"throw", "ERR_UNCAUGHT_EXCEPTION"},
                                                         {"unknown", "ERR_POOL_UNKNOWN_TASK"}}));
  EXPECT_EQ(thrown, "bad input");
  EXPECT_EQ(later, 20);
}

TEST(process_pool, max_tasks_per_worker_and_max_memory_replace_a_worker_between_tasks) {
  for (bool by_memory : {false, true}) {
    SCOPED_TRACE(by_memory ? "max_memory_bytes" : "max_tasks_per_worker");
    crew::loop loop;
    crew::process_pool_options o = fixture(1);
    if (by_memory)
      o.max_memory_bytes = 32 << 20;
    else
      o.max_tasks_per_worker = 2;
    crew::process_pool pool(std::move(o));
    std::vector<int> pids;
    std::function<void()> next = [&] {
      pool.run(0, {.task = by_memory ? "grow" : "pid"}, [&](result<message> r) {
        pids.push_back(r.value().get<int>());
        if (pids.size() < 4) next();
      });
    };
    next();
    crew::test::run_within(loop, 30s);
    ASSERT_EQ(pids.size(), 4u);
    if (by_memory) {
      // Each task grows its worker past the limit: each runs in a fresh one.
      EXPECT_EQ(std::set<int>(pids.begin(), pids.end()).size(), 4u);
    } else {
      EXPECT_EQ(pids[0], pids[1]);
      EXPECT_EQ(pids[2], pids[3]);
      EXPECT_NE(pids[1], pids[2]);
    }
  }
}

// A stop request cancels a queued run (it never reaches a worker) and a
// running one (its worker is killed); both complete once with ECANCELED.
TEST(process_pool, a_stop_token_cancels_a_queued_run_and_kills_a_running_ones_worker) {
  crew::loop loop;
  crew::process_pool pool(fixture(1));
  std::stop_source running, queued;
  std::vector<std::string> outcomes;
  int worker = 0;
  crew::timer later(loop);
  pool.run(0, {.task = "pid"}, [&](result<message> r) {
    // The hang goes to the worker now: stop both a little later.
    worker = r.value().get<int>();
    later.start(50ms, {}, [&] {
      queued.request_stop();
      std::thread([&] { running.request_stop(); }).join();  // from another thread
    });
  });
  pool.run(0, {.task = "hang"}, [&](result<message> r) { outcomes.push_back("running " + name_of(r)); },
           running.get_token());
  pool.run(0, {.task = "echo"}, [&](result<message> r) { outcomes.push_back("queued " + name_of(r)); },
           queued.get_token());
  crew::test::run_within(loop, 30s);
  std::multiset<std::string> got(outcomes.begin(), outcomes.end());
  EXPECT_EQ(got, (std::multiset<std::string>{"running ECANCELED", "queued ECANCELED"}));
  EXPECT_GT(worker, 0);
  for (int i = 0; i < 500 && alive(worker); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(alive(worker));
}

// concurrent_tasks_per_worker tasks go to a worker before it answers the
// first; when it dies, each of them fails, and what waited goes to a new one.
TEST(process_pool, a_worker_takes_concurrent_tasks_per_worker_at_once_and_its_death_fails_them_all) {
  crew::loop loop;
  crew::process_pool_options o = fixture(1);
  o.concurrent_tasks_per_worker = 3;
  crew::process_pool pool(std::move(o));
  std::vector<std::string> outcomes;
  auto record = [&](result<message> r) { outcomes.push_back(name_of(r)); };
  pool.run(0, {.task = "crash"}, record);
  pool.run(0, {.task = "pid"}, record);
  pool.run(0, {.task = "pid"}, record);
  pool.run(0, {.task = "echo"}, record);
  crew::pool_stats s = pool.stats();
  EXPECT_EQ(s.running, 3u);
  EXPECT_EQ(s.queue_size, 1u);
  crew::test::run_within(loop, 30s);
  std::multiset<std::string> got(outcomes.begin(), outcomes.end());
  EXPECT_EQ(got, (std::multiset<std::string>{"SIGABRT", "SIGABRT", "SIGABRT", "ok"}));
}

TEST(process_pool, past_max_queue_a_run_fails_with_err_queue_full) {
  crew::loop loop;
  crew::process_pool_options o = fixture(1);
  o.max_queue = 2;
  crew::process_pool pool(std::move(o));
  std::vector<std::string> outcomes;
  auto record = [&](result<message> r) { outcomes.push_back(name_of(r)); };
  pool.run(0, {.task = "echo"}, record);  // on the worker at once
  pool.run(0, {.task = "echo"}, record);
  pool.run(0, {.task = "echo"}, record);
  pool.run(0, {.task = "echo"}, record);  // the third waiting
  crew::test::run_within(loop, 30s);
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "ok"), 3);
  EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "ERR_QUEUE_FULL"), 1);
}

// close(): what was sent runs, then the workers exit and done runs once.
// destroy(): every run not complete gets ECANCELED, the workers are killed.
TEST(process_pool, close_drains_and_destroy_cancels_and_both_leave_no_worker_behind) {
  for (bool destroy : {false, true}) {
    SCOPED_TRACE(destroy ? "destroy" : "close");
    crew::loop loop;
    crew::process_pool pool(fixture(2));
    std::vector<std::string> outcomes;
    std::set<int> workers;
    int done = 0;
    crew::timer later(loop);
    // Once both workers have answered (however slowly they start), and the rest is sent or queued.
    auto both_answered = [&](result<message> r) {
      workers.insert(r.value().get<int>());
      if (workers.size() < 2) return;
      later.start(50ms, {}, [&] {
        if (destroy)
          pool.destroy([&] { ++done; });
        else
          pool.close([&] { ++done; });
        pool.run(9, {.task = "echo"}, [&](result<message> late) { outcomes.push_back(name_of(late)); });
      });
    };
    for (int i = 0; i < 2; ++i) pool.run(0, {.task = "pid"}, both_answered);
    for (int i = 0; i < 4; ++i)
      pool.run(i, {.task = destroy ? "hang" : "echo"}, [&](result<message> r) { outcomes.push_back(name_of(r)); });
    crew::test::run_within(loop, 30s);
    EXPECT_EQ(done, 1);
    EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), destroy ? "ECANCELED" : "ok"), 4);
    EXPECT_EQ(std::count(outcomes.begin(), outcomes.end(), "ERR_POOL_CLOSED"), 1);
    for (int pid : workers) EXPECT_FALSE(alive(pid)) << pid;
  }
}

// close() before any worker has answered (they are still starting): what is
// queued behind the first tasks still runs (it waited for ever under load).
TEST(process_pool, close_at_once_still_runs_every_queued_task) {
  crew::loop loop;
  crew::process_pool pool(fixture(2));
  std::vector<std::string> outcomes;
  for (int i = 0; i < 6; ++i) pool.run(i, {.task = "echo"}, [&](result<message> r) { outcomes.push_back(name_of(r)); });
  int done = 0;
  pool.close([&] { ++done; });
  crew::test::run_within(loop, 30s);
  EXPECT_EQ(outcomes, std::vector<std::string>(6, "ok"));
  EXPECT_EQ(done, 1);
}

// A pool killed by a signal in the middle of a task leaves no worker behind
// (its workers die with it); a worker of the pool's own program carries that
// program's name, for ps and pgrep.
TEST(process_pool, a_pool_killed_by_a_signal_leaves_no_worker_behind) {
  crew::loop loop;
  crew::child_process parent = crew::spawn(CREW_FIXTURE, {"pool-parent"}, {}, loop);
  std::string out;
  pid_t worker = 0;
  std::string name;
  parent.out().on_data([&](std::string_view data) {
    out += data;
    if (worker != 0 || out.find('\n') == std::string::npos) return;
    worker = std::stoi(out.substr(out.find(' ') + 1));
    std::ifstream cmdline("/proc/" + std::to_string(worker) + "/cmdline");
    std::getline(cmdline, name, '\0');
    EXPECT_FALSE(parent.kill(SIGKILL));
  });
  crew::test::run_within(loop, 30s);
  ASSERT_GT(worker, 0) << out;
  EXPECT_TRUE(name.ends_with("crew-fixture")) << name;
  for (int i = 0; i < 500 && alive(worker); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(alive(worker));
}

TEST(process_pool, a_program_that_cannot_start_fails_each_run_with_its_error) {
  crew::loop loop;
  crew::process_pool pool({.program = "/no/such/worker"});
  std::vector<std::string> outcomes;
  for (int i = 0; i < 3; ++i) pool.run(i, {.task = "echo"}, [&](result<message> r) { outcomes.push_back(name_of(r)); });
  crew::test::run_within(loop, 30s);
  EXPECT_EQ(outcomes, std::vector<std::string>(3, "ENOENT"));
}

crew::task<> awaited(crew::process_pool& pool, std::string& got) {
  // Made from a name that is gone before it is awaited: the run keeps its own.
  auto run = [&] {
    std::string name = "echo";
    name.reserve(64);  // on the heap, freed when this returns
    return pool.run("hi", {.task = name, .timeout = 10s});
  }();
  result<message> r = co_await std::move(run);
  got = r.value().get<std::string>();
}

TEST(process_pool, a_run_can_be_awaited) {
  crew::loop loop;
  crew::process_pool pool(fixture(1));
  std::string got;
  crew::task<> t = awaited(pool, got);
  crew::test::run_within(loop, 30s);
  EXPECT_EQ(got, "hi");
}

// A pool destroyed with runs pending completes each with ECANCELED on a later
// turn, and its workers are reaped.
TEST(process_pool, a_pool_destroyed_with_runs_pending_cancels_them_and_reaps_its_workers) {
  crew::loop loop;
  auto pool = std::make_unique<crew::process_pool>(fixture(2));
  std::vector<std::string> outcomes;
  int worker = 0;
  pool->run(0, {.task = "pid"}, [&](result<message> r) {
    worker = r.value().get<int>();
    for (int i = 0; i < 3; ++i) pool->run(i, {.task = "hang"}, [&](result<message> h) { outcomes.push_back(name_of(h)); });
    loop.post([&] { pool.reset(); });
  });
  crew::test::run_within(loop, 30s);
  EXPECT_EQ(outcomes, std::vector<std::string>(3, "ECANCELED"));
  for (int i = 0; i < 500 && alive(worker); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(alive(worker));
}

}  // namespace
