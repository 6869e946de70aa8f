// Byte streams over pipes: Node's Readable and Writable, for a child's stdio.
//
//   child.stdout().on_data([](std::string_view chunk) { std::fwrite(chunk.data(), 1, chunk.size(), stdout); });
//   child.stdout().on_end([] { std::puts("-- end of output"); });
//   if (!child.stdin().write("lots of input")) child.stdin().on_drain([&] { /* write more */ });
//   child.stdin().end();
//
// Reading starts when on_data is set (Node's flowing mode) and stops on pause().
// A child's stdout and stderr are read from the start, as in Node, so that the
// child's close event comes even when nobody listens: chunks arriving before
// on_data is set are dropped (set it right after spawn(), before the loop runs).
// write() queues the bytes and reports back-pressure: it returns false once the
// queue holds high_water_mark bytes or more; a drain event follows when it empties.
#pragma once

#include <cstddef>
#include <string_view>
#include <system_error>

#include "crew/buffer.hpp"
#include "crew/detail/handle.hpp"
#include "crew/unique_function.hpp"
#include "crew/loop.hpp"

namespace crew {

/// One end of a pipe. Loop thread only. Events run on the loop, never inside the
/// call that caused them. After end-of-stream or an error the stream closes itself.
class stream : private detail::handle_owner {
 public:
  /// Whether the stream is open (not closed, moved from or closed by its loop).
  using handle_owner::is_open;
  /// Closes the stream now, without waiting for queued writes (end() waits);
  /// no event runs afterwards.
  using handle_owner::close;
  /// An open stream that is reading keeps its loop's run() going (the default).
  using handle_owner::ref;
  using handle_owner::unref;
  using handle_owner::has_ref;

  using data_callback = unique_function<void(std::string_view chunk)>;
  using error_callback = unique_function<void(std::error_code)>;
  using event_callback = unique_function<void()>;

  /// Bytes queued before write() reports back-pressure (Node's default highWaterMark).
  static constexpr std::size_t high_water_mark = 64 * 1024;

  /// No pipe: is_open() is false and every call does nothing.
  stream() noexcept = default;

  /// Takes ownership of `fd` (a pipe or socket end) on loop l. Errors from libuv
  /// (EBADF, ENOTSOCK) throw std::system_error; the fd is closed then.
  stream(loop& l, int fd);

  /// Receives each chunk read, valid during the call. Setting it starts reading.
  void on_data(data_callback fn);
  /// The other end closed its side: no more data. The stream closes afterwards.
  void on_end(event_callback fn);
  /// A read or write failed (EPIPE when the reader went away). The stream closes afterwards.
  void on_error(error_callback fn);
  /// The queue of writes emptied after write() had returned false.
  void on_drain(event_callback fn);
  /// The stream closed (after end, error, or close()): the last event.
  void on_close(event_callback fn);

  /// Stops reading until resume(); the writer then blocks on a full pipe.
  void pause() noexcept;
  void resume() noexcept;

  /// Queues `bytes` (copied) for writing. Returns false when the queue has reached
  /// high_water_mark: wait for on_drain before writing more. `done` runs once the
  /// bytes are written or failed (ECANCELED when the stream closed first); it
  /// never runs inside write(). On a closed stream `done` gets EPIPE on the loop.
  bool write(std::string_view bytes, error_callback done = {});
  /// The same, moving the buffer instead of copying it.
  bool write(buffer bytes, error_callback done = {});

  /// Finishes writing: queued writes complete, then the write side shuts down
  /// and the reader sees end-of-stream. A stream that is only written closes then.
  void end();

  /// Bytes queued and not yet written.
  std::size_t buffered() const noexcept;

 private:
  friend class child_process;  // counts its pipes' closes
};

}  // namespace crew
