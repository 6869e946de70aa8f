#include "crew/readline.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "crew/error.hpp"
#include "crew/loop.hpp"

namespace crew {

using clock = std::chrono::steady_clock;

// Shared by the readline, the stream's callbacks and deferred work, so that a
// callback that destroys the readline (or sets another on_data on the stream)
// returns into a block that is still there.
struct readline::state {
  explicit state(readline_options o, crew::loop& l)
      : options(o), loop(l) {
    options.crlf_delay = std::max(options.crlf_delay, std::chrono::milliseconds(100));  // as Node's kMincrlfDelay
  }

  readline_options options;
  crew::loop& loop;
  line_callback line;
  event_callback close_event;
  error_callback error;
  std::string pending;  // bytes received and not yet split, from pending_at: held while paused
  std::size_t pending_at = 0;  // an offset, so that a pause per line does not move the rest each time
  std::string partial;  // the current line's start, from earlier chunks
  std::error_code failure;
  clock::time_point return_at;  // when a chunk ending in "\r" came
  bool open = true;
  bool paused = false;
  bool ended = false;              // the stream ended or failed: finish once pending is out
  bool skipping = false;           // dropping the rest of a line past max_line_length
  bool chunk_ended_in_return = false;

  // Calls an event slot, moved out while it runs so that it may replace
  // itself or close the readline; put back unless replaced or closed.
  template <class Slot, class... Args>
  void call(Slot& slot, Args&&... args) {
    if (!slot) return;
    struct restore {
      state* self;
      Slot& slot;
      Slot running;
      ~restore() {
        if (self->open && !slot) slot = std::move(running);
      }
    } guard{this, slot, std::move(slot)};
    guard.running(std::forward<Args>(args)...);
  }

  void receive(std::string_view chunk) {
    if (!open) return;
    // Node's kSawReturnAt: "\r" closed the last chunk's line already; a "\n"
    // opening this one soon after is the rest of that "\r\n".
    clock::time_point now = clock::now();
    auto since_return = std::chrono::duration_cast<std::chrono::milliseconds>(now - return_at);
    if (chunk_ended_in_return && since_return <= options.crlf_delay && chunk.front() == '\n')
      chunk.remove_prefix(1);
    chunk_ended_in_return = !chunk.empty() && chunk.back() == '\r';
    if (chunk_ended_in_return) return_at = now;
    if (holding()) {  // held lines come first
      pending.append(chunk);
      return drain();
    }
    std::size_t used = split(chunk);
    if (open && used < chunk.size()) pending.assign(chunk.substr(used));
  }

  bool holding() const noexcept { return pending_at < pending.size(); }

  void drain() {
    pending_at += split(std::string_view(pending).substr(pending_at));
    if (!open) return;
    if (!holding()) {
      pending.clear();
      pending_at = 0;
    }
    if (!holding() && ended && !paused) finish();
  }

  // Delivers the lines of `data` until paused or closed; keeps a last piece
  // without line ending in `partial`. Returns the bytes it went through.
  std::size_t split(std::string_view data) {
    std::size_t used = 0;
    while (used < data.size() && open && !paused) {
      std::string_view rest = data.substr(used);
      std::size_t end = rest.find_first_of("\r\n");
      if (end == std::string_view::npos) {
        hold(rest);
        return data.size();
      }
      bool crlf = rest[end] == '\r' && end + 1 < rest.size() && rest[end + 1] == '\n';
      used += end + (crlf ? 2 : 1);
      deliver(rest.substr(0, end));
    }
    return used;
  }

  void hold(std::string_view piece) {
    if (skipping) return;
    if (piece.size() > options.max_line_length - partial.size()) return too_long();
    partial.append(piece);
  }

  // The line ends with `tail`.
  void deliver(std::string_view tail) {
    if (std::exchange(skipping, false)) return;  // the end of a line already reported
    if (tail.size() > options.max_line_length - partial.size()) {
      partial.clear();
      return call(error, make_error_code(errc::line_too_long));
    }
    if (partial.empty()) return call(line, tail);
    partial.append(tail);
    std::string whole = std::exchange(partial, {});
    call(line, std::string_view(whole));
  }

  void too_long() {
    partial.clear();
    partial.shrink_to_fit();
    skipping = true;
    call(error, make_error_code(errc::line_too_long));
  }

  void stream_ended(std::error_code ec) {
    if (!open || ended) return;
    ended = true;
    failure = ec;
    if (!paused && !holding()) finish();
  }

  void finish() {
    if (failure)
      call(error, failure);
    else if (!skipping && !partial.empty())
      call(line, std::string_view(std::exchange(partial, {})));
    if (!open) return;
    event_callback last = std::move(close_event);
    shut();
    if (last) loop.invoke(last);
  }

  // The lines' bytes stay: a line being delivered may be read after its
  // callback closed the readline.
  void shut() noexcept {
    open = false;
    line = {};
    close_event = {};
    error = {};
  }
};

readline::readline(stream& input, readline_options options)
    : state_(std::make_shared<state>(options, loop::current())), input_(&input) {
  // Each callback holds the block while it runs: the readline, or this very
  // callback, may be destroyed inside it.
  input.on_data([self = state_](std::string_view chunk) {
    std::shared_ptr<state> keep = self;
    keep->receive(chunk);
  });
  input.on_end([self = state_] {
    std::shared_ptr<state> keep = self;
    keep->stream_ended({});
  });
  input.on_error([self = state_](std::error_code ec) {
    std::shared_ptr<state> keep = self;
    keep->stream_ended(ec);
  });
}

readline& readline::operator=(readline&& other) noexcept {
  if (this != &other) {
    close();
    state_ = std::move(other.state_);
    input_ = std::exchange(other.input_, nullptr);
  }
  return *this;
}

readline::~readline() { close(); }

void readline::on_line(line_callback fn) {
  if (is_open()) state_->line = std::move(fn);
}

void readline::on_close(event_callback fn) {
  if (is_open()) state_->close_event = std::move(fn);
}

void readline::on_error(error_callback fn) {
  if (is_open()) state_->error = std::move(fn);
}

void readline::pause() noexcept {
  if (!is_open() || state_->paused) return;
  state_->paused = true;
  input_->pause();
}

void readline::resume() {
  if (!is_open() || !state_->paused) return;
  state_->paused = false;
  // The stream resumes now, while it is surely alive; the held lines go out
  // on a later turn, and a chunk that comes first queues behind them.
  if (!state_->ended) input_->resume();
  if (state_->holding() || state_->ended)
    state_->loop.later([self = state_] {
      if (self->open && !self->paused) self->drain();
    });
}

bool readline::paused() const noexcept { return is_open() && state_->paused; }

void readline::close() noexcept {
  if (state_) state_->shut();
  state_.reset();
  input_ = nullptr;
}

bool readline::is_open() const noexcept { return state_ && state_->open; }

}  // namespace crew
