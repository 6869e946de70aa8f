// The heap block behind crew::stream and crew::tcp::socket; child_process and
// tcp::server read its closed_hook.
#pragma once

#include <memory>
#include <string>

#include "crew/stream.hpp"

namespace crew::detail {

struct stream_state final : handle_state {
  using handle_state::handle_state;
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&handle); }
  uv_stream_t* uv_stream() noexcept { return reinterpret_cast<uv_stream_t*>(&handle); }
  void on_closing() noexcept override;

  /// Reads while the stream is not paused, ended or closing and, without a
  /// reader, until `unread` holds read_limit bytes.
  void start_reading() noexcept;
  void stop_reading() noexcept;
  /// Whether a chunk read now goes straight to the reader.
  bool flowing() const noexcept { return (data || dropping) && !paused && unread.empty(); }
  /// Delivers `unread`, then the end that followed it, on a later turn.
  void schedule_flush();
  void flush();
  /// The end-of-stream event, then what it leads to: closing (a pipe, or a
  /// stream whose writing is over) or ending our side (a socket without half-open).
  void deliver_end() noexcept;
  /// Tells ended_hook, once.
  void reading_over() noexcept;
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
  // internal: told once when reading is over: end-of-stream was read (its bytes
  // may still wait in `unread` for a reader), an error, or the close.
  unique_function<void()> ended_hook;
  std::unique_ptr<char[]> read_buffer;
  std::string unread;  // read while nobody took it (no reader yet, or paused): delivered first
  std::size_t read_limit = stream::high_water_mark;  // `unread` stops reading at this size
  int writes_in_flight = 0;   // uv_write requests whose callback has not run
  bool writable = false;
  bool allow_half_open = true;  // after the peer's end, stay open for writing (pipes; opt-in for sockets)
  bool reading = false;       // reading was asked for (on_data, or a child's output pipe)
  bool read_started = false;  // uv_read_start is in effect
  bool paused = false;
  bool dropping = false;  // resume() without a reader: bytes read are dropped, as Node's resume() does
  bool need_drain = false;
  bool read_ended = false;
  bool end_pending = false;     // end-of-stream came behind `unread`: delivered after it
  bool flush_scheduled = false;
  bool write_ended = false;
};

}  // namespace crew::detail
