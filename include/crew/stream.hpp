// Byte streams: Node's Readable and Writable, over pipes (a child's stdio) and
// TCP sockets (tcp.hpp's socket is a stream).
//
//   child.out().on_data([](std::string_view chunk) { std::fwrite(chunk.data(), 1, chunk.size(), stdout); });
//   child.out().on_end([] { std::puts("-- end of output"); });
//   if (!child.in().write("lots of input")) child.in().on_drain([&] { /* write more */ });
//   child.in().end();
//
// Reading starts when on_data is set (Node's flowing mode) and stops on pause().
// No byte is lost to a late reader: a child's stdout and stderr are read from
// the start, as in Node, into a buffer that holds up to high_water_mark bytes;
// then reading stops, and the pipe fills until the child blocks on it. on_data,
// set at any time, gets what was kept first (on a later turn), then the rest.
// write() queues the bytes and reports back-pressure: it returns false once the
// queue holds high_water_mark bytes or more; a drain event follows when it empties.
//
// Lifetime and callbacks follow docs/lifetime.md and docs/callbacks.md: events
// run on the loop, never inside the call that caused them, and never after the
// stream is closed or destroyed; a write's `done` runs exactly once, with
// ECANCELED when the stream closed before the bytes were written.
#pragma once

#include <cstddef>
#include <string_view>
#include <system_error>

#include "crew/buffer.hpp"
#include "crew/detail/handle.hpp"
#include "crew/loop.hpp"
#include "crew/unique_function.hpp"

namespace crew {

namespace detail {
struct stream_state;
}

/// One end of a pipe or a connected socket. Loop thread only. After
/// end-of-stream or an error the stream closes itself (see on_end for sockets
/// that allow half-open connections).
class stream : protected detail::handle_owner {
 public:
  using data_callback = unique_function<void(std::string_view chunk)>;
  using error_callback = unique_function<void(std::error_code)>;
  using event_callback = unique_function<void()>;

  /// Whether the stream is open (not closed, moved from or closed by its loop).
  using handle_owner::is_open;
  /// Closes the stream now, without waiting for queued writes (end() waits);
  /// no event runs afterwards; queued writes complete with ECANCELED.
  using handle_owner::close;
  /// An open stream that is reading keeps its loop's run() going (the default).
  using handle_owner::ref;
  using handle_owner::unref;
  using handle_owner::has_ref;

  /// Bytes queued before write() reports back-pressure, and bytes read ahead
  /// for a reader still to come (Node's default highWaterMark).
  static constexpr std::size_t high_water_mark = 64 * 1024;

  /// No pipe: is_open() is false and every call does nothing.
  stream() noexcept = default;

  /// Takes ownership of `fd` (a pipe or Unix socket end) on loop l. Errors from
  /// libuv (EBADF, ENOTSOCK) throw std::system_error; the fd is closed then.
  stream(loop& l, int fd);

  /// Receives each chunk read, valid during the call. Setting it starts reading.
  /// Bytes read before it was set (see readable_length()) come first, as one
  /// chunk on a later turn, never inside on_data().
  void on_data(data_callback fn);
  /// The other end finished writing: no more data. It comes after every byte
  /// read has gone to on_data: a stream with bytes still kept waits for a
  /// reader. A pipe, or a socket that does not allow half-open connections,
  /// then ends its own side once its queued writes are out, and closes.
  void on_end(event_callback fn);
  /// A read or write failed (EPIPE when the reader went away, ECONNRESET). The
  /// stream closes afterwards.
  void on_error(error_callback fn);
  /// The queue of writes emptied after write() had returned false.
  void on_drain(event_callback fn);
  /// The stream closed by itself (after end, error, or a finished end()): the
  /// last event. Not called after close() or destruction.
  void on_close(event_callback fn);

  /// Stops reading and delivering until resume(); the writer then blocks on a
  /// full pipe or socket buffer (back-pressure to the peer).
  void pause() noexcept;
  /// Reading and delivering go on; bytes kept meanwhile come first, on a later
  /// turn. On a stream without a reader, resume() reads and drops everything,
  /// kept bytes included, as Node's does: the way to drain unwanted output.
  void resume() noexcept;
  /// Whether the stream is paused.
  bool paused() const noexcept;

  /// Queues `bytes` (copied) for writing. Returns false when the queue has reached
  /// high_water_mark: wait for on_drain before writing more. `done` runs once,
  /// never inside write(): when the bytes are written, with the error that
  /// stopped them, or with ECANCELED when the stream closed first. On a stream
  /// that is closed or ended, `done` gets EPIPE.
  bool write(std::string_view bytes, error_callback done = {});
  /// The same, moving the buffer instead of copying it.
  bool write(buffer bytes, error_callback done = {});

  /// Finishes writing: queued writes complete, then the write side shuts down
  /// and the reader sees end-of-stream. A stream that is only written, or whose
  /// reading side has ended, closes then.
  void end();

  /// Bytes queued and not yet written.
  std::size_t buffered() const noexcept;

  /// Bytes read and kept for a reader (Node's readableLength): at most
  /// high_water_mark while nobody reads, except for a child's output after
  /// the child exited (child_process.hpp).
  std::size_t readable_length() const noexcept;

 protected:
  detail::stream_state* state() const noexcept;

 private:
  friend class child_process;  // counts its pipes' closes
};

}  // namespace crew
