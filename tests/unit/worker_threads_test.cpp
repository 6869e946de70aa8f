#include "crew/worker_threads.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "crew/child_process.hpp"
#include "crew/timer.hpp"
#include "test_support.hpp"

namespace {

using crew::message;
using crew::worker;
using namespace std::chrono_literals;

static_assert(std::is_nothrow_move_constructible_v<worker>);
static_assert(!std::is_copy_constructible_v<worker>);

TEST(worker, runs_on_its_own_thread_and_loop_and_reports_online_message_exit_in_order) {
  crew::loop loop;
  std::thread::id main_id = std::this_thread::get_id();
  std::vector<std::string> events;
  worker w([main_id, &loop] {
    EXPECT_NE(std::this_thread::get_id(), main_id);
    EXPECT_NE(&crew::loop::current(), &loop);
    EXPECT_FALSE(crew::is_main_thread());
    EXPECT_FALSE(crew::parent_port()->post_message("from the worker"));
  });
  w.on_online([&] { events.push_back("online"); });
  w.on_message([&](message m) { events.push_back(m.get<std::string>()); });
  w.on_exit([&](int code) { events.push_back("exit " + std::to_string(code)); });
  crew::test::run_within(loop);  // the worker alone keeps the loop alive until it exits
  EXPECT_EQ(events, (std::vector<std::string>{"online", "from the worker", "exit 0"}));
  EXPECT_TRUE(crew::is_main_thread());
  EXPECT_EQ(crew::parent_port(), nullptr);
  EXPECT_EQ(crew::thread_id(), 0);
}

TEST(worker, sees_its_data_its_thread_id_and_its_name) {
  crew::loop loop;
  std::atomic<int> seen_id{-1};
  std::string data_seen;
  worker w(
      [&] {
        seen_id = crew::thread_id();
        data_seen = crew::worker_data().value()["task"].get<std::string>();
        char name[16] = {};
        pthread_getname_np(pthread_self(), name, sizeof name);
        EXPECT_STREQ(name, "crew-test-worke");  // Linux keeps 15 bytes
      },
      {.data = message(message::value_type{{"task", "fib"}}), .name = "crew-test-worker"});
  crew::test::run_within(loop);
  EXPECT_EQ(seen_id, w.thread_id());
  EXPECT_GT(w.thread_id(), 0);
  EXPECT_EQ(data_seen, "fib");
  EXPECT_TRUE(crew::worker_data().value().is_null());
}

TEST(worker, exits_with_the_code_its_function_returns_or_exit_worker_gives) {
  crew::loop loop;
  int returned = -1, exited = -1;
  worker a([] { return 7; });
  a.on_exit([&](int code) { returned = code; });
  worker b([] {
    crew::exit_worker(3);
    return 0;  // exit_worker's code wins
  });
  b.on_exit([&](int code) { exited = code; });
  crew::test::run_within(loop);
  EXPECT_EQ(returned, 7);
  EXPECT_EQ(exited, 3);
}

TEST(worker, an_exception_from_the_function_is_an_error_event_then_exit_1) {
  crew::loop loop;
  std::vector<std::string> events;
  worker w([] { throw std::runtime_error("broken worker"); });
  w.on_error([&](crew::worker_error_event e) {
    events.push_back("error: " + e.message);
    EXPECT_THROW(std::rethrow_exception(e.exception), std::runtime_error);
  });
  w.on_exit([&](int code) { events.push_back("exit " + std::to_string(code)); });
  crew::test::run_within(loop);
  EXPECT_EQ(events, (std::vector<std::string>{"error: broken worker", "exit 1"}));
}

TEST(worker, an_exception_from_a_callback_in_the_worker_is_an_error_event_too) {
  crew::loop loop;
  std::string error;
  int code = -1;
  worker w([] {
    crew::parent_port()->on_message([](message m) { throw std::logic_error("bad " + m.get<std::string>()); });
  });
  w.on_error([&](crew::worker_error_event e) { error = e.message; });
  w.on_exit([&](int c) { code = c; });
  EXPECT_FALSE(w.post_message("input"));
  crew::test::run_within(loop);
  EXPECT_EQ(error, "bad input");
  EXPECT_EQ(code, 1);
}

TEST(worker, a_typed_listener_reports_what_does_not_convert_as_messageerror) {
  crew::loop loop;
  worker w([] {
    EXPECT_FALSE(crew::parent_port()->post_message("not a number"));
    EXPECT_FALSE(crew::parent_port()->post_message(42));
  });
  std::vector<int> numbers;
  std::vector<std::error_code> errors;
  w.on_message<int>([&](int n) { numbers.push_back(n); });
  w.on_messageerror([&](std::error_code ec) { errors.push_back(ec); });
  crew::test::run_within(loop);
  EXPECT_EQ(numbers, (std::vector<int>{42}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], crew::errc::invalid_message);
}

TEST(worker, a_listening_worker_answers_until_terminated) {
  crew::loop loop;
  worker w([] {
    crew::parent_port()->on_message([](message m) {
      int n = m.get<int>();
      EXPECT_FALSE(crew::parent_port()->post_message(n * n));
    });
  });
  std::vector<int> answers;
  int terminated_with = -1, exit_code = -1;
  w.on_message([&](message m) {
    answers.push_back(m.get<int>());
    if (answers.size() == 5) w.terminate([&](int code) { terminated_with = code; });
  });
  w.on_exit([&](int code) { exit_code = code; });
  for (int i = 1; i <= 5; ++i) EXPECT_FALSE(w.post_message(i));
  crew::test::run_within(loop);
  EXPECT_EQ(answers, (std::vector<int>{1, 4, 9, 16, 25}));
  EXPECT_EQ(exit_code, 1);  // Node's terminate() gives 1
  EXPECT_EQ(terminated_with, 1);
  EXPECT_EQ(w.post_message(6), crew::errc::closed_message_port);
}

TEST(worker, terminate_stops_a_busy_worker_that_polls_its_stop_token) {
  crew::loop loop;
  long rounds = 0;
  worker w([&] {
    EXPECT_FALSE(crew::parent_port()->post_message("busy"));
    std::stop_token stop = crew::worker_stop_token();
    while (!stop.stop_requested()) ++rounds;
  });
  int code = -1;
  w.on_message([&](message) { w.terminate(); });
  w.on_exit([&](int c) { code = c; });
  crew::test::run_within(loop);
  EXPECT_EQ(code, 1);
  EXPECT_GT(rounds, 0);
}

TEST(worker, terminate_stops_an_idle_worker_whose_timer_would_keep_it_alive) {
  crew::loop loop;
  bool timer_made = false;
  worker w([&] {
    static thread_local crew::timer forever = crew::scoped_interval(1h, [] {});
    timer_made = forever.active();
    EXPECT_FALSE(crew::parent_port()->post_message("idle"));
  });
  int code = -1;
  w.on_message([&](message) { w.terminate(); });
  w.on_exit([&](int c) { code = c; });
  crew::test::run_within(loop);
  EXPECT_TRUE(timer_made);
  EXPECT_EQ(code, 1);
}

TEST(worker, terminate_after_exit_reports_the_exit_code) {
  crew::loop loop;
  worker w([] { return 4; });
  int later = -1;
  w.on_exit([&](int) { w.terminate([&](int code) { later = code; }); });
  crew::test::run_within(loop);
  EXPECT_EQ(later, 4);
}

TEST(worker, destroying_a_running_worker_stops_and_joins_it) {
  crew::loop loop;
  auto token = std::make_shared<int>(0);
  {
    worker w([token] {
      crew::parent_port()->on_message([](message) {});  // would listen forever
    });
    EXPECT_GE(token.use_count(), 2);
  }
  // The thread is gone, and the function's captures with it.
  EXPECT_EQ(token.use_count(), 1);
  crew::test::run_within(loop);  // nothing left: the destroyed worker no longer keeps the loop
}

TEST(worker, an_unreferenced_worker_does_not_keep_the_loop_alive) {
  crew::loop loop;
  std::atomic<bool> release{false};
  worker w([&] {
    while (!release) std::this_thread::sleep_for(1ms);
  });
  w.unref();
  crew::test::run_within(loop);  // returns while the worker still runs
  release = true;
}

TEST(worker, messages_keep_their_order_under_a_burst_both_ways) {
  crew::loop loop;
  constexpr int count = 50000;
  worker w([] {
    crew::parent_port()->on_message([](message m) { EXPECT_FALSE(crew::parent_port()->post_message(std::move(m))); });
  });
  int next = 0, out_of_order = 0;
  w.on_message([&](message m) {
    if (m.get<int>() != next) ++out_of_order;
    if (++next == count) w.terminate();
  });
  for (int i = 0; i < count; ++i) EXPECT_FALSE(w.post_message(i));
  crew::test::run_within(loop, 30s);
  EXPECT_EQ(next, count);
  EXPECT_EQ(out_of_order, 0);
}

TEST(worker, a_thousand_workers_start_and_stop_without_leaks) {
  crew::loop loop;
  int exits = 0, started = 0;
  std::vector<worker> batch;
  // In batches of 50, so that a 2-core machine is not asked for 1000 threads at once.
  std::function<void()> next_batch = [&] {
    batch.clear();
    if (started == 1000) return;
    for (int i = 0; i < 50; ++i, ++started) {
      batch.emplace_back([i] { return i % 2; });
      batch.back().on_exit([&](int) {
        if (++exits % 50 == 0) next_batch();  // destroys the workers, this one included
      });
    }
  };
  next_batch();
  crew::test::run_within(loop, 120s);
  EXPECT_EQ(exits, 1000);
}

TEST(worker, ports_sent_to_a_worker_connect_it_to_another) {
  crew::loop loop;
  crew::message_channel between;
  worker producer([] {
    crew::parent_port()->on_message([](message m) {
      crew::message_port out = std::move(m.ports().at(0));
      for (int i = 0; i < 3; ++i) EXPECT_FALSE(out.post_message(i));
      crew::parent_port()->close();
    });
  });
  worker consumer([] {
    crew::parent_port()->on_message([](message m) {
      auto in = std::make_shared<crew::message_port>(std::move(m.ports().at(0)));
      auto sum = std::make_shared<int>(0);
      in->on_message([in, sum](message n) {
        *sum += n.get<int>();
        if (n.get<int>() == 2) {
          EXPECT_FALSE(crew::parent_port()->post_message(*sum));
          in->close();
          crew::parent_port()->close();
        }
      });
    });
  });
  int total = -1;
  consumer.on_message([&](message m) { total = m.get<int>(); });
  message to_producer, to_consumer;
  to_producer.ports().push_back(std::move(between.port1));
  to_consumer.ports().push_back(std::move(between.port2));
  EXPECT_FALSE(producer.post_message(std::move(to_producer)));
  EXPECT_FALSE(consumer.post_message(std::move(to_consumer)));
  crew::test::run_within(loop);
  EXPECT_EQ(total, 3);
}

TEST(worker, has_the_environment_it_is_given) {
  crew::loop loop;
  std::string seen;
  worker w([&] { seen = crew::worker_env().at("CREW_WORKER_ONLY"); },
           {.env = std::map<std::string, std::string>{{"CREW_WORKER_ONLY", "yes"}}});
  crew::test::run_within(loop);
  EXPECT_EQ(seen, "yes");
  EXPECT_EQ(crew::worker_env().count("CREW_WORKER_ONLY"), 0u);
}

TEST(worker, passes_its_environment_to_the_processes_it_spawns) {
  crew::loop loop;
  std::string child_saw;
  worker w([&] { child_saw = crew::exec_sync("printf %s \"$CREW_WORKER_ONLY\""); },
           {.env = std::map<std::string, std::string>{{"CREW_WORKER_ONLY", "yes"}, {"PATH", "/usr/bin:/bin"}}});
  crew::test::run_within(loop);
  EXPECT_EQ(child_saw, "yes");
}

TEST(worker, a_large_stack_size_is_honoured) {
  crew::loop loop;
  bool deep_ok = false;
  worker w(
      [&] {
        // 32 MiB of stack in one frame would crash with the default 8 MiB.
        std::function<int(int)> deep = [&](int n) -> int {
          volatile char pad[64 * 1024];
          pad[0] = static_cast<char>(n);
          return n == 0 ? pad[0] : deep(n - 1) + 1;
        };
        deep_ok = deep(400) == 400;
      },
      {.stack_size = 64u << 20});
  crew::test::run_within(loop);
  EXPECT_TRUE(deep_ok);
}

}  // namespace
