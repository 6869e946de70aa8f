#include "crew/stream.hpp"

#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>

#include "crew/error.hpp"
#include "detail/stream_state.hpp"

namespace crew {

using detail::stream_state;

namespace {

constexpr std::size_t read_chunk = 64 * 1024;  // measured: 256 KiB reads were slower

struct write_request {
  uv_write_t request;
  buffer bytes;
  stream::error_callback done;
};

void on_alloc(uv_handle_t* handle, std::size_t, uv_buf_t* out) {
  auto* s = static_cast<stream_state*>(handle->data);
  if (!s->read_buffer) s->read_buffer = std::make_unique<char[]>(read_chunk);
  // Without a reader, no read takes `unread` past its limit (reading stops at
  // the limit, so the room left is never 0 here).
  std::size_t room = s->flowing() ? read_chunk : std::min(read_chunk, s->read_limit - s->unread.size());
  *out = uv_buf_init(s->read_buffer.get(), static_cast<unsigned>(room));
}

void on_read(uv_stream_t* handle, ssize_t nread, const uv_buf_t* buf) {
  auto* s = static_cast<stream_state*>(handle->data);
  if (nread > 0) {
    std::string_view chunk(buf->base, static_cast<std::size_t>(nread));
    if (s->flowing()) {
      if (s->data) s->loop.invoke(s->data, chunk);
      return;
    }
    // Nobody takes it now: kept for the reader, and past the limit the pipe
    // or socket buffer holds the rest (back-pressure to the writer).
    s->unread += chunk;
    if (s->unread.size() >= s->read_limit) s->stop_reading();
    return;
  }
  if (nread == 0) return;  // EAGAIN: nothing this time
  s->stop_reading();
  if (nread != UV_EOF) return s->fail(uv_error(static_cast<int>(nread)));
  s->read_ended = true;
  if (s->unread.empty())
    s->deliver_end();
  else
    s->end_pending = true;
  s->reading_over();
}

void on_written(uv_write_t* req, int status) {
  std::unique_ptr<write_request> owned(reinterpret_cast<write_request*>(req));
  auto* s = static_cast<stream_state*>(req->handle->data);
  --s->writes_in_flight;
  // A completion runs exactly once, even after the stream was closed (libuv
  // then reports ECANCELED); the stream's events do not.
  if (owned->done) s->loop.invoke(owned->done, uv_error(status));
  if (s->closing) return;
  if (status < 0) return s->fail(uv_error(status));
  if (s->need_drain && uv_stream_get_write_queue_size(req->handle) == 0) {
    s->need_drain = false;
    if (s->drain) s->loop.invoke(s->drain);
  }
}

}  // namespace

namespace detail {

void stream_state::finish() noexcept {
  if (closing) return;
  if (close_event) loop.invoke(close_event);
  close();
}

void stream_state::fail(std::error_code ec) noexcept {
  if (closing) return;
  if (error) loop.invoke(error, ec);
  finish();
}

void stream_state::fail_later(std::error_code ec) {
  defer([this, ec] { fail(ec); });
}

void stream_state::on_closing() noexcept {
  if (closed_hook) closed_hook();
  reading_over();
}

void stream_state::reading_over() noexcept {
  if (!ended_hook) return;
  unique_function<void()> hook = std::move(ended_hook);
  hook();
}

void stream_state::start_reading() noexcept {
  reading = true;
  if (closing || read_ended || paused || read_started || unread.size() >= read_limit) return;
  if (int rc = uv_read_start(uv_stream(), on_alloc, on_read))
    fail_later(uv_error(rc));
  else
    read_started = true;
}

void stream_state::stop_reading() noexcept {
  if (!read_started) return;
  uv_read_stop(uv_stream());
  read_started = false;
}

void stream_state::schedule_flush() {
  if (flush_scheduled || closing || (unread.empty() && !end_pending)) return;
  flush_scheduled = true;
  defer([this] { flush(); });
}

void stream_state::flush() {
  flush_scheduled = false;
  if (closing || paused || (!data && !dropping)) return;
  if (!unread.empty()) {
    std::string chunk = std::move(unread);
    unread.clear();
    if (data) loop.invoke(data, std::string_view(chunk));
    if (closing || paused) return;
  }
  if (end_pending) {
    end_pending = false;
    deliver_end();
  } else {
    start_reading();  // it stopped at the limit
  }
}

void stream_state::deliver_end() noexcept {
  if (end_event) loop.invoke(end_event);
  if (closing) return;
  if (write_ended || !writable)
    finish();
  else if (!allow_half_open)
    end();  // as Node's sockets without allowHalfOpen: our side ends too
}

void stream_state::end() noexcept {
  if (closing || write_ended) return;
  write_ended = true;
  auto* request = new uv_shutdown_t;
  int rc = uv_shutdown(request, uv_stream(), [](uv_shutdown_t* req, int) {
    std::unique_ptr<uv_shutdown_t> owned(req);
    auto* s = static_cast<stream_state*>(req->handle->data);
    // A pipe has no half-close (ENOTSOCK): closing our end is the end-of-stream.
    // A socket stays open for reading until the peer ends too.
    if (!s->closing && (s->read_ended || !s->reading)) s->finish();
  });
  if (rc) {
    delete request;
    defer([this] { finish(); });
  }
}

}  // namespace detail

stream::stream(loop& l, int fd) {
  auto* s = new stream_state(l);
  uv_pipe_init(l.native(), &s->handle.pipe, 0);
  s->handle.pipe.data = s;
  if (int rc = uv_pipe_open(&s->handle.pipe, fd)) {
    // The handle was initialised: it must be closed through libuv, not deleted.
    ::close(fd);
    s->closing = true;
    uv_close(s->uv(), &stream_state::on_uv_close);
    throw std::system_error(uv_error(rc), "uv_pipe_open");
  }
  s->writable = uv_is_writable(s->uv_stream());
  adopt(s);
}

stream_state* stream::state() const noexcept { return state_as<stream_state>(); }

void stream::on_data(data_callback fn) {
  if (auto* s = state()) {
    s->data = std::move(fn);
    if (!s->data) return;
    s->dropping = false;
    s->schedule_flush();
    s->start_reading();
  }
}

void stream::on_end(event_callback fn) {
  if (auto* s = state()) s->end_event = std::move(fn);
}

void stream::on_error(error_callback fn) {
  if (auto* s = state()) s->error = std::move(fn);
}

void stream::on_drain(event_callback fn) {
  if (auto* s = state()) s->drain = std::move(fn);
}

void stream::on_close(event_callback fn) {
  if (auto* s = state()) s->close_event = std::move(fn);
}

void stream::pause() noexcept {
  if (auto* s = state()) {
    s->paused = true;
    s->dropping = false;
    s->stop_reading();
  }
}

void stream::resume() noexcept {
  if (auto* s = state()) {
    s->paused = false;
    s->dropping = !s->data;
    s->schedule_flush();
    if (s->reading || s->dropping) s->start_reading();
  }
}

bool stream::paused() const noexcept {
  auto* s = state();
  return s && s->paused;
}

bool stream::write(std::string_view bytes, error_callback done) { return write(buffer(bytes), std::move(done)); }

bool stream::write(buffer bytes, error_callback done) {
  auto* s = state();
  if (!s || s->write_ended) {
    if (done) loop::current().later([done = std::move(done)]() mutable { done(uv_error(UV_EPIPE)); });
    return false;
  }
  uv_stream_t* handle = s->uv_stream();
  std::size_t offset = 0;
  // Without a completion to report, and with nothing queued before it, the
  // bytes are written at once: most fit the socket's buffer and then need no
  // write request (whose completion makes libuv re-arm the socket in epoll).
  // A write with `done` goes through libuv's queue, which keeps completions
  // in order.
  if (!done && s->writes_in_flight == 0) {
    uv_buf_t whole = uv_buf_init(reinterpret_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
    int n = uv_try_write(handle, &whole, 1);
    if (n >= 0 && static_cast<std::size_t>(n) == bytes.size()) return true;
    if (n < 0 && n != UV_EAGAIN) {
      s->fail_later(uv_error(n));
      return false;
    }
    if (n > 0) offset = static_cast<std::size_t>(n);
  }
  auto* request = new write_request{{}, std::move(bytes), std::move(done)};
  uv_buf_t rest = uv_buf_init(reinterpret_cast<char*>(request->bytes.data()) + offset,
                              static_cast<unsigned>(request->bytes.size() - offset));
  if (int rc = uv_write(&request->request, handle, &rest, 1, on_written)) {
    std::unique_ptr<write_request> owned(request);
    if (owned->done) s->defer([done = std::move(owned->done), rc]() mutable { done(uv_error(rc)); });
    s->fail_later(uv_error(rc));
    return false;
  }
  ++s->writes_in_flight;
  bool below = uv_stream_get_write_queue_size(handle) < high_water_mark;
  if (!below) s->need_drain = true;
  return below;
}

void stream::end() {
  if (auto* s = state()) s->end();
}

std::size_t stream::readable_length() const noexcept {
  auto* s = state();
  return s ? s->unread.size() : 0;
}

std::size_t stream::buffered() const noexcept {
  auto* s = state();
  return s ? uv_stream_get_write_queue_size(s->uv_stream()) : 0;
}

}  // namespace crew
