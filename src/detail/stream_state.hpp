// The heap block behind crew::stream and crew::tcp::socket; child_process and
// tcp::server read its closed_hook.
#pragma once

#include <memory>

#include "crew/stream.hpp"

namespace crew::detail {

struct stream_state final : handle_state {
  using handle_state::handle_state;
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&handle); }
  uv_stream_t* uv_stream() noexcept { return reinterpret_cast<uv_stream_t*>(&handle); }
  void on_closing() noexcept override;

  void start_reading() noexcept;
  /// Shuts the write side down once queued writes are out (stream::end()).
  void end() noexcept;
  /// Emits close and closes: after end-of-stream, an error, or a finished end().
  void finish() noexcept;
  /// Emits error, then finishes.
  void fail(std::error_code ec) noexcept;
  /// fail(), on a later loop turn: for errors found inside a call of the user's.
  void fail_later(std::error_code ec);

  union {
    uv_pipe_t pipe;
    uv_tcp_t tcp;
  } handle;
  stream::data_callback data;
  stream::event_callback end_event;
  stream::error_callback error;
  stream::event_callback drain;
  stream::event_callback close_event;
  unique_function<void()> closed_hook;  // internal: told once when the stream closes, however
  std::unique_ptr<char[]> read_buffer;
  int writes_in_flight = 0;   // uv_write requests whose callback has not run
  bool writable = false;
  bool allow_half_open = true;  // after the peer's end, stay open for writing (pipes; opt-in for sockets)
  bool reading = false;       // reading was asked for (on_data, or a child's output pipe)
  bool read_started = false;  // uv_read_start is in effect
  bool paused = false;
  bool need_drain = false;
  bool read_ended = false;
  bool write_ended = false;
};

}  // namespace crew::detail
