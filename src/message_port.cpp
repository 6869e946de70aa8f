#include "crew/message_port.hpp"

#include "detail/port_core.hpp"

namespace crew {

message_port::message_port() noexcept = default;

message_port::message_port(std::shared_ptr<detail::port_core> core) noexcept : core_(std::move(core)) {}

message_port::message_port(message_port&& other) noexcept
    : handle_owner(std::move(other)),
      core_(std::move(other.core_)),
      peer_(std::move(other.peer_)),
      spin_(other.spin_),
      referenced_(other.referenced_) {}

message_port& message_port::operator=(message_port&& other) noexcept {
  if (this != &other) {
    close();
    handle_owner::operator=(std::move(other));
    core_ = std::move(other.core_);
    peer_ = std::move(other.peer_);
    spin_ = other.spin_;
    referenced_ = other.referenced_;
  }
  return *this;
}

message_port::~message_port() { close(); }

detail::port_listener* message_port::listener() {
  if (auto* l = state_as<detail::port_listener>()) return l;
  if (!core_) return nullptr;
  auto* l = new detail::port_listener(loop::current(), core_);
  l->spin = spin_;
  l->referenced = referenced_;
  adopt(l);
  l->update_ref();
  {
    std::lock_guard lock(core_->mutex);
    core_->listener = l;
  }
  l->schedule();  // messages or an end that came before
  return l;
}

void message_port::stop_listening() noexcept { handle_owner::close(); }

void message_port::deliver_queued() {
  if (auto* l = state_as<detail::port_listener>()) l->drain();
}

std::error_code message_port::post_message(message m) {
  if (!core_) return errc::closed_message_port;
  if (!std::as_const(m).ports().empty()) return transfer_ports(m);
  return deliver(m);
}

std::error_code message_port::transfer_ports(message& m) {
  for (message_port& port : m.ports()) {
    if (!port.core_) return errc::data_clone_error;  // a closed port cannot travel
    std::shared_ptr<detail::port_core> peer;
    {
      std::lock_guard lock(core_->mutex);
      peer = core_->peer;
    }
    if (port.core_ == core_ || port.core_ == peer) return errc::data_clone_error;  // Node: "contains source port"
    port.stop_listening();  // it will listen on the receiver's thread
  }
  return deliver(m);
}

std::error_code message_port::deliver(message& m) {
  // The peer never changes, so it is looked up once, not under a lock per post;
  // a peer that closes refuses the push.
  if (!peer_) {
    std::lock_guard lock(core_->mutex);
    peer_ = core_->peer;
  }
  if (!peer_ || !peer_->push(m)) return errc::closed_message_port;
  if (auto* l = state_as<detail::port_listener>()) l->note_activity();  // an answer may follow soon
  return {};
}

void message_port::on_message(message_callback fn) {
  if (auto* l = listener()) {
    l->on_message = std::move(fn);
    ++l->message_callbacks;
    l->update_ref();
    l->schedule();
  }
}

void message_port::report_messageerror(std::error_code error) {
  if (auto* l = state_as<detail::port_listener>()) detail::report_messageerror(l, error);
}

void message_port::on_messageerror(error_callback fn) {
  if (auto* l = listener()) l->on_messageerror = std::move(fn);
}

void message_port::on_close(close_callback fn) {
  if (auto* l = listener()) l->on_close = std::move(fn);
}

void message_port::close() noexcept {
  handle_owner::close();
  peer_.reset();
  if (auto core = std::move(core_)) core->close();
}

void message_port::set_spin(std::chrono::microseconds spin) noexcept {
  spin_ = spin;
  if (auto* l = state_as<detail::port_listener>()) l->spin = spin;
}

void message_port::ref() noexcept {
  referenced_ = true;
  if (auto* l = state_as<detail::port_listener>()) {
    l->referenced = true;
    l->update_ref();
  }
}

void message_port::unref() noexcept {
  referenced_ = false;
  if (auto* l = state_as<detail::port_listener>()) {
    l->referenced = false;
    l->update_ref();
  }
}

message_channel::message_channel() {
  auto a = std::make_shared<detail::port_core>();
  auto b = std::make_shared<detail::port_core>();
  detail::port_core::entangle(a, b);
  port1 = message_port(std::move(a));
  port2 = message_port(std::move(b));
}

std::optional<message> receive_message_on_port(message_port& port) {
  if (!port.core_) return std::nullopt;
  if (auto* l = port.state_as<detail::port_listener>()) return l->pop();
  return port.core_->pop();
}

namespace detail {

void report_messageerror(port_listener* listener, std::error_code error) {
  if (listener->on_messageerror) listener->loop.invoke(listener->on_messageerror, error);
}

}  // namespace detail
}  // namespace crew
