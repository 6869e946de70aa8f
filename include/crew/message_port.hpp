// Message ports: Node's MessageChannel and MessagePort, between threads.
//
// A message_channel makes two entangled ports; what one posts, the other
// receives, in order. A port can travel inside a message to another thread
// (message::ports()), which then listens on it; a worker talks to its parent
// through such a pair (worker_threads.hpp).
//
//   crew::message_channel channel;
//   channel.port2.on_message([](crew::message m) { std::cout << m.value() << "\n"; });
//   (void)channel.port1.post_message({{"hello", "world"}});
//   crew::message m("here is a port");
//   m.ports().push_back(std::move(channel.port1));        // transferred, as in a transferList
//   (void)worker.post_message(std::move(m));
//
// Messages move between threads: nothing is serialized or copied.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <system_error>

#include "crew/detail/handle.hpp"
#include "crew/unique_function.hpp"
#include "crew/loop.hpp"
#include "crew/message.hpp"

namespace crew {

namespace detail {
struct port_core;
struct port_listener;
struct worker_state;
void report_messageerror(port_listener* listener, std::error_code error);
}  // namespace detail

/// One end of a message channel. Move-only; destroying it closes it.
///
/// Thread-safety: a port is used by one thread at a time, the thread whose
/// loop listens on it (the first call of on_message, on_messageerror or on_close
/// binds it to the calling thread's current loop). post_message() is the only
/// call that reaches another thread, and it never blocks on the receiver.
///
/// Events run on the listening loop, never inside the call that caused them.
/// A port with a message callback keeps its loop alive (Node: a port with a
/// 'message' listener is ref'd) until the port closes or unref() is called.
class message_port : private detail::handle_owner {
 public:
  using message_callback = unique_function<void(message)>;
  using error_callback = unique_function<void(std::error_code)>;
  using close_callback = unique_function<void()>;

  /// A closed port, entangled with nothing.
  message_port() noexcept;
  message_port(message_port&& other) noexcept;
  message_port& operator=(message_port&& other) noexcept;
  ~message_port();

  /// Sends m to the entangled port, which receives it after everything posted
  /// before it. Ports in m.ports() move to the receiver (they stop listening
  /// here). Errors: ERR_CLOSED_MESSAGE_PORT when this port or its peer is
  /// closed (m is dropped); DataCloneError when m carries this port's own peer.
  /// Like Node's postMessage, which returns nothing, a call may ignore the result.
  std::error_code post_message(message m);

  /// Calls fn with each message, in order. Messages that arrived before are
  /// delivered first (from the loop, after this call). Replaces any earlier
  /// callback; an empty fn stops delivery (messages then wait in the queue).
  void on_message(message_callback fn);

  /// Like on_message(), but converts each message to T (message::try_get); a
  /// message that does not convert goes to on_messageerror with
  /// ERR_INVALID_MESSAGE instead (Node's 'messageerror').
  template <class T, class F>
    requires std::is_invocable_v<F&, T>
  void on_message(F fn);

  /// Receives the errors of a typed on_message<T>().
  void on_messageerror(error_callback fn);

  /// Called once when the channel ends from the other side: the peer port was
  /// closed or destroyed (with its thread, for a worker's port). Messages the
  /// peer posted before are delivered first. Closing this port yourself does
  /// not call it: after close() no callback of the port runs.
  void on_close(close_callback fn);

  /// Closes this end: queued messages are dropped, the peer gets its close
  /// event, later posts from either side fail. Idempotent.
  void close() noexcept;

  /// Whether the port is open and can post (its peer may have closed since).
  bool is_open() const noexcept { return core_ != nullptr; }

  /// After each message received or posted, the listening loop polls this
  /// port for `spin` before it sleeps, so that a quick answer is taken at once
  /// instead of after a wake-up (about 20 to 100 us on virtual machines). Costs
  /// CPU only while messages flow. 0 turns it off. Default: 50 us.
  void set_spin(std::chrono::microseconds spin) noexcept;

  /// A referenced port with a message callback keeps its loop alive (default).
  void ref() noexcept;
  void unref() noexcept;

 private:
  friend class message_channel;
  friend class broadcast_channel;
  friend struct detail::worker_state;
  friend std::optional<message> receive_message_on_port(message_port& port);

  explicit message_port(std::shared_ptr<detail::port_core> core) noexcept;
  detail::port_listener* listener();  // binds to the current loop on first use
  void stop_listening() noexcept;     // before the port moves to another thread
  void deliver_queued();              // what is queued, now (a worker's messages before its exit)
  std::error_code transfer_ports(message& m);
  void report_messageerror(std::error_code error);
  std::error_code deliver(message& m);  // m is taken (not copied) when it goes

  std::shared_ptr<detail::port_core> core_;
  std::shared_ptr<detail::port_core> peer_;  // core_'s peer, once looked up
  std::chrono::microseconds spin_{50};
  bool referenced_ = true;
};

/// Node's MessageChannel: two entangled ports.
class message_channel {
 public:
  message_channel();
  message_port port1;
  message_port port2;
};

/// Node's receiveMessageOnPort: takes the oldest queued message, if any,
/// without waiting and without the loop. Not for a port whose on_message
/// callback is set (that callback takes the messages).
std::optional<message> receive_message_on_port(message_port& port);

template <class T, class F>
  requires std::is_invocable_v<F&, T>
void message_port::on_message(F fn) {
  detail::port_listener* l = listener();
  on_message([l, fn = std::move(fn)](auto m) mutable {
    auto value = m.template try_get<T>();
    if (!value) return detail::report_messageerror(l, value.error());
    fn(std::move(value).value());
  });
}

}  // namespace crew
