// Messages: what crew's channels carry between threads and processes.
//
// A message is a structured value (an nlohmann::json, the same data model as
// Node's JSON) plus attachments: byte buffers that travel without a copy.
// Any type with nlohmann's to_json / from_json converts to and from a message,
// so user types are sent and received as themselves:
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
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "crew/buffer.hpp"
#include "crew/error.hpp"

namespace crew {

/// A structured value plus attachments. Move it to send it; copying is explicit
/// through clone(), because attachments are move-only.
class message {
 public:
  using value_type = nlohmann::json;

  /// Deepest nesting parse() accepts. Deeper texts fail with ERR_INVALID_MESSAGE
  /// instead of exhausting the stack of the thread that parses them.
  static constexpr int max_depth = 1000;

  /// A null value.
  message() = default;

  /// The value of anything nlohmann::json can hold: a json, a string, a number,
  /// a container, or a user type with to_json.
  template <class T>
    requires(!std::same_as<std::remove_cvref_t<T>, message> && std::constructible_from<value_type, T>)
  message(T&& value) : value_(std::forward<T>(value)) {}  // NOLINT: implicit, like json's

  message(message&&) noexcept = default;
  message& operator=(message&&) noexcept = default;
  message(const message&) = delete;
  message& operator=(const message&) = delete;

  /// A deep copy, attachments included.
  message clone() const;

  value_type& value() & noexcept { return value_; }
  const value_type& value() const& noexcept { return value_; }
  value_type&& value() && noexcept { return std::move(value_); }

  /// The value converted to T through from_json. Throws std::system_error with
  /// ERR_INVALID_MESSAGE, naming what did not fit, when the value has another shape.
  template <class T>
  T get() const {
    try {
      return value_.get<T>();
    } catch (const nlohmann::json::exception& e) {
      throw std::system_error(make_error_code(errc::invalid_message), e.what());
    }
  }

  /// Like get(), but returns ERR_INVALID_MESSAGE instead of throwing.
  template <class T>
  result<T> try_get() const {
    try {
      return value_.get<T>();
    } catch (const nlohmann::json::exception&) {
      return errc::invalid_message;
    }
  }

  /// Byte attachments, in the order attached.
  std::vector<buffer>& buffers() noexcept { return buffers_; }
  const std::vector<buffer>& buffers() const noexcept { return buffers_; }

  /// Appends a byte attachment (moved, not copied). Returns *this.
  message& attach(buffer bytes) {
    buffers_.push_back(std::move(bytes));
    return *this;
  }

  /// The value as compact JSON text, as Node's JSON.stringify writes it: no
  /// raw newline can appear, so a newline can frame it. Invalid UTF-8 in strings
  /// is replaced by U+FFFD. Attachments are not part of the text.
  std::string to_string() const;

  /// Parses one JSON text. Errors: ERR_INVALID_MESSAGE for text that is not JSON,
  /// not UTF-8, or nested deeper than max_depth.
  static result<message> parse(std::string_view text);

 private:
  value_type value_;
  std::vector<buffer> buffers_;
};

}  // namespace crew
