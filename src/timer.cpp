#include "crew/timer.hpp"

namespace crew {

struct timer::state final : detail::handle_state {
  using handle_state::handle_state;
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&handle); }
  uv_timer_t handle;
  callback fn;
};

timer::timer(loop& l) {
  auto* s = new state(l);
  uv_timer_init(l.native(), &s->handle);  // cannot fail
  adopt(s);
}

void timer::start(duration timeout, duration repeat, callback fn) {
  state* s = state_as<state>();
  if (!s) return;
  s->fn = std::move(fn);
  uv_timer_start(&s->handle, &timer::on_timeout, static_cast<uint64_t>(timeout.count()),
                 static_cast<uint64_t>(repeat.count()));
}

void timer::stop() noexcept {
  if (state* s = state_as<state>()) uv_timer_stop(&s->handle);
}

bool timer::active() const noexcept {
  state* s = state_as<state>();
  return s && uv_is_active(s->uv());
}

void timer::on_timeout(uv_timer_t* handle) {
  auto* s = static_cast<state*>(handle->data);
  // The callback is moved out while it runs, so that it may restart its own
  // timer with a new callback (or destroy the timer) without destroying the
  // function that is executing.
  callback running = std::move(s->fn);
  s->loop.invoke(running);
  if (!s->fn && !s->closing && uv_is_active(s->uv())) s->fn = std::move(running);
}

timer set_timeout(timer::duration delay, timer::callback fn, loop& l) {
  timer t(l);
  t.start(delay, timer::duration::zero(), std::move(fn));
  return t;
}

timer set_interval(timer::duration period, timer::callback fn, loop& l) {
  timer t(l);
  t.start(period, period, std::move(fn));
  return t;
}

}  // namespace crew
