// The heap block behind crew::stream; child_process reads its closed_hook.
#pragma once

#include <memory>

#include "crew/stream.hpp"

namespace crew::detail {

struct stream_state final : handle_state {
  using handle_state::handle_state;
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&pipe); }
  void on_closing() noexcept override;

  void start_reading() noexcept;
  /// Emits close and closes: after end-of-stream, an error, or a finished end().
  void finish() noexcept;
  /// Emits error, then finishes.
  void fail(std::error_code ec) noexcept;

  uv_pipe_t pipe;
  stream::data_callback data;
  stream::event_callback end;
  stream::error_callback error;
  stream::event_callback drain;
  stream::event_callback close_event;
  unique_function<void()> closed_hook;  // internal: told once when the stream closes, however
  std::unique_ptr<char[]> read_buffer;
  bool writable = false;
  bool reading = false;       // reading was asked for (on_data, or a child's output pipe)
  bool read_started = false;  // uv_read_start is in effect
  bool paused = false;
  bool need_drain = false;
  bool read_ended = false;
  bool write_ended = false;
};

}  // namespace crew::detail
