#include "detail/port_core.hpp"

namespace crew::detail {

bool port_core::push(message& m) { return push(queued_message(m)); }

bool port_core::push_copy(const message& m) { return push(queued_message(m)); }

bool port_core::push(queued_message entry) {  // made before the lock
  std::lock_guard lock(mutex);
  if (closed) return false;
  inbox.push_back(std::move(entry));
  if (!queued.load(std::memory_order_relaxed)) queued.store(true, std::memory_order_relaxed);  // written once a batch
  // uv_async_send coalesces: a burst of posts wakes the listener once. A
  // spinning listener polls the inbox and needs no wake-up at all.
  if (listener && !spinning) listener->schedule();
  return true;
}

void port_core::close() noexcept {
  std::shared_ptr<port_core> other;
  std::vector<queued_message> dropped;  // destroyed after the lock: their ports close other cores
  {
    std::lock_guard lock(mutex);
    if (closed) return;
    closed = true;
    other = std::move(peer);
    dropped.swap(inbox);
    head = 0;
    update_queued();
  }
  if (other) other->peer_gone();
}

void port_core::peer_gone() noexcept {
  std::lock_guard lock(mutex);
  peer.reset();
  peer_closed = true;
  if (listener) listener->schedule();
}

std::optional<message> port_core::pop() {
  std::lock_guard lock(mutex);
  if (head == inbox.size()) return std::nullopt;
  message m = inbox[head++].take();
  if (head == inbox.size()) {
    inbox.clear();
    head = 0;
  }
  update_queued();
  return m;
}

void port_core::entangle(const std::shared_ptr<port_core>& a, const std::shared_ptr<port_core>& b) {
  a->peer = b;
  b->peer = a;
}

port_listener::port_listener(crew::loop& l, std::shared_ptr<port_core> c) : handle_state(l), core(std::move(c)) {
  uv_async_init(l.native(), &async, [](uv_async_t* a) { static_cast<port_listener*>(a->data)->drain(); });
}

void port_listener::on_closing() noexcept {
  {
    std::lock_guard lock(core->mutex);
    if (core->listener == this) core->listener = nullptr;
    core->spinning = false;
  }
  spinning.close();
}

void port_listener::update_ref() noexcept {
  if (referenced && on_message)
    uv_ref(uv());
  else
    uv_unref(uv());
}

void port_listener::drain() {
  bool ended;
  {
    std::lock_guard lock(core->mutex);
    if (on_message && next == batch.size()) {  // (a drain inside a callback goes on with the batch it has)
      batch.clear();
      next = 0;
      batch.swap(core->inbox);
      if (core->head > 0) batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(core->head));
      core->head = 0;
      core->update_queued();
    }
    ended = core->peer_closed && core->head == core->inbox.size();
  }
  bool delivered = false;
  while (next < batch.size() && on_message && !closing) {
    // Moved out while it runs, so that it may replace itself or close the port.
    message_port::message_callback running = std::move(on_message);
    unsigned generation = message_callbacks;
    delivered = true;
    loop.invoke(running, batch[next++].take());
    if (generation == message_callbacks && !closing) on_message = std::move(running);
  }
  if (closing) return;
  if (next < batch.size()) {
    // Delivery stopped (the callback was cleared): what is left waits, first in line.
    std::lock_guard lock(core->mutex);
    core->inbox.erase(core->inbox.begin(), core->inbox.begin() + static_cast<std::ptrdiff_t>(core->head));
    core->head = 0;
    core->inbox.insert(core->inbox.begin(), std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(next)),
                       std::make_move_iterator(batch.end()));
    core->update_queued();
    ended = false;
  }
  batch.clear();
  next = 0;
  if (delivered) keep_spinning();
  if (ended) {
    {
      std::lock_guard lock(core->mutex);
      ended = core->head == core->inbox.size();  // nothing arrived since
    }
    if (!ended) return;
    message_port::close_callback fn = std::move(on_close);
    close();  // the channel is over: the port no longer keeps the loop alive
    if (fn) loop.invoke(fn);
  }
}

std::optional<message> port_listener::pop() {
  if (next < batch.size()) return batch[next++].take();  // taken out by a drain, not yet delivered: older
  return core->pop();
}

void port_listener::keep_spinning() noexcept {
  if (closing) return;
  auto on_turn = [](void* self) {
    auto* listener = static_cast<port_listener*>(self);
    if (listener->core->queued.load(std::memory_order_relaxed)) listener->drain();
  };
  auto on_stop = [](void* self) { static_cast<port_listener*>(self)->stop_spinning(); };
  if (!spinning.keep(loop.native(), spin, this, on_turn, on_stop)) return;
  std::lock_guard lock(core->mutex);
  core->spinning = true;
}

void port_listener::stop_spinning() noexcept {
  spinning.stop();
  std::lock_guard lock(core->mutex);
  core->spinning = false;
  // Posts made while spinning sent no wake-up: if one is still queued, wake now.
  if (core->head != core->inbox.size() || core->peer_closed) schedule();
}

}  // namespace crew::detail
