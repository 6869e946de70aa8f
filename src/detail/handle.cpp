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
  uv_close(uv(), [](uv_handle_t* handle) { delete static_cast<handle_state*>(handle->data); });
  // Last: the hook may run code that destroys what owned this block.
  on_closing();
}

}  // namespace crew::detail
