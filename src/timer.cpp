#include "crew/timer.hpp"

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
