#include "crew/stream.hpp"

#include <signal.h>
#include <unistd.h>

#include <memory>
#include <mutex>

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
  *out = uv_buf_init(s->read_buffer.get(), read_chunk);
}

void on_read(uv_stream_t* handle, ssize_t nread, const uv_buf_t* buf) {
  auto* s = static_cast<stream_state*>(handle->data);
  if (nread > 0) {
    if (s->data) s->loop.invoke(s->data, std::string_view(buf->base, static_cast<std::size_t>(nread)));
    return;
  }
  if (nread == 0) return;  // EAGAIN: nothing this time
  uv_read_stop(handle);
  s->read_started = false;
  if (nread == UV_EOF) {
    s->read_ended = true;
    if (s->end) s->loop.invoke(s->end);
    if (!s->closing && (s->write_ended || !s->writable)) s->finish();
  } else {
    s->fail(uv_error(static_cast<int>(nread)));
  }
}

// Writing to a pipe whose reader is gone raises SIGPIPE, which kills the process
// by default. Like Node, crew ignores it (once, when it first opens a stream, and
// only if nobody installed a handler), so the write fails with EPIPE instead.
void ignore_sigpipe() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
  });
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

void stream_state::on_closing() noexcept {
  if (closed_hook) closed_hook();
}

void stream_state::start_reading() noexcept {
  reading = true;
  if (closing || read_ended || paused || read_started) return;
  if (int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&pipe), on_alloc, on_read))
    fail(uv_error(rc));
  else
    read_started = true;
}

}  // namespace detail

stream::stream(loop& l, int fd) {
  ignore_sigpipe();
  auto* s = new stream_state(l);
  uv_pipe_init(l.native(), &s->pipe, 0);
  if (int rc = uv_pipe_open(&s->pipe, fd)) {
    // The handle was initialised: it must be closed through libuv, not deleted.
    ::close(fd);
    s->closing = true;
    uv_close(s->uv(), [](uv_handle_t* h) { delete static_cast<stream_state*>(h->data); });
    s->pipe.data = s;
    throw std::system_error(uv_error(rc), "uv_pipe_open");
  }
  s->writable = uv_is_writable(reinterpret_cast<uv_stream_t*>(&s->pipe));
  adopt(s);
}

void stream::on_data(data_callback fn) {
  if (auto* s = state_as<stream_state>()) {
    s->data = std::move(fn);
    s->start_reading();
  }
}

void stream::on_end(event_callback fn) {
  if (auto* s = state_as<stream_state>()) s->end = std::move(fn);
}

void stream::on_error(error_callback fn) {
  if (auto* s = state_as<stream_state>()) s->error = std::move(fn);
}

void stream::on_drain(event_callback fn) {
  if (auto* s = state_as<stream_state>()) s->drain = std::move(fn);
}

void stream::on_close(event_callback fn) {
  if (auto* s = state_as<stream_state>()) s->close_event = std::move(fn);
}

void stream::pause() noexcept {
  if (auto* s = state_as<stream_state>()) {
    s->paused = true;
    s->read_started = false;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&s->pipe));
  }
}

void stream::resume() noexcept {
  if (auto* s = state_as<stream_state>()) {
    s->paused = false;
    if (s->reading) s->start_reading();
  }
}

bool stream::write(std::string_view bytes, error_callback done) { return write(buffer(bytes), std::move(done)); }

bool stream::write(buffer bytes, error_callback done) {
  auto* s = state_as<stream_state>();
  if (!s || s->write_ended) {
    if (done) loop::current().post([done = std::move(done)]() mutable { done(uv_error(UV_EPIPE)); });
    return false;
  }
  auto* request = new write_request{{}, std::move(bytes), std::move(done)};
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(request->bytes.data()),
                             static_cast<unsigned>(request->bytes.size()));
  int rc = uv_write(&request->request, reinterpret_cast<uv_stream_t*>(&s->pipe), &buf, 1,
                    [](uv_write_t* req, int status) {
                      std::unique_ptr<write_request> owned(reinterpret_cast<write_request*>(req));
                      auto* st = static_cast<stream_state*>(req->handle->data);
                      // After the owner closed the stream, its callbacks are gone with it.
                      if (st->closed_by_owner) return;
                      if (owned->done) st->loop.invoke(owned->done, uv_error(status));
                      if (status < 0 && status != UV_ECANCELED) {
                        st->fail(uv_error(status));
                      } else if (st->need_drain && !st->closing &&
                                 uv_stream_get_write_queue_size(req->handle) == 0) {
                        st->need_drain = false;
                        if (st->drain) st->loop.invoke(st->drain);
                      }
                    });
  if (rc) {
    std::unique_ptr<write_request> owned(request);
    if (owned->done)
      s->loop.post([done = std::move(owned->done), rc]() mutable { done(uv_error(rc)); });
    s->fail(uv_error(rc));
    return false;
  }
  bool below = uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&s->pipe)) < high_water_mark;
  if (!below) s->need_drain = true;
  return below;
}

void stream::end() {
  auto* s = state_as<stream_state>();
  if (!s || s->write_ended) return;
  s->write_ended = true;
  auto* request = new uv_shutdown_t;
  int rc = uv_shutdown(request, reinterpret_cast<uv_stream_t*>(&s->pipe), [](uv_shutdown_t* req, int) {
    std::unique_ptr<uv_shutdown_t> owned(req);
    auto* st = static_cast<stream_state*>(req->handle->data);
    // A pipe has no half-close (ENOTSOCK): closing our end is the end-of-stream.
    // A socket stays open for reading until the peer ends too.
    if (!st->closing && (st->read_ended || !st->reading)) st->finish();
  });
  if (rc) {
    delete request;
    s->finish();
  }
}

std::size_t stream::buffered() const noexcept {
  auto* s = state_as<stream_state>();
  return s ? uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(&s->pipe)) : 0;
}

}  // namespace crew
