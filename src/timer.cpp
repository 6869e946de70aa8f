#include "crew/timer.hpp"

#include <atomic>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "detail/stop_relay.hpp"

namespace crew {

timer::timer(loop& l) {
  auto* s = new state(l);
  uv_timer_init(l.native(), &s->handle);  // cannot fail
  adopt(s);
}

void timer::start(duration timeout, duration repeat, callback fn) {
  state* s = state_as<state>();
  if (!s) return;
  s->fn = std::move(fn);
  auto on_timeout = [](uv_timer_t* handle) { static_cast<state*>(handle->data)->dispatch(); };
  uv_timer_start(&s->handle, on_timeout, static_cast<uint64_t>(timeout.count()),
                 static_cast<uint64_t>(repeat.count()));
}

void timer::stop() noexcept {
  if (state* s = state_as<state>()) uv_timer_stop(&s->handle);
}

bool timer::active() const noexcept {
  state* s = state_as<state>();
  return s && uv_is_active(s->uv());
}

timer scoped_timeout(timer::duration delay, timer::callback fn, loop& l) {
  timer t(l);
  t.start(delay, timer::duration::zero(), std::move(fn));
  return t;
}

timer scoped_interval(timer::duration period, timer::callback fn, loop& l) {
  timer t(l);
  t.start(period, period, std::move(fn));
  return t;
}

namespace {

// A timer its loop owns (set_timeout, set_interval): a handle block with no
// owner object, found by its id. It closes itself once a timeout has run, when
// cleared, or with its loop; closing unlists it, so a stale id finds nothing.
struct loop_timer final : detail::callback_handle_state<uv_timer_t, void()> {
  using callback_handle_state::callback_handle_state;
  void on_closing() noexcept override;
  std::uint64_t id = 0;
};

// Every loop-owned timer of the process by id (ids are never reused). One map
// under a mutex, since each thread's loop has timers of its own; it is never
// destroyed, so a loop destroyed late (at static destruction) still finds it.
struct timer_table {
  std::mutex mutex;
  std::unordered_map<std::uint64_t, loop_timer*> timers;  // guarded by mutex
  std::atomic<std::uint64_t> last_id{0};
};

timer_table& table() {
  static timer_table* t = new timer_table;
  return *t;
}

void loop_timer::on_closing() noexcept {
  std::lock_guard lock(table().mutex);
  table().timers.erase(id);
}

// The timer an id names, if it is alive and belongs to the calling thread's
// loop. A timer of another thread's loop is not looked at beyond its (fixed)
// loop, under the mutex: that thread alone may close it.
loop_timer* find(timer_id id) noexcept {
  if (id.value() == 0) return nullptr;
  std::lock_guard lock(table().mutex);
  auto it = table().timers.find(id.value());
  return it != table().timers.end() && it->second->loop.in_loop_thread() ? it->second : nullptr;
}

timer_id start_loop_timer(timer::duration delay, timer::duration repeat, timer::callback fn, loop& l) {
  auto* t = new loop_timer(l);
  uv_timer_init(l.native(), &t->handle);  // cannot fail
  t->attach(nullptr);
  t->fn = std::move(fn);
  t->id = ++table().last_id;
  {
    std::lock_guard lock(table().mutex);
    table().timers.emplace(t->id, t);
  }
  uv_timer_start(&t->handle, [](uv_timer_t* handle) {
    auto* self = static_cast<loop_timer*>(handle->data);
    self->dispatch();
    // A timeout is done once it has run (unless its callback cleared it already).
    if (!uv_is_active(self->uv())) self->close();
  }, static_cast<uint64_t>(delay.count()), static_cast<uint64_t>(repeat.count()));
  return timer_id(t->id);
}

}  // namespace

timer_id set_timeout(timer::duration delay, timer::callback fn, loop& l) {
  return start_loop_timer(delay, timer::duration::zero(), std::move(fn), l);
}

timer_id set_interval(timer::duration period, timer::callback fn, loop& l) {
  return start_loop_timer(period, period, std::move(fn), l);
}

void clear_timeout(timer_id id) noexcept {
  if (loop_timer* t = find(id)) t->close();
}

void clear_interval(timer_id id) noexcept { clear_timeout(id); }

void timer_id::unref() const noexcept {
  if (loop_timer* t = find(*this)) uv_unref(t->uv());
}

void timer_id::ref() const noexcept {
  if (loop_timer* t = find(*this)) uv_ref(t->uv());
}

bool timer_id::has_ref() const noexcept {
  loop_timer* t = find(*this);
  return t && uv_has_ref(t->uv());
}

bool timer_id::active() const noexcept { return find(*this) != nullptr; }

namespace {

// co_await crew::sleep(d): a timer of the operation's own, and a relay for
// the stop token; both go with the operation.
struct sleep_operation final : detail::operation<std::error_code> {
  sleep_operation(loop& l, timer::duration d, std::stop_token s) : operation(l), delay(d), stop(std::move(s)) {}

  void start() override {
    alarm.emplace(loop_);
    alarm->start(delay, timer::duration::zero(), [this] { complete({}); });
    if (stop.stop_possible())
      relay.emplace(loop_, std::move(stop), [this] {
        alarm.reset();
        complete(uv_error(UV_ECANCELED));
      });
  }

  void cancel() noexcept override {
    relay.reset();
    alarm.reset();
  }

  timer::duration delay;
  std::stop_token stop;
  std::optional<timer> alarm;
  std::optional<detail::stop_relay> relay;
};

}  // namespace

awaitable<std::error_code> sleep(timer::duration delay, loop& l) { return sleep(delay, std::stop_token(), l); }

awaitable<std::error_code> sleep(timer::duration delay, std::stop_token stop, loop& l) {
  return awaitable<std::error_code>(std::make_shared<sleep_operation>(l, delay, std::move(stop)));
}

}  // namespace crew
