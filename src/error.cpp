#include "crew/error.hpp"

#include <string.h>
#include <uv.h>

#include <array>
#include <csignal>
#include <string_view>

namespace crew {
namespace {

struct own_error {
  errc code;
  std::string_view name;
  std::string_view message;
  std::errc condition;  // std::errc{}: none of the standard conditions fits
};

constexpr std::array own_errors{
    own_error{errc::ipc_channel_closed, "ERR_IPC_CHANNEL_CLOSED", "channel closed", std::errc::not_connected},
    own_error{errc::child_process_stdio_maxbuffer, "ERR_CHILD_PROCESS_STDIO_MAXBUFFER",
              "stdout or stderr exceeded max_buffer", std::errc::no_buffer_space},
    own_error{errc::invalid_message, "ERR_INVALID_MESSAGE", "message could not be decoded", std::errc::bad_message},
    own_error{errc::message_too_large, "ERR_MESSAGE_TOO_LARGE", "message exceeds the size limit",
              std::errc::message_size},
    own_error{errc::queue_full, "ERR_QUEUE_FULL", "queue is full", std::errc::resource_unavailable_try_again},
    own_error{errc::closed_message_port, "ERR_CLOSED_MESSAGE_PORT", "cannot send data on a closed message port",
              std::errc::broken_pipe},
    own_error{errc::data_clone_error, "DataCloneError", "an attachment of the message cannot be transferred",
              std::errc::invalid_argument},
    own_error{errc::uncaught_exception, "ERR_UNCAUGHT_EXCEPTION", "the work threw an exception", std::errc{}},
    own_error{errc::invalid_char, "ERR_INVALID_CHAR", "invalid character in an HTTP field",
              std::errc::invalid_argument},
    own_error{errc::invalid_http_token, "ERR_INVALID_HTTP_TOKEN", "header name must be a valid HTTP token",
              std::errc::invalid_argument},
    own_error{errc::http_invalid_status_code, "ERR_HTTP_INVALID_STATUS_CODE", "invalid status code",
              std::errc::invalid_argument},
    own_error{errc::http_invalid_header_value, "ERR_HTTP_INVALID_HEADER_VALUE",
              "the server sets this header itself", std::errc::invalid_argument},
    own_error{errc::http_headers_sent, "ERR_HTTP_HEADERS_SENT", "cannot change the head after it was sent",
              std::errc::operation_not_permitted},
    own_error{errc::line_too_long, "ERR_LINE_TOO_LONG", "line longer than max_line_length",
              std::errc::value_too_large},
    own_error{errc::invalid_url, "ERR_INVALID_URL", "invalid URL", std::errc::invalid_argument},
    own_error{errc::pool_closed, "ERR_POOL_CLOSED", "the pool is closed", std::errc::operation_not_permitted},
    own_error{errc::pool_unknown_task, "ERR_POOL_UNKNOWN_TASK", "the pool has no task of that name",
              std::errc::invalid_argument},
    own_error{errc::pool_worker_exited, "ERR_POOL_WORKER_EXITED", "the worker process exited during the task",
              std::errc{}},
};

// signal_error(): signals follow crew's own codes, at signal_base + the signal's number.
constexpr int signal_base = 1000;
bool is_signal(int value) noexcept { return value > signal_base && value < signal_base + NSIG; }

const own_error* find_own(int value) noexcept {
  for (const auto& e : own_errors)
    if (static_cast<int>(e.code) == value) return &e;
  return nullptr;
}

// On Unix, libuv's codes for system errors are negated errno values. Its own
// codes (UV_EOF, UV_EAI_*, UV_ECHARSET, ...) sit far below any errno.
constexpr int largest_errno = 2999;
bool is_errno_based(int uv_status) noexcept { return uv_status < 0 && -uv_status <= largest_errno; }

std::string uv_name(int status) {
  char buffer[64];
  uv_err_name_r(status, buffer, sizeof buffer);
  return buffer;
}

class crew_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "crew"; }

  std::string message(int value) const override {
    if (value < 0) {
      char buffer[256];
      uv_strerror_r(value, buffer, sizeof buffer);
      return buffer;
    }
    if (const own_error* e = find_own(value)) return std::string(e->message);
    if (is_signal(value)) return std::string("killed by a signal: ") + strsignal(value - signal_base);
    return "unknown crew error " + std::to_string(value);
  }

  std::error_condition default_error_condition(int value) const noexcept override {
    if (is_errno_based(value)) return {-value, std::generic_category()};
    if (const own_error* e = find_own(value); e && e->condition != std::errc{}) return e->condition;
    return {value, *this};
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const crew_category instance;
  return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

std::error_code uv_error(int status) noexcept {
  if (status == 0) return {};
  return {status, error_category()};
}

std::error_code signal_error(int signum) noexcept { return {signal_base + signum, error_category()}; }

std::string error_name(const std::error_code& ec) {
  if (!ec) return {};
  if (ec.category() == error_category()) {
    if (ec.value() < 0) return uv_name(ec.value());
    if (const own_error* e = find_own(ec.value())) return std::string(e->name);
    if (is_signal(ec.value())) {
      const char* name = sigabbrev_np(ec.value() - signal_base);
      return name ? std::string("SIG") + name : "UNKNOWN";
    }
    return "UNKNOWN";
  }
  if (ec.category() == std::generic_category() || ec.category() == std::system_category())
    return uv_name(-ec.value());
  return "UNKNOWN";
}

}  // namespace crew
