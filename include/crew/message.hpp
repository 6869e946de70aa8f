// Messages: what crew's channels carry between threads and processes.
//
// A message is a structured value (an nlohmann::ordered_json: Node's JSON data
// model, object keys kept in insertion order as JavaScript keeps them) plus
// attachments: byte buffers that travel without a copy, shared buffers, message
// ports (between threads), and file descriptors (between processes).
// Any type with nlohmann's to_json / from_json (for nlohmann::json or
// ordered_json) converts to and from a message, so user types are sent and
// received as themselves:
//
//   struct point { int x, y; };
//   NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(point, x, y)
//
//   crew::message m = point{1, 2};
//   point p = m.get<point>();                      // {1, 2}
//   std::string wire = m.to_string();              // {"x":1,"y":2}, as JSON.stringify
//   auto back = crew::message::parse(wire);        // result<message>
//
// Between threads a message is moved; between processes it is serialized.
#pragma once

#include <nlohmann/json.hpp>

#include <concepts>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "crew/buffer.hpp"
#include "crew/error.hpp"
#include "crew/shared_buffer.hpp"

namespace crew {

class message_port;  // message_port.hpp: include it to send or receive ports

/// A structured value plus attachments. Move it to send it; copying is explicit
/// through clone(), because attachments are move-only.
class message {
 public:
  using value_type = nlohmann::ordered_json;  // keeps key order, as JSON.stringify does

  /// Deepest nesting parse() accepts. Deeper texts fail with ERR_INVALID_MESSAGE
  /// instead of exhausting the stack of the thread that parses them.
  static constexpr int max_depth = 1000;

  /// A null value.
  message() noexcept { ::new (static_cast<void*>(&value_)) value_type(); }

  /// The value of anything nlohmann's JSON types can hold: a json, a string, a
  /// number, a container, or a user type with to_json (for nlohmann::json or
  /// ordered_json).
  template <class T>
    requires(!std::same_as<std::remove_cvref_t<T>, message> &&
             (std::constructible_from<value_type, T> || std::constructible_from<nlohmann::json, T>))
  message(T&& value) {  // NOLINT: implicit, like json's
    ::new (static_cast<void*>(&value_)) value_type(to_value(std::forward<T>(value)));
  }

  message(message&& other) noexcept : extra_(std::move(other.extra_)) {
    ::new (static_cast<void*>(&value_)) value_type(std::move(other.value_));
  }
  ~message() {
    if (value_.is_structured() || value_.is_string() || value_.is_binary()) value_.~value_type();
  }
  message& operator=(message&& other) noexcept {
    value_ = std::move(other.value_);
    extra_ = std::move(other.extra_);
    return *this;
  }
  message(const message&) = delete;
  message& operator=(const message&) = delete;

  /// A deep copy: buffers are copied, shared buffers shared, descriptors copied
  /// as numbers. Ports cannot be copied: a message with ports has none in its
  /// clone.
  message clone() const;

  value_type& value() & noexcept { return value_; }
  const value_type& value() const& noexcept { return value_; }
  value_type&& value() && noexcept { return std::move(value_); }

  /// The value converted to T through from_json. Throws std::system_error with
  /// ERR_INVALID_MESSAGE, naming what did not fit, when the value has another shape.
  template <class T>
  T get() const {
    try {
      return from_value<T>();
    } catch (const nlohmann::json::exception& e) {
      throw std::system_error(make_error_code(errc::invalid_message), e.what());
    }
  }

  /// Like get(), but returns ERR_INVALID_MESSAGE instead of throwing.
  template <class T>
  result<T> try_get() const {
    try {
      return from_value<T>();
    } catch (const nlohmann::json::exception&) {
      return errc::invalid_message;
    }
  }

  /// Byte attachments, in the order attached.
  std::vector<buffer>& buffers();
  const std::vector<buffer>& buffers() const noexcept;

  /// Appends a byte attachment (moved, not copied). Returns *this.
  message& attach(buffer bytes) {
    buffers().push_back(std::move(bytes));
    return *this;
  }

  /// Shared buffers that travel with the message between threads (shared, not
  /// copied). To another process, send the buffer's fd() instead.
  std::vector<shared_buffer>& shared_buffers();
  const std::vector<shared_buffer>& shared_buffers() const noexcept;

  /// Ports transferred with the message to another thread (Node's transferList):
  /// the receiver takes them out and listens on them. They cannot cross
  /// processes. Include crew/message_port.hpp to use them.
  std::vector<message_port>& ports();
  const std::vector<message_port>& ports() const noexcept;

  /// Whether it carries any attachment (buffers, shared buffers, ports or descriptors).
  bool has_attachments() const noexcept;

  /// File descriptors that travel with the message between processes (over an
  /// ipc_channel, as SCM_RIGHTS). The message does not own them: a sender keeps
  /// its own, a receiver gets new ones that it must close.
  std::vector<int>& fds();
  const std::vector<int>& fds() const noexcept;

  /// The value as compact JSON text, as Node's JSON.stringify writes it: no
  /// raw newline can appear, so a newline can frame it. Invalid UTF-8 in strings
  /// is replaced by U+FFFD. Attachments are not part of the text.
  std::string to_string() const;

  /// Appends to_string()'s text to `out` (no temporary string).
  void append_to(std::string& out) const { append_json(out, value_); }
  /// The same for a value that is not in a message (no copy of it).
  static void append_json(std::string& out, const value_type& value);

  /// Parses one JSON text. Errors: ERR_INVALID_MESSAGE for text that is not JSON,
  /// not UTF-8, or nested deeper than max_depth.
  static result<message> parse(std::string_view text);

 private:
  // Types whose to_json / from_json take nlohmann::json (what
  // NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE writes) go through one conversion.
  template <class T>
  static value_type to_value(T&& value) {
    if constexpr (std::constructible_from<value_type, T>)
      return value_type(std::forward<T>(value));
    else
      return value_type(nlohmann::json(std::forward<T>(value)));
  }

  template <class T>
  T from_value() const {
    if constexpr (requires { value_.template get<T>(); })
      return value_.template get<T>();
    else
      return nlohmann::json(value_).template get<T>();
  }

  // Attachments are rare next to plain values: behind one pointer, a message
  // is two words to move. Defined in message.cpp, so that this header needs
  // neither message_port.hpp (which includes this one) nor its definitions.
  struct attachments;
  struct attachments_deleter {
    void operator()(attachments* a) const noexcept;
  };
  attachments& extra();

  // A null, a boolean or a number owns no memory, and for them the value's
  // destructor is skipped: nlohmann's is a call that is not inlined, and a
  // message moves through several hands on its way (a pool task's value, in and
  // out, costs less than the calls that would end its moved-from copies).
  union {
    value_type value_;
  };
  std::unique_ptr<attachments, attachments_deleter> extra_;
};

/// The JSON value every message holds: nlohmann::ordered_json, which keeps
/// keys in the order they were set, as JavaScript objects do.
using json = message::value_type;

}  // namespace crew
