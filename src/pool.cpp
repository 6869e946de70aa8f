// crew::pool: a queue of jobs under one mutex, threads that take them, and,
// for each loop that sends jobs, an inbox (a uv_async_t) that gets the results.
//
// A job is shared by the loop that sent it and the thread that runs it. Its
// input, output and flags cross threads; its loop-side part (the callback, the
// timeout's timer, the stop token's callback) is touched on its loop only: at
// delivery, or when that loop closes the inbox. A job is delivered once: by
// its thread's result, or before that by a timeout, a cancellation or
// destroy() (then the thread's late result finds it delivered and is dropped).
//
// Lock order: the pool's mutex, then a mailbox's. Worker threads hold neither
// while a task runs.
#include "crew/pool.hpp"

#include <algorithm>
#include <condition_variable>
#include <list>
#include <mutex>
#include <optional>

#include "crew/detail/handle.hpp"
#include "crew/timer.hpp"
#include "detail/adaptive_mutex.hpp"
#include "detail/histogram.hpp"
#include "detail/job_queue.hpp"
#include "detail/recycling_allocator.hpp"
#include "detail/spinner.hpp"
#include "detail/stop_relay.hpp"

namespace crew {
namespace detail {
namespace {

using clock = std::chrono::steady_clock;

std::uint64_t nanoseconds(clock::duration d) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
}

}  // namespace

struct job;
struct inbox;

// What the threads hand to one loop: finished jobs and notices (close() and
// destroy() completions). Shared by the loop's inbox and the pool.
struct mailbox {
  // Queues a job for delivery and wakes the loop; dropped once the loop closed the inbox.
  void deliver(std::shared_ptr<job> j);
  void notify(unique_function<void()> notice);

  std::mutex mutex;
  inbox* target = nullptr;  // null once its loop closed the inbox
  std::vector<std::shared_ptr<job>> ready;
  std::vector<unique_function<void()>> notices;
  bool retired = false;   // the pool is gone: the inbox closes once nothing is pending
  bool spinning = false;  // the inbox polls `ready` itself: no wake-up needed
};

// The loop-side part of a job: created and destroyed on the job's loop.
struct delivery {
  pool::done_callback done;
  std::optional<timer> deadline;
  std::optional<stop_relay> on_stop;
  inbox* home = nullptr;    // the inbox of the job's loop, which outlives this part
  job* previous = nullptr;  // the inbox's list of jobs it awaits
  job* next = nullptr;
  // The job itself, alive while its loop awaits it: a thread may let go of
  // it at any time (a result that finds the inbox closed).
  std::shared_ptr<job> self;
};

struct job {
  const pool_task* fn = nullptr;
  message in;
  int priority = 0;
  clock::time_point queued_at;
  std::stop_source stop{std::nostopstate};  // made only for a task that can see it (one allocation less)
  std::shared_ptr<mailbox> box;
  std::optional<result<message>> outcome;  // written by the thread before it hands the job to the mailbox
  std::atomic<bool> cancelled{false};      // destroy(): deliver ECANCELED, whatever the thread produced
  bool in_queue = false;               // guarded by the pool's mutex
  // The job's loop only: made there, and emptied there (reset) before the job
  // itself may be freed by whichever thread lets go of it last.
  std::optional<delivery> local;
};

// Delivers one loop's results: a handle on that loop, woken by the threads.
struct inbox final : handle_state {
  inbox(crew::loop& l, std::shared_ptr<mailbox> b, std::chrono::microseconds s)
      : handle_state(l), box(std::move(b)), spin(s) {
    uv_async_init(l.native(), &async, [](uv_async_t* a) { static_cast<inbox*>(a->data)->drain(); });
    attach(nullptr);  // the loop's: it closes the inbox with itself
    box->target = this;
    uv_unref(uv());
  }
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&async); }

  void on_closing() noexcept override {
    spinning.close();
    {
      std::lock_guard lock(box->mutex);
      box->target = nullptr;
      box->ready.clear();
      box->notices.clear();
    }
    // The callbacks, timers and stop callbacks of the jobs it awaited go with it.
    while (awaited) forget(*awaited);
  }

  // A job sent from this loop, or a notice, that it now awaits.
  void await(job* j) {
    if (j) {
      j->local->next = awaited;
      if (awaited) awaited->local->previous = j;
      awaited = j;
      keep_spinning();
    }
    if (pending++ == 0) uv_ref(uv());
  }

  // Polls the mailbox for `spin` from now instead of sleeping until a wake-up.
  void keep_spinning() {
    if (closing) return;
    auto on_turn = [](void* self) {
      auto* me = static_cast<inbox*>(self);
      if (me->pending == 0) return me->stop_spinning();
      me->drain();  // one lock, as cheap as looking first
    };
    auto on_stop = [](void* self) { static_cast<inbox*>(self)->stop_spinning(); };
    if (!spinning.keep(loop.native(), spin, this, on_turn, on_stop)) return;
    std::lock_guard lock(box->mutex);
    box->spinning = true;
  }

  void stop_spinning() {
    spinning.stop();
    std::lock_guard lock(box->mutex);
    box->spinning = false;
    // Results that came while it spun sent no wake-up: if one waits, wake now.
    if (!box->ready.empty()) uv_async_send(&async);
  }

  void settled() {
    if (--pending == 0) uv_unref(uv());
  }

  // Takes a job off the list; its loop-side part goes. Gives the callback.
  // The job may go too: a caller that uses it afterwards holds it.
  pool::done_callback forget(job& j) {
    delivery& d = *j.local;
    if (d.previous) d.previous->local->next = d.next;
    else awaited = d.next;
    if (d.next) d.next->local->previous = d.previous;
    pool::done_callback done = std::move(d.done);
    std::shared_ptr<job> last = std::move(d.self);  // outlives the part that held it
    j.local.reset();
    settled();
    return done;
  }

  // Completes the job's run once: the first delivery wins. The caller holds
  // the job (`outcome` may be the job's own).
  void complete(job& j, result<message>&& outcome) {
    if (!j.local) return;
    pool::done_callback done = forget(j);
    if (done) loop.invoke(done, std::move(outcome));
  }

  void drain() {
    // The vector the threads fill next is the one emptied last time: it keeps
    // its room, so a burst of results does not grow it again.
    std::vector<std::shared_ptr<job>> jobs = std::move(spare);
    std::vector<unique_function<void()>> notices;
    bool retired;
    {
      std::lock_guard lock(box->mutex);
      jobs.swap(box->ready);
      notices.swap(box->notices);
      retired = box->retired;
    }
    if (!jobs.empty()) keep_spinning();
    for (auto& j : jobs) {
      if (closing) return;
      if (!j->local) continue;  // delivered already (a timeout, a cancellation)
      if (j->cancelled)
        complete(*j, uv_error(UV_ECANCELED));
      else
        complete(*j, std::move(*j->outcome));
    }
    jobs.clear();
    spare = std::move(jobs);
    for (auto& notice : notices) {
      if (closing) return;
      settled();
      loop.invoke(notice);
    }
    if (retired && pending == 0 && !closing) close();
  }

  uv_async_t async;
  std::shared_ptr<mailbox> box;
  std::vector<std::shared_ptr<job>> spare;  // emptied by the last drain, handed to the threads by the next
  job* awaited = nullptr;  // jobs sent from this loop and not yet delivered
  int pending = 0;         // those, and notices to come
  std::chrono::microseconds spin;
  spinner spinning;
};

void mailbox::deliver(std::shared_ptr<job> j) {
  std::lock_guard lock(mutex);
  if (!target) return;
  ready.push_back(std::move(j));
  if (ready.size() == 1 && !spinning) uv_async_send(&target->async);
}

void mailbox::notify(unique_function<void()> notice) {
  std::lock_guard lock(mutex);
  if (!target) return;
  notices.push_back(std::move(notice));
  uv_async_send(&target->async);
}

struct pool_state : std::enable_shared_from_this<pool_state> {
  pool_state(std::map<std::string, pool_task, std::less<>> t, pool_options o);

  // A thread of the pool.
  struct worker {
    std::thread thread;
    int index = 0;
    std::shared_ptr<job> current;  // the job it runs
    bool exited = false;
  };

  void submit(message&& in, run_options options, std::stop_token stop, pool::done_callback done,
              std::shared_ptr<job>* made = nullptr);
  std::shared_ptr<mailbox> mailbox_here(inbox** here);
  bool start_thread();
  // Queued runs that no free or new thread takes at once: what max_queue
  // bounds (piscina's count). Under the mutex.
  std::size_t waiting_for_a_thread() const {
    std::size_t takers = options.max_threads > running ? options.max_threads - running : 0;
    return queued > takers ? queued - takers : 0;
  }
  bool unqueue(const std::shared_ptr<job>& j);
  void work(worker& me);
  void execute(job& j, int thread);
  void take_back(const std::shared_ptr<job>& j);
  void abandon(const std::shared_ptr<job>& j);
  void when_idle(unique_function<void()> done);
  void finish_if_idle();
  void destroy_all();
  void join_all();

  const std::map<std::string, pool_task, std::less<>> tasks;
  pool_options options;
  const clock::time_point started = clock::now();

  mutable adaptive_mutex mutex;
  std::condition_variable wake;
  job_queue<std::shared_ptr<job>> queue;
  std::atomic<std::size_t> queued{0};  // queue.size(), for spinning threads, which look without the mutex
  std::size_t active = 0;   // queued or running
  std::size_t running = 0;
  std::size_t threads = 0;  // started and not exited
  std::size_t idle = 0;     // waiting for a job
  std::size_t spinning = 0; // polling for a job before they wait
  int next_index = 1;
  std::list<worker> workers;
  std::map<crew::loop*, std::shared_ptr<mailbox>> boxes;
  std::vector<std::pair<std::shared_ptr<mailbox>, unique_function<void()>>> idle_waiters;
  bool closing = false;    // close() or destroy(): no new jobs
  bool ending = false;     // the pool object is going: every thread exits

  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint64_t> busy_ns{0};
  histogram wait_time, run_time;
};

namespace {

// A timeout or a stop request, on the job's loop: the run completes now with
// `why`; a queued task leaves the queue, a running one is asked to stop. The
// pool may be gone by then (destroy() took the queue already).
void end_early(const std::weak_ptr<pool_state>& pool, const std::weak_ptr<job>& weak, inbox* home,
               std::error_code why) {
  std::shared_ptr<job> j = weak.lock();
  if (!j || !j->local) return;
  if (std::shared_ptr<pool_state> p = pool.lock()) p->take_back(j);
  home->complete(*j, j->cancelled ? uv_error(UV_ECANCELED) : why);  // destroy() came first
}

}  // namespace

pool_state::pool_state(std::map<std::string, pool_task, std::less<>> t, pool_options o)
    : tasks(std::move(t)), options(std::move(o)) {
  if (options.max_threads == 0) options.max_threads = std::max(1u, std::thread::hardware_concurrency());
  if (options.min_threads == 0) options.min_threads = std::max<std::size_t>(1, options.max_threads / 2);
  options.min_threads = std::min(options.min_threads, options.max_threads);
  if (options.max_queue == pool_options::auto_queue) options.max_queue = options.max_threads * options.max_threads;
  std::lock_guard lock(mutex);
  for (std::size_t i = 0; i < options.min_threads; ++i) start_thread();
}

// This loop's mailbox, and its inbox, made on first use. Under the mutex.
std::shared_ptr<mailbox> pool_state::mailbox_here(inbox** here) {
  crew::loop& l = crew::loop::current();
  std::shared_ptr<mailbox>& box = boxes[&l];
  // `target` changes on this loop's thread only: no need for the mailbox's lock to read it here.
  if (box && box->target) {
    *here = box->target;
    return box;
  }
  box = std::make_shared<mailbox>();
  *here = new inbox(l, box, options.spin);
  return box;
}

void pool_state::submit(message&& in, run_options o, std::stop_token stop, pool::done_callback done,
                        std::shared_ptr<job>* made) {
  auto j = std::allocate_shared<job>(recycling_allocator<job>());
  j->in = std::move(in);
  j->priority = o.priority;
  j->local.emplace();
  j->local->done = std::move(done);
  j->local->self = j;
  if (made) *made = j;
  inbox* here = nullptr;
  std::error_code refused;
  {
    std::lock_guard lock(mutex);
    j->box = mailbox_here(&here);
    auto task = tasks.find(o.task);
    if (closing)
      refused = make_error_code(errc::pool_closed);
    else if (task == tasks.end())
      refused = make_error_code(errc::pool_unknown_task);
    else if (waiting_for_a_thread() >= options.max_queue)
      refused = make_error_code(errc::queue_full);
    if (!refused) {
      j->fn = &task->second;
      if (j->fn->sees_context()) j->stop = std::stop_source();
      j->queued_at = clock::now();
      j->in_queue = true;
      queue.push(o.priority, j);
      queued = queue.size();
      ++active;
      // A spinning thread takes a job without a wake-up, each idle thread one
      // more; a job more than they can take gets a thread of its own.
      if (queued > spinning && idle > 0) wake.notify_one();
      if (queued > spinning + idle && threads < options.max_threads && !start_thread() && threads == 0) {
        unqueue(j);  // no thread at all, and none to be had: the run fails now rather than wait for ever
        refused = uv_error(UV_EAGAIN);
      }
    }
  }
  j->local->home = here;
  here->await(j.get());
  if (refused) {
    // Completed on a later turn, never inside run().
    here->defer([j, refused, here] {
      if (!here->closing) here->complete(*j, refused);
    });
    return;
  }
  // The timer and the relay go with the job's loop-side part, before the inbox.
  std::weak_ptr<pool_state> pool = weak_from_this();
  std::weak_ptr<job> weak = j;
  if (o.timeout.count() > 0) {
    j->local->deadline.emplace(here->loop);
    j->local->deadline->start(o.timeout, {}, [pool, weak, here] { end_early(pool, weak, here, uv_error(UV_ETIMEDOUT)); });
  }
  if (stop.stop_possible())
    j->local->on_stop.emplace(here->loop, std::move(stop),
                              [pool, weak, here] { end_early(pool, weak, here, uv_error(UV_ECANCELED)); });
}

// Started under the mutex. False when the system has no thread to give
// (EAGAIN: RLIMIT_NPROC, memory): the pool goes on with those it has.
bool pool_state::start_thread() {
  // Threads that stopped (idle) are joined here: they no longer need the mutex.
  for (auto it = workers.begin(); it != workers.end();) {
    if (!it->exited) {
      ++it;
      continue;
    }
    it->thread.join();
    it = workers.erase(it);
  }
  worker& w = workers.emplace_back();
  try {
    w.thread = std::thread([this, &w] { work(w); });  // it waits for the mutex: the counts below come first
  } catch (const std::system_error&) {
    workers.pop_back();
    return false;
  }
  w.index = next_index++;
  ++threads;
  return true;
}

void pool_state::work(worker& me) {
  std::unique_lock<std::mutex> lock(mutex);  // as condition_variable needs it
  bool just_ran = false;
  for (;;) {
    if (ending) break;
    if (!queue.empty()) {
      std::shared_ptr<job> j = queue.pop();
      queued = queue.size();
      j->in_queue = false;
      me.current = j;
      ++running;
      lock.unlock();
      execute(*j, me.index);
      j->box->deliver(j);
      lock.lock();
      me.current.reset();
      --running;
      --active;
      finish_if_idle();
      just_ran = true;
      continue;
    }
    if (closing) break;
    if (just_ran && options.spin.count() > 0) {
      // Poll for the next job a while before sleeping.
      just_ran = false;
      ++spinning;
      lock.unlock();
      auto until = clock::now() + options.spin;
      for (int turn = 1; queued.load(std::memory_order_relaxed) == 0; ++turn) {
        if (turn % 16 == 0 && clock::now() > until) break;  // the clock costs more than a look at the queue
        std::this_thread::yield();
      }
      lock.lock();
      --spinning;
      continue;
    }
    ++idle;
    bool stays = threads <= options.min_threads || options.idle_timeout.count() <= 0;
    auto has_work = [this] { return !queue.empty() || closing || ending; };
    bool woken = true;
    if (stays)
      wake.wait(lock, has_work);
    else
      woken = wake.wait_for(lock, options.idle_timeout, has_work);
    --idle;
    if (!woken && threads > options.min_threads) break;
  }
  --threads;
  me.exited = true;
}

void pool_state::execute(job& j, int thread) {
  auto began = clock::now();
  wait_time.record(nanoseconds(began - j.queued_at));
  task_context context{j.stop.get_token(), options.worker_data, thread};
  // The input ends here, on this thread, whatever the task left of it: not on
  // the loop, which would pay for freeing a large value after the callback.
  message in = std::move(j.in);
  try {
    j.outcome.emplace((*j.fn)(std::move(in), context));
  } catch (...) {
    j.outcome.emplace(std::current_exception());
  }
  std::uint64_t took = nanoseconds(clock::now() - began);
  run_time.record(took);
  busy_ns.fetch_add(took, std::memory_order_relaxed);
  completed.fetch_add(1, std::memory_order_relaxed);
}

// Takes a job out of the queue if it waits there. Under the mutex.
bool pool_state::unqueue(const std::shared_ptr<job>& j) {
  if (!j->in_queue) return false;
  queue.remove(j->priority, j);
  queued = queue.size();
  j->in_queue = false;
  --active;
  return true;
}

// Removes a job from the queue if it waits there; asks it to stop if it runs.
void pool_state::take_back(const std::shared_ptr<job>& j) {
  {
    std::lock_guard lock(mutex);
    if (unqueue(j)) finish_if_idle();
  }
  j->stop.request_stop();
}

// The awaitable went before the run completed (on the job's loop): no callback.
void pool_state::abandon(const std::shared_ptr<job>& j) {
  take_back(j);
  if (j->local) j->local->home->forget(*j);
}

// done runs on this loop once no job is queued or running. Under the mutex.
void pool_state::when_idle(unique_function<void()> done) {
  inbox* here = nullptr;
  std::shared_ptr<mailbox> box = mailbox_here(&here);
  here->await(nullptr);
  if (!done) done = [] {};
  idle_waiters.emplace_back(std::move(box), std::move(done));
  finish_if_idle();
}

// Under the mutex.
void pool_state::finish_if_idle() {
  if (active != 0 || idle_waiters.empty()) return;
  for (auto& [box, done] : std::exchange(idle_waiters, {})) box->notify(std::move(done));
}

// Every job not complete gets ECANCELED; running ones are asked to stop.
void pool_state::destroy_all() {
  std::vector<std::shared_ptr<job>> gone;
  {
    std::lock_guard lock(mutex);
    closing = true;
    gone = queue.take_all();
    for (auto& j : gone) j->in_queue = false;
    active -= gone.size();
    queued = 0;
    for (worker& w : workers)
      if (w.current) gone.push_back(w.current);
    wake.notify_all();
  }
  for (auto& j : gone) {
    j->cancelled = true;
    j->stop.request_stop();
    j->box->deliver(j);
  }
}

void pool_state::join_all() {
  std::list<worker> all;
  {
    std::lock_guard lock(mutex);
    ending = true;
    wake.notify_all();
    all.splice(all.end(), workers);
    for (auto& [l, box] : boxes) {
      std::lock_guard box_lock(box->mutex);
      box->retired = true;
      if (box->target) uv_async_send(&box->target->async);
    }
  }
  for (worker& w : all) w.thread.join();
}

// The awaitable form of a run: submitted when first awaited.
struct pool_run final : operation<result<message>> {
  pool_run(crew::loop& l, std::shared_ptr<pool_state> p, message m, run_options o, std::stop_token s)
      : operation(l), state(std::move(p)), in(std::move(m)), task(o.task), options(o), stop(std::move(s)) {
    options.task = task;  // the caller's name may be gone by the time the run is awaited
  }

  void start() override {
    std::weak_ptr<operation<result<message>>> self = weak_from_this();
    state->submit(std::move(in), options, std::move(stop),
                  [self](result<message> r) {
                    if (auto op = self.lock()) op->complete(std::move(r));
                  },
                  &submitted);
  }
  void cancel() noexcept override {
    if (submitted) state->abandon(submitted);
  }

  std::shared_ptr<pool_state> state;
  message in;
  std::string task;
  run_options options;
  std::stop_token stop;
  std::shared_ptr<job> submitted;
};

}  // namespace detail

pool::pool(std::map<std::string, pool_task, std::less<>> tasks, pool_options options)
    : state_(std::make_shared<detail::pool_state>(std::move(tasks), std::move(options))) {}

pool::pool(pool_task task, pool_options options)
    : pool(std::map<std::string, pool_task, std::less<>>{{"", std::move(task)}}, std::move(options)) {}

pool::pool(pool&&) noexcept = default;

pool& pool::operator=(pool&& other) noexcept {
  if (this != &other) {
    pool gone(std::move(*this));
    state_ = std::move(other.state_);
  }
  return *this;
}

pool::~pool() {
  if (!state_) return;
  state_->destroy_all();
  state_->join_all();
}

void pool::run(message in, run_options options, done_callback done, std::stop_token stop) {
  if (!state_) throw std::system_error(make_error_code(errc::pool_closed), "crew::pool::run");
  state_->submit(std::move(in), options, std::move(stop), std::move(done));
}

awaitable<result<message>> pool::run(message in, run_options options, std::stop_token stop) {
  if (!state_) throw std::system_error(make_error_code(errc::pool_closed), "crew::pool::run");
  return awaitable<result<message>>(
      std::make_shared<detail::pool_run>(loop::current(), state_, std::move(in), options, std::move(stop)));
}

void pool::close(unique_function<void()> done) {
  if (!state_) {
    if (done) loop::current().later(std::move(done));  // a moved-from pool is done at once
    return;
  }
  std::lock_guard lock(state_->mutex);
  state_->closing = true;
  state_->wake.notify_all();
  state_->when_idle(std::move(done));
}

void pool::destroy(unique_function<void()> done) {
  if (!state_) {
    if (done) loop::current().later(std::move(done));
    return;
  }
  state_->destroy_all();
  std::lock_guard lock(state_->mutex);
  state_->when_idle(std::move(done));
}

pool_stats pool::stats() const {
  pool_stats s;
  if (!state_) return s;
  const detail::pool_state& p = *state_;
  {
    std::lock_guard lock(p.mutex);
    s.threads = p.threads;
    s.running = p.running;
    s.queue_size = p.queue.size();
  }
  s.completed = p.completed.load(std::memory_order_relaxed);
  double capacity = static_cast<double>(detail::nanoseconds(detail::clock::now() - p.started)) *
                    static_cast<double>(p.options.max_threads);
  s.utilization = capacity > 0 ? static_cast<double>(p.busy_ns.load(std::memory_order_relaxed)) / capacity : 0;
  s.wait_time = p.wait_time.summary();
  s.run_time = p.run_time.summary();
  return s;
}

}  // namespace crew
