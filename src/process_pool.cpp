// crew::process_pool: a queue of jobs on the loop, worker processes that take
// them one at a time over their IPC channels, and the worker side, serve().
//
// The state is a heap block (docs/lifetime.md) whose handle is the idle
// sweep's timer. Everything it owns (workers, timers, stop relays) closes with
// it, so their events never run once it is closed; completions of runs still
// pending then are posted to the loop.
#include "crew/process_pool.hpp"

#include <cstdio>
#include <cstdlib>
#include <list>
#include <optional>
#include <thread>

#include "crew/ipc.hpp"
#include "crew/timer.hpp"
#include "detail/histogram.hpp"
#include "detail/job_queue.hpp"
#include "detail/proc.hpp"
#include "detail/stop_relay.hpp"

namespace crew {
namespace {

using clock = std::chrono::steady_clock;
constexpr const char* worker_variable = "CREW_POOL_WORKER";

std::uint64_t nanoseconds(clock::duration d) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

// A worker's error as a result: crew's own code where the worker sent one, the
// exception it threw (ERR_UNCAUGHT_EXCEPTION) otherwise.
result<message> failure_of(const json& error) {
  const json* number = error.is_object() && error.contains("errno") ? &error["errno"] : nullptr;
  if (number && number->is_number_integer() && number->get<std::int64_t>() != 0)
    return std::error_code(static_cast<int>(number->get<std::int64_t>()), error_category());
  std::string code = error.is_object() ? error.value("code", "") : "";
  std::string text = error.is_object() ? error.value("message", "") : error.is_string() ? error.get<std::string>() : "";
  std::string what = code.empty() || code == "ERR_UNCAUGHT_EXCEPTION" ? text : code + ": " + text;
  return result<message>(std::make_exception_ptr(std::runtime_error(what)));
}

}  // namespace

struct process_pool::state final : detail::handle_state {
  struct worker;

  struct job {
    std::int64_t id = 0;
    std::string task;
    message in;
    int priority = 0;
    clock::time_point queued_at, started;
    done_callback done;
    std::optional<timer> deadline;
    std::optional<detail::stop_relay> relay;
    worker* on = nullptr;  // the worker running it
  };

  struct worker {
    child_process process;
    std::map<std::int64_t, std::shared_ptr<job>> running;  // sent to it, not answered, by id
    std::size_t sent = 0;  // tasks sent to it
    clock::time_point idle_since = clock::now();
    bool leaving = false;  // disconnected or killed: takes no more tasks
  };

  state(crew::loop& l, process_pool_options o) : handle_state(l), options(std::move(o)) {
    uv_timer_init(l.native(), &sweep);
    if (options.max_workers == 0) options.max_workers = std::max(1u, std::thread::hardware_concurrency());
    options.min_workers = std::min(options.min_workers, options.max_workers);
    options.concurrent_tasks_per_worker = std::max<std::size_t>(1, options.concurrent_tasks_per_worker);
    options.process.process_group = true;    // a kill reaches what the worker started
    options.process.die_with_parent = true;  // a pool killed by a signal leaves no worker behind
    options.process.extra_env[worker_variable] = "1";
    if (options.program.empty()) {
      options.program = "/proc/self/exe";
      if (options.process.argv0.empty()) options.process.argv0 = detail::own_name();
    }
  }
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&sweep); }

  void on_closing() noexcept override {
    std::vector<done_callback> owed;
    for (auto& [id, j] : jobs)
      if (j->done) owed.push_back(std::move(j->done));
    jobs.clear();
    queue.clear();
    workers.clear();  // each child_process terminates its worker and hands it to the reaper
    for (auto& done : owed) loop.later([done = std::move(done)]() mutable { done(uv_error(UV_ECANCELED)); });
    for (auto& done : std::exchange(when_gone, {})) loop.later(std::move(done));
  }

  void start_worker() {
    worker& w = workers.emplace_back();
    auto it = std::prev(workers.end());
    process_options o = options.process;
    if (!options.exec_path.empty()) o.exec_path = options.exec_path;
    w.process = crew::fork(options.program, options.args, std::move(o), loop);
    w.process.channel().set_spin(std::chrono::microseconds(0));  // tasks take a while: no spin per message
    w.process.on_message([this, &w](message m) { answered(w, std::move(m)); });
    w.process.on_exit([this, it](exit_status s) { gone(it, s, {}); });
    w.process.on_error([this, it](std::error_code ec) { gone(it, {}, ec); });
    // An idle pool does not keep the loop alive; a pending run does (`hold`).
    w.process.unref();
    w.process.channel().unref();
  }

  void submit(message in, run_options o, std::stop_token stop, done_callback done, std::shared_ptr<job>* made) {
    auto j = std::make_shared<job>();
    j->id = next_id++;
    j->task = std::string(o.task);
    j->in = std::move(in);
    j->priority = o.priority;
    j->done = std::move(done);
    if (made) *made = j;
    std::error_code refused;
    if (!accepting)
      refused = make_error_code(errc::pool_closed);
    else if (queue.size() >= options.max_queue && !idle_worker())
      refused = make_error_code(errc::queue_full);
    if (refused) {
      defer([this, j, refused] {
        if (!closing) finish(*j, refused);  // (the block's closing: the loop drops the callback)
      });
      return;
    }
    jobs[j->id] = j;
    if (!hold) hold.emplace(loop);
    j->queued_at = clock::now();
    queue.push(j->priority, j);
    std::int64_t id = j->id;
    if (o.timeout.count() > 0) {
      j->deadline.emplace(loop);
      j->deadline->start(o.timeout, {}, [this, id] { end_early(id, uv_error(UV_ETIMEDOUT)); });
    }
    if (stop.stop_possible()) j->relay.emplace(loop, std::move(stop), [this, id] { end_early(id, uv_error(UV_ECANCELED)); });
    dispatch();
  }

  worker* idle_worker() {
    for (worker& w : workers)
      if (w.running.size() < options.concurrent_tasks_per_worker && !w.leaving && w.process.connected() &&
          (options.max_tasks_per_worker == 0 || w.sent < options.max_tasks_per_worker))
        return &w;
    return nullptr;
  }

  // Hands queued jobs to idle workers, starting workers up to max_workers.
  void dispatch() {
    while (!queue.empty()) {
      worker* w = idle_worker();
      if (!w) {
        std::size_t live = 0;
        for (worker& each : workers) live += !each.leaving;
        if (live >= options.max_workers) return;
        start_worker();
        continue;
      }
      std::shared_ptr<job> j = queue.pop();
      wait_time.record(nanoseconds(clock::now() - j->queued_at));
      j->on = w;
      w->running[j->id] = j;
      ++w->sent;
      j->started = clock::now();
      w->process.send(json{{"id", j->id}, {"task", j->task}, {"value", std::move(j->in).value()}});
    }
  }

  // A worker's answer.
  void answered(worker& w, message m) {
    json& v = m.value();
    if (!v.is_object() || !v.contains("id") || !v["id"].is_number_integer()) return;
    auto found = w.running.find(v["id"].get<std::int64_t>());
    if (found == w.running.end()) return;  // not its task, or ended already (a timeout)
    std::shared_ptr<job> j = std::move(found->second);
    w.running.erase(found);
    j->on = nullptr;
    note_ran(*j);
    w.idle_since = clock::now();
    // A worn worker takes no more tasks, and goes once it has answered for those it has.
    if ((options.max_tasks_per_worker > 0 && w.sent >= options.max_tasks_per_worker) ||
        (options.max_memory_bytes > 0 && detail::resident_bytes(w.process.pid()) > options.max_memory_bytes))
      w.leaving = true;
    if (w.leaving && w.running.empty()) retire(w);
    if (v.contains("error"))
      finish(*j, failure_of(v["error"]));
    else
      finish(*j, message(std::move(v["value"])));
    if (closing) return;  // the callback destroyed the pool
    dispatch();  // closing drains: what is queued still runs
    if (!accepting) return settle();
    arm_sweep();
  }

  // A worker exited (or never started). Its tasks fail with why.
  void gone(std::list<worker>::iterator it, exit_status s, std::error_code start_error) {
    std::map<std::int64_t, std::shared_ptr<job>> lost = std::move(it->running);
    workers.erase(it);
    std::error_code why = start_error     ? start_error
                          : s.signal != 0 ? signal_error(s.signal)
                                          : make_error_code(errc::pool_worker_exited);
    for (auto& [id, j] : lost) {
      j->on = nullptr;
      note_ran(*j);
      finish(*j, why);
      if (closing) return;
    }
    if (closing) return;
    if (start_error) {
      // The program cannot be started: what waits fails the same way, rather than a fork loop.
      for (auto& waiting : queue.take_all()) {
        finish(*waiting, start_error);
        if (closing) return;
      }
      if (!accepting) settle();
      return;
    }
    dispatch();  // closing drains: what is queued still runs, on a new worker if need be
    if (!accepting) return settle();
    while (workers.size() < options.min_workers) start_worker();
  }

  // A timeout or a stop: a queued job leaves the queue; a running one's worker is killed.
  void end_early(std::int64_t id, std::error_code why) {
    auto found = jobs.find(id);
    if (found == jobs.end()) return;
    std::shared_ptr<job> j = found->second;
    if (worker* w = j->on) {
      // Its other tasks, if it runs several, fail with the exit this causes.
      w->running.erase(j->id);
      j->on = nullptr;
      w->leaving = true;
      (void)w->process.kill_tree(SIGKILL);
    } else {
      queue.remove(j->priority, j);
    }
    finish(*j, why);
    if (!closing && !accepting) settle();
  }

  void retire(worker& w) {
    w.leaving = true;
    w.process.disconnect();  // it exits once its channel ends
  }

  void note_ran(job& j) {
    std::uint64_t took = nanoseconds(clock::now() - j.started);
    run_time.record(took);
    busy_ns += took;
    ++completed;
  }

  void finish(job& j, result<message> outcome) {
    jobs.erase(j.id);
    j.deadline.reset();
    j.relay.reset();
    if (jobs.empty()) hold.reset();
    if (auto done = std::move(j.done)) loop.invoke(done, std::move(outcome));
  }

  // Closing: once nothing is queued or running, the workers go; then when_gone.
  void settle() {
    if (!queue.empty() || !jobs.empty()) return;
    for (worker& w : workers)
      if (!w.leaving) retire(w);
    if (!workers.empty()) {
      if (!when_gone.empty() && !leaving_hold) leaving_hold.emplace(loop);  // done waits for the workers
      return;
    }
    leaving_hold.reset();
    for (auto& done : std::exchange(when_gone, {})) {
      loop.invoke(done);
      if (closing) return;
    }
  }

  // Workers beyond min_workers idle past idle_timeout leave.
  void arm_sweep() {
    if (options.idle_timeout.count() <= 0 || workers.size() <= options.min_workers || uv_is_active(uv())) return;
    auto every = static_cast<std::uint64_t>(options.idle_timeout.count());
    uv_timer_start(&sweep, [](uv_timer_t* t) {
      auto* s = static_cast<state*>(t->data);
      std::size_t staying = 0;
      for (worker& w : s->workers) staying += !w.leaving;
      for (worker& w : s->workers)
        if (staying > s->options.min_workers && w.running.empty() && !w.leaving &&
            clock::now() - w.idle_since >= s->options.idle_timeout) {
          s->retire(w);
          --staying;
        }
      if (staying <= s->options.min_workers) uv_timer_stop(t);
    }, every, every);
    uv_unref(uv());
  }

  uv_timer_t sweep;
  process_pool_options options;
  std::list<worker> workers;
  detail::job_queue<std::shared_ptr<job>> queue;
  std::map<std::int64_t, std::shared_ptr<job>> jobs;                      // not complete, by id
  std::int64_t next_id = 1;
  std::optional<loop::keep_alive> hold;          // while a run is pending
  std::optional<loop::keep_alive> leaving_hold;  // while close's or destroy's done waits for the workers
  bool accepting = true;                 // until close() or destroy()
  std::vector<unique_function<void()>> when_gone;
  const clock::time_point started_at = clock::now();
  std::uint64_t completed = 0, busy_ns = 0;
  detail::histogram wait_time, run_time;
};


process_pool::process_pool(process_pool_options options, loop& l) { adopt(new state(l, std::move(options))); }

process_pool::state* process_pool::get() const noexcept { return state_as<state>(); }

void process_pool::run(message in, run_options options, done_callback done, std::stop_token stop) {
  state* s = get();
  if (!s) throw std::system_error(make_error_code(errc::pool_closed), "crew::process_pool::run");
  s->submit(std::move(in), options, std::move(stop), std::move(done), nullptr);
}

namespace {

// The awaitable form of a run: submitted when first awaited.
struct process_pool_run final : detail::operation<result<message>> {
  process_pool_run(crew::loop& l, process_pool::state* p, message m, run_options o, std::stop_token s)
      : operation(l), pool(p), in(std::move(m)), task(o.task), options(o), stop(std::move(s)) {
    options.task = task;  // the caller's name may be gone by the time the run is awaited
  }

  void start() override {
    std::weak_ptr<operation<result<message>>> self = weak_from_this();
    std::shared_ptr<process_pool::state::job> made;
    pool->submit(std::move(in), options, std::move(stop),
                 [self](result<message> r) {
                   if (auto op = self.lock()) op->complete(std::move(r));
                 },
                 &made);
    submitted = made;
  }
  void cancel() noexcept override {
    if (auto j = submitted.lock(); j && j->done) {
      j->done = {};  // no completion for an awaiter that is gone
      pool->end_early(j->id, uv_error(UV_ECANCELED));
    }
  }

  process_pool::state* pool;  // the pool outlives its pending runs' awaitables (its loop does)
  message in;
  std::string task;
  run_options options;
  std::stop_token stop;
  std::weak_ptr<process_pool::state::job> submitted;
};

}  // namespace

awaitable<result<message>> process_pool::run(message in, run_options options, std::stop_token stop) {
  state* s = get();
  if (!s) throw std::system_error(make_error_code(errc::pool_closed), "crew::process_pool::run");
  return awaitable<result<message>>(std::make_shared<process_pool_run>(s->loop, s, std::move(in), options, std::move(stop)));
}

void process_pool::close(unique_function<void()> done) { wind_down(std::move(done), false); }

void process_pool::destroy(unique_function<void()> done) { wind_down(std::move(done), true); }

// No new runs; with `cancel`, every run not complete gets ECANCELED. done runs
// once the workers are gone, never inside the call.
void process_pool::wind_down(unique_function<void()> done, bool cancel) {
  state* s = get();
  if (!s) {
    if (done) loop::current().later(std::move(done));
    return;
  }
  s->accepting = false;
  if (done) s->when_gone.push_back(std::move(done));
  std::vector<std::int64_t> ids;
  if (cancel)
    for (auto& [id, j] : s->jobs) ids.push_back(id);
  s->defer([s, ids] {
    for (std::int64_t id : ids) {
      if (s->closing) return;
      s->end_early(id, uv_error(UV_ECANCELED));
    }
    if (!s->closing) s->settle();
  });
}

pool_stats process_pool::stats() const {
  pool_stats out;
  state* s = get();
  if (!s) return out;
  for (auto& w : s->workers) {
    out.threads += !w.leaving;
    out.running += w.running.size();
  }
  out.queue_size = s->queue.size();
  out.completed = s->completed;
  double capacity = static_cast<double>(nanoseconds(clock::now() - s->started_at)) * static_cast<double>(s->options.max_workers);
  out.utilization = capacity > 0 ? static_cast<double>(s->busy_ns) / capacity : 0;
  out.wait_time = s->wait_time.summary();
  out.run_time = s->run_time.summary();
  return out;
}

bool process_pool::is_worker() noexcept {
  const char* flag = std::getenv(worker_variable);
  return flag && std::string_view(flag) == "1" && parent_channel() != nullptr;
}

int process_pool::serve(const pool_tasks& tasks) {
  ipc_channel* parent = is_worker() ? parent_channel() : nullptr;
  if (!parent) {
    std::fprintf(stderr, "crew::process_pool::serve: this process is no pool's worker\n");
    return 2;
  }
  const json no_data;
  parent->on_message([&](message m) {
    json& v = m.value();
    if (!v.is_object() || !v.contains("id")) return;
    json reply = {{"id", v["id"]}};
    auto task = tasks.find(v.value("task", std::string()));
    if (task == tasks.end()) {
      std::error_code ec = make_error_code(errc::pool_unknown_task);
      reply["error"] = {{"code", error_name(ec)}, {"message", ec.message()}, {"errno", ec.value()}};
    } else {
      std::stop_source never;
      task_context context{never.get_token(), no_data, 1};
      result<message> out = [&]() -> result<message> {
        try {
          return task->second(message(std::move(v["value"])), context);
        } catch (...) {
          return result<message>(std::current_exception());
        }
      }();
      if (out) {
        reply["value"] = std::move(*out).value();
      } else if (std::exception_ptr thrown = out.exception()) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(thrown);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        reply["error"] = {{"code", "ERR_UNCAUGHT_EXCEPTION"}, {"message", what}};
      } else {
        std::error_code ec = out.error();
        reply["error"] = {{"code", error_name(ec)}, {"message", ec.message()},
                          {"errno", ec.category() == error_category() ? ec.value() : -ec.value()}};
      }
    }
    parent->send(std::move(reply));
  });
  loop::current().run();
  return 0;
}

}  // namespace crew
