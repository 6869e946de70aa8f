#include "crew/detail/handle.hpp"

#include <cassert>

#include "crew/loop.hpp"

namespace crew::detail {

handle_state::~handle_state() { assert(!owner && previous == nullptr && loop.handles_ != this); }

void handle_state::attach(handle_owner* new_owner) noexcept {
  owner = new_owner;
  uv()->data = this;
  next = loop.handles_;
  if (next) next->previous = this;
  loop.handles_ = this;
}

void handle_state::close() noexcept {
  if (closing) return;
  closing = true;
  if (owner) owner->state_ = nullptr;
  owner = nullptr;
  if (previous)
    previous->next = next;
  else
    loop.handles_ = next;
  if (next) next->previous = previous;
  previous = next = nullptr;
  uv_close(uv(), &handle_state::on_uv_close);
  // Last: the hook may run code that destroys what owned this block.
  on_closing();
}

}  // namespace crew::detail

namespace crew::detail {

void handle_state::on_uv_close(uv_handle_t* handle) noexcept {
  auto* s = static_cast<handle_state*>(handle->data);
  s->close_done = true;
  if (s->deferred == 0) delete s;
}

void handle_state::defer(unique_function<void()> fn) {
  // The guard keeps the block allocated and the loop running until fn has run
  // (a post alone keeps neither); its destructor releases both, whether fn ran
  // or the post was dropped unrun (a loop destroyed first), on the loop's thread.
  struct guard {
    handle_state* s;
    explicit guard(handle_state* state) noexcept : s(state) {
      ++s->deferred;
      s->loop.hold();
    }
    guard(guard&& other) noexcept : s(std::exchange(other.s, nullptr)) {}
    guard& operator=(guard&&) = delete;
    ~guard() {
      if (!s) return;
      s->loop.unhold();
      if (--s->deferred == 0 && s->close_done) delete s;
    }
  };
  loop.post([g = guard(this), fn = std::move(fn)]() mutable { fn(); });
}

}  // namespace crew::detail
