// Lines from a byte stream: Node's readline.createInterface({input}).
//
//   crew::child_process child = crew::spawn("ls", {"-l"});
//   crew::readline lines(child.out());
//   lines.on_line([](std::string_view line) { std::printf("> %.*s\n", int(line.size()), line.data()); });
//   lines.on_close([] { std::puts("-- no more lines"); });
//
// Any crew::stream works: a child's stdout or stderr, a tcp::socket, a pipe.
// Lines end at "\n", "\r\n" or a lone "\r", as in Node; the line given to
// on_line has no line ending. A line may arrive in many chunks; a last line
// without a line ending is delivered when the stream ends, unless it is empty.
// Lines are the stream's bytes, not decoded: for UTF-8 input they are Node's
// lines (a line break never falls inside a UTF-8 character); where Node would
// show U+FFFD for bytes that are not UTF-8, crew passes the bytes on.
//
// As in Node, a "\r" that ends a chunk ends its line at once; a "\n" opening
// the next chunk within crlf_delay belongs to it ("\r\n" split in two),
// later it is a line break of its own (an empty line).
//
// Lifetime and callbacks follow docs/lifetime.md and docs/callbacks.md. The
// readline takes the stream's data, end and error events (set no other
// on_data on it while the readline lives), and reads until the stream ends.
// The stream must outlive the readline's pause() and resume() calls; the
// readline's destructor does not touch the stream, so destroying either first
// is safe. Once the readline is destroyed or closed, no event of it runs (not
// even in the middle of a chunk: destroying it inside on_line is fine), and
// what the stream reads afterwards is dropped until another on_data is set.
#pragma once

#include <chrono>
#include <cstddef>
#include <limits>
#include <memory>
#include <string_view>
#include <system_error>

#include "crew/stream.hpp"
#include "crew/unique_function.hpp"

namespace crew {

struct readline_options {
  /// A "\r" ending one chunk and a "\n" starting the next within this time
  /// make one line break. Node's crlfDelay: less than 100 ms counts as 100 ms,
  /// std::chrono::milliseconds::max() is Node's Infinity. Default: 100 ms.
  std::chrono::milliseconds crlf_delay{100};
  /// The longest line kept, in bytes without its line ending. A longer line is
  /// dropped and reported to on_error as ERR_LINE_TOO_LONG; the lines after
  /// it arrive as usual, and memory stays bounded by this. Default: 1 MiB, where
  /// Node has no limit, so that a peer that never ends a line cannot grow memory
  /// without bound (std::numeric_limits<std::size_t>::max() for none).
  std::size_t max_line_length = std::size_t{1} << 20;
};

/// Splits a stream's bytes into lines. Loop thread only; move-only.
class readline {
 public:
  using line_callback = unique_function<void(std::string_view line)>;
  using event_callback = unique_function<void()>;
  using error_callback = unique_function<void(std::error_code)>;

  /// Starts reading `input` (it sets the stream's on_data, on_end and on_error).
  explicit readline(stream& input, readline_options options = {});
  readline(readline&&) noexcept = default;
  readline& operator=(readline&& other) noexcept;
  /// Closes: no event runs afterwards.
  ~readline();

  /// Each line, without its line ending; the view is valid during the call.
  void on_line(line_callback fn);
  /// The stream ended (after the last line) or failed (after on_error): the
  /// last event. Not called after close() or destruction.
  void on_close(event_callback fn);
  /// A line past max_line_length (ERR_LINE_TOO_LONG; reading goes on), or the
  /// stream's own error (ECONNRESET, ...; on_close follows, and a last line
  /// without its ending is dropped, as Node drops it).
  void on_error(error_callback fn);

  /// Stops delivering lines, at once (Node may still emit the rest of a chunk
  /// it has), and pauses the stream, so that the writer meets back-pressure.
  void pause() noexcept;
  /// Delivers the lines held back, on a later loop turn (never inside
  /// resume()), then resumes the stream.
  void resume();
  /// Whether pause() is in effect.
  bool paused() const noexcept;

  /// Stops every event now; the stream is left reading, its data dropped.
  void close() noexcept;
  /// Whether the readline is open: not closed, moved from, or finished (after on_close).
  bool is_open() const noexcept;

 private:
  struct state;
  std::shared_ptr<state> state_;  // shared with the stream's callbacks and deferred work
  stream* input_ = nullptr;
};

}  // namespace crew
