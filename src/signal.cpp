#include "crew/signal.hpp"

#include "crew/error.hpp"

namespace crew {

signal_watcher::signal_watcher(loop& l) {
  auto* s = new state(l);
  if (int rc = uv_signal_init(l.native(), &s->handle)) {
    delete s;
    throw std::system_error(uv_error(rc), "uv_signal_init");
  }
  adopt(s);
  unref();
}

std::error_code signal_watcher::start(int signum, callback fn) { return begin(signum, std::move(fn), false); }

std::error_code signal_watcher::start_oneshot(int signum, callback fn) {
  return begin(signum, std::move(fn), true);
}

std::error_code signal_watcher::begin(int signum, callback fn, bool oneshot) {
  state* s = state_as<state>();
  if (!s) return uv_error(UV_EBADF);
  auto deliver = [](uv_signal_t* handle, int number) { static_cast<state*>(handle->data)->dispatch(number); };
  callback previous = std::exchange(s->fn, std::move(fn));
  int rc = oneshot ? uv_signal_start_oneshot(&s->handle, deliver, signum)
                   : uv_signal_start(&s->handle, deliver, signum);
  if (rc) s->fn = std::move(previous);
  return uv_error(rc);
}

void signal_watcher::stop() noexcept {
  if (state* s = state_as<state>()) uv_signal_stop(&s->handle);
}

int signal_watcher::signum() const noexcept {
  state* s = state_as<state>();
  return s && uv_is_active(s->uv()) ? s->handle.signum : 0;
}

signal_watcher on_signal(int signum, signal_watcher::callback fn, loop& l) {
  signal_watcher watcher(l);
  throw_if_error(watcher.start(signum, std::move(fn)), "on_signal");
  return watcher;
}

}  // namespace crew
