// crew's errors: std::error_code values named like Node's `err.code`.
//
// Every failure crew reports is a std::error_code in crew's category. libuv's
// codes keep their values (UV_ENOENT, UV_ECANCELED, ...); crew's own conditions
// are the enumerators of crew::errc. Each code has Node's name and compares
// equal to the matching std::errc, so callers can test either way:
//
//   std::error_code ec = crew::uv_error(UV_ENOENT);
//   crew::error_name(ec);                         // "ENOENT"
//   ec == std::errc::no_such_file_or_directory;   // true
//   ec.message();                                  // "no such file or directory"
//
// Fallible calls return std::error_code or crew::result<T>; throwing
// conveniences throw std::system_error carrying the same code.
#pragma once

#include <exception>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace crew {

/// crew's own error conditions. Names follow Node where Node has one
/// (ERR_IPC_CHANNEL_CLOSED); error_name() returns that spelling.
enum class errc : int {
  ipc_channel_closed = 1,          ///< "ERR_IPC_CHANNEL_CLOSED": send on a closed channel.
  child_process_stdio_maxbuffer,   ///< "ERR_CHILD_PROCESS_STDIO_MAXBUFFER": output past max_buffer.
  invalid_message,                 ///< "ERR_INVALID_MESSAGE": a message that cannot be decoded.
  message_too_large,               ///< "ERR_MESSAGE_TOO_LARGE": a message over the size limit.
  queue_full,                      ///< "ERR_QUEUE_FULL": a bounded queue rejected the item.
  closed_message_port,             ///< "ERR_CLOSED_MESSAGE_PORT": post on a closed port or to a closed peer.
  data_clone_error,                ///< "DataCloneError": an attachment that cannot travel that way.
  uncaught_exception,              ///< "ERR_UNCAUGHT_EXCEPTION": user work threw; result::exception() has it.
  invalid_char,                    ///< "ERR_INVALID_CHAR": a control character (CR, LF, NUL...) in an HTTP field.
  invalid_http_token,              ///< "ERR_INVALID_HTTP_TOKEN": a header name that is not an HTTP token.
  http_invalid_status_code,        ///< "ERR_HTTP_INVALID_STATUS_CODE": a status outside 100..999.
  http_invalid_header_value,       ///< "ERR_HTTP_INVALID_HEADER_VALUE": a header the server sets itself.
  http_headers_sent,               ///< "ERR_HTTP_HEADERS_SENT": the answer's head has gone out already.
  line_too_long,                   ///< "ERR_LINE_TOO_LONG": readline met a line past its max_line_length.
  invalid_url,                     ///< "ERR_INVALID_URL": text that the URL parser cannot read as a URL.
  pool_closed,                     ///< "ERR_POOL_CLOSED": a task sent to a pool after close() or destroy().
  pool_unknown_task,               ///< "ERR_POOL_UNKNOWN_TASK": a task name the pool has no function for.
  pool_worker_exited,              ///< "ERR_POOL_WORKER_EXITED": a pool's worker process exited during the task.
};

/// The category of every code crew reports. Negative values are libuv's codes,
/// positive values are crew::errc. Thread-safe; lives for the whole program.
const std::error_category& error_category() noexcept;

/// Makes a crew code from one of crew's own conditions.
std::error_code make_error_code(errc e) noexcept;

/// Makes a crew code from a libuv status (a negative UV_E* value); 0 gives success.
std::error_code uv_error(int status) noexcept;

/// The code of a process killed by signal `signum` (a pool's worker that
/// crashed): error_name() gives the signal's name ("SIGSEGV"), message() its
/// description ("Segmentation fault").
std::error_code signal_error(int signum) noexcept;

/// Node's name for a code: "ENOENT", "ECANCELED", "ERR_IPC_CHANNEL_CLOSED".
/// Works for crew's category and for std::generic_category()/system_category()
/// (errno values); other categories give "UNKNOWN". Success gives "".
std::string error_name(const std::error_code& ec);

/// Throws std::system_error(ec, what) when ec holds an error.
inline void throw_if_error(const std::error_code& ec, const char* what) {
  if (ec) throw std::system_error(ec, what);
}

/// A value of type T or the error_code that explains why there is none.
/// Like std::expected<T, std::error_code> (C++23). value() on an error throws
/// std::system_error with that code.
///
/// When user code that should have produced the value threw (work on a pool
/// thread, a task), the result holds that exception: error() is
/// ERR_UNCAUGHT_EXCEPTION, exception() gives it, and value() rethrows it.
template <class T>
class [[nodiscard]] result {
 public:
  using value_type = T;

  result(T value) noexcept(std::is_nothrow_move_constructible_v<T>)  // NOLINT: implicit
      : state_(std::in_place_index<0>, std::move(value)) {}
  result(std::error_code ec) noexcept : state_(std::in_place_index<1>, ec) {}  // NOLINT: implicit
  result(errc e) noexcept : result(make_error_code(e)) {}                      // NOLINT: implicit
  /// A result that failed because user code threw `thrown` (not null).
  explicit result(std::exception_ptr thrown) noexcept : state_(std::in_place_index<2>, std::move(thrown)) {}

  bool has_value() const noexcept { return state_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  /// The error; a default (success) code when there is a value.
  std::error_code error() const noexcept {
    switch (state_.index()) {
      case 0: return {};
      case 1: return std::get<1>(state_);
      default: return make_error_code(errc::uncaught_exception);
    }
  }

  /// The exception user code threw instead of producing the value; null otherwise.
  std::exception_ptr exception() const noexcept {
    return state_.index() == 2 ? std::get<2>(state_) : std::exception_ptr();
  }

  T& value() & { return check(), std::get<0>(state_); }
  const T& value() const& { return check(), std::get<0>(state_); }
  T&& value() && { return check(), std::get<0>(std::move(state_)); }

  template <class U>
  T value_or(U&& fallback) const& {
    return has_value() ? std::get<0>(state_) : static_cast<T>(std::forward<U>(fallback));
  }

  T& operator*() & noexcept { return *std::get_if<0>(&state_); }
  const T& operator*() const& noexcept { return *std::get_if<0>(&state_); }
  T&& operator*() && noexcept { return std::move(*std::get_if<0>(&state_)); }
  T* operator->() noexcept { return std::get_if<0>(&state_); }
  const T* operator->() const noexcept { return std::get_if<0>(&state_); }

 private:
  void check() const {
    if (state_.index() == 1) throw std::system_error(std::get<1>(state_));
    if (state_.index() == 2) std::rethrow_exception(std::get<2>(state_));
  }

  std::variant<T, std::error_code, std::exception_ptr> state_;
};

}  // namespace crew

template <>
struct std::is_error_code_enum<crew::errc> : std::true_type {};
