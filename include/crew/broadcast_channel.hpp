// Broadcast channels: Node's BroadcastChannel, one-to-many between the threads
// of a process.
//
//   crew::broadcast_channel news("news");          // on any thread, any number of them
//   news.on_message([](crew::message m) { ... });  // every other "news" channel's posts
//   (void)news.post_message("hello, everyone");    // to every other "news" channel
//
// Each receiver gets its own copy (message::clone()), in the order posted by
// each sender.
#pragma once

#include <memory>
#include <string>
#include <system_error>

#include "crew/message_port.hpp"

namespace crew {

/// A subscription to the channel called name(). Move-only; destroying it
/// closes it. Used on one thread, like a message_port: on_message binds it to
/// the calling thread's current loop, which it keeps alive until close() or
/// unref(), as Node's does.
class broadcast_channel {
 public:
  /// Joins the channel called `name`.
  explicit broadcast_channel(std::string name);
  broadcast_channel(broadcast_channel&&) noexcept;
  broadcast_channel& operator=(broadcast_channel&&) noexcept;
  ~broadcast_channel();

  const std::string& name() const noexcept { return name_; }

  /// Sends a copy of m to every other open channel of the same name, on any
  /// thread. Errors: ERR_CLOSED_MESSAGE_PORT after close(); DataCloneError for
  /// a message with ports (they cannot be copied). Like Node's postMessage,
  /// which returns nothing, a call may ignore the result.
  std::error_code post_message(const message& m);

  /// Calls fn with each message posted by the other channels of this name.
  void on_message(message_port::message_callback fn) { port_.on_message(std::move(fn)); }

  /// Leaves the channel; no callback runs afterwards. Idempotent.
  void close() noexcept;

  void ref() noexcept { port_.ref(); }
  void unref() noexcept { port_.unref(); }

 private:
  std::string name_;
  message_port port_;  // receives; its core is what the registry lists
};

}  // namespace crew
