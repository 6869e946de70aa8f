// The IPC receive path: a script of writes (with real descriptors, as
// SCM_RIGHTS), sends, loop turns and callback changes played against a real
// ipc_channel over a socketpair.
//
// Input: one config byte (see below), then records, each an op byte (op & 7)
// and what it needs:
//   0  write the next (op >> 4) + 1 bytes, with a descriptor when op & 8
//   1  write the next (next byte) + 1 bytes, with a descriptor when op & 8
//   2  one loop turn, then read what the channel wrote
//   3  send() a message (the next byte: its size, and a descriptor when & 0x40)
//   4  set on_message, when the config byte says "late"
//   5  set (op & 8) or clear on_internal_message
//   6  close() (op & 8) or disconnect()
//   7  the peer shuts down its writing side (op & 8: and its reading side)
// Lines seldom end where writes do, so messages are split at arbitrary points.
//
// Properties checked on every input, beyond "no crash, no leak, no UB":
//   - no descriptor leaks: every descriptor travelling over the channel is a
//     duplicate of one pipe's write end, and once everything is closed the pipe
//     reads end-of-file (no copy is left anywhere);
//   - no callback runs inside a call to the channel (send, disconnect, on_message,
//     close);
//   - no event runs after the owner closed the channel;
//   - every send completion runs exactly once.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <vector>

#include "crew/ipc.hpp"
#include "socket_support.hpp"

namespace {

using json = crew::message::value_type;

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "ipc fuzz: %s\n", what);
  std::abort();
}

struct input {
  const std::uint8_t* data;
  std::size_t size;
  bool empty() const { return size == 0; }
  std::uint8_t byte() {
    if (size == 0) return 0;
    --size;
    return *data++;
  }
  std::string_view bytes(std::size_t n) {
    n = std::min(n, size);
    std::string_view taken(reinterpret_cast<const char*>(data), n);
    data += n;
    size -= n;
    return taken;
  }
};

struct session {
  crew::loop loop;
  crew::ipc_channel channel;
  int raw = -1;              // the peer's end, written to by the script
  int probe[2] = {-1, -1};   // the pipe whose write end travels as descriptors
  bool in_call = false;      // inside a call to the channel: no callback may run
  bool owner_closed = false; // close() was called: no event may run
  bool hung_up = false;      // the script shut down the peer's writing side
  std::vector<int> completions;  // per send: how many times its done ran

  void event() {
    if (in_call) broken("a callback ran inside the call that caused it");
    if (owner_closed) broken("an event ran after the owner closed the channel");
  }

  template <class F>
  void call(F&& f) {
    in_call = true;
    f();
    in_call = false;
  }

  void close_fds(crew::message& m) {
    for (int fd : m.fds()) ::close(fd);
    m.fds().clear();
  }

  void send(std::uint8_t how) {
    crew::message m = json{{"n", completions.size()}, {"pad", std::string(how & 0x3f, 'x')}};
    int copy = -1;
    if (how & 0x40) {
      copy = fcntl(probe[1], F_DUPFD_CLOEXEC, 0);
      m.fds().push_back(copy);
    }
    std::size_t index = completions.size();
    completions.push_back(0);
    call([&] {
      channel.send(std::move(m), [this, index](std::error_code) {
        if (in_call) broken("a completion ran inside the call that caused it");
        ++completions[index];
      });
    });
    if (copy >= 0) ::close(copy);  // the channel keeps its own
  }

  void on_message() {
    call([&] {
      channel.on_message([this](crew::message m) {
        event();
        // The message may ask for re-entry: close or send from the callback.
        const json& v = m.value();
        close_fds(m);
        if (v == "close") {
          owner_closed = true;
          call([&] { channel.close(); });
        } else if (v == "send") {
          send(0x41);
        } else if (v == "disconnect") {
          call([&] { channel.disconnect(); });
        }
      });
    });
  }

  void on_internal(bool set) {
    if (!set) return channel.on_internal_message({});
    channel.on_internal_message([this](crew::message m) {
      event();
      close_fds(m);
    });
  }

  void write(std::string_view bytes, bool with_fd) {
    // A full socket is drained by loop turns; past a bounded number the
    // bytes are dropped (a peer that never reads is another test).
    for (int tries = 0; tries < 64 && !bytes.empty() && !hung_up; ++tries) {
      ssize_t n = crew::test::send_with_fd(raw, bytes, with_fd ? probe[1] : -1);
      if (n > 0) {
        bytes.remove_prefix(static_cast<std::size_t>(n));
        with_fd = false;
      } else if (n < 0 && errno == EAGAIN) {
        turn();
      } else {
        return;  // the channel's end is closed
      }
    }
  }

  // A loop turn; what the channel wrote (ACKs, NACKs, sent messages) is then
  // read and dropped, closing the descriptors that came with it.
  void turn() {
    uv_run(loop.native(), UV_RUN_NOWAIT);
    drain();
  }
  void drain() { (void)crew::test::read_available(raw); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  input in{data, size};
  // The config byte: when on_message is set (bits 0-1: at once, by op 4, never),
  // whether an internal handler is set at once (bit 2), the size limits (bits
  // 3-4 and 5-6), and how the session ends (bit 7: the owner closes, or the peer
  // hangs up).
  std::uint8_t config = in.byte();
  constexpr std::size_t message_limits[] = {64u << 20, 16, 256, 4096};
  constexpr std::size_t early_limits[] = {64u << 20, 0, 64, 1024};
  crew::ipc_options options{.max_message_size = message_limits[(config >> 3) & 3],
                            .max_early_bytes = early_limits[(config >> 5) & 3],
                            .spin = std::chrono::microseconds(0)};
  std::optional<session> s;
  s.emplace();
  int ends[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0 || pipe2(s->probe, O_CLOEXEC | O_NONBLOCK) != 0)
    broken("no socketpair or pipe");
  s->raw = ends[0];
  s->channel = crew::ipc_channel(s->loop, ends[1], options);
  int errors = 0;
  s->channel.on_error([&](std::error_code) {
    s->event();
    ++errors;
  });
  s->channel.on_disconnect([&] { s->event(); });
  if ((config & 3) == 0) s->on_message();
  s->on_internal(config & 4);

  while (!in.empty() && s->channel.is_open()) {
    std::uint8_t op = in.byte();
    switch (op & 7) {
      case 0:  // a short write, (op >> 4) + 1 bytes, with a descriptor when op & 8
      case 1:  // a longer write: the next byte gives its length
      {
        std::size_t length = (op & 7) == 0 ? (op >> 4) + 1u : in.byte() + 1u;
        std::string_view bytes = in.bytes(length);
        if (!bytes.empty()) s->write(bytes, op & 8);
        break;
      }
      case 2:
        s->turn();
        break;
      case 3:
        s->send(in.byte());
        break;
      case 4:
        if ((config & 3) == 1) s->on_message();
        break;
      case 5:
        s->on_internal(op & 8);
        break;
      case 6:
        if (op & 8) {
          s->owner_closed = true;
          s->call([&] { s->channel.close(); });
        } else {
          s->call([&] { s->channel.disconnect(); });
        }
        break;
      case 7:
        // End-of-file for the channel after what was written; with op & 8 the
        // peer stops reading too, so the channel's next write fails (EPIPE).
        shutdown(s->raw, op & 8 ? SHUT_RDWR : SHUT_WR);
        s->hung_up = true;
        break;
    }
  }

  // The end: the owner closes the channel, or the peer hangs up; either way the
  // loop then runs until nothing is left.
  if (config & 0x80) {
    s->owner_closed = true;
    s->call([&] { s->channel.close(); });
  } else {
    s->drain();
    shutdown(s->raw, SHUT_WR);
  }
  while (uv_run(s->loop.native(), UV_RUN_NOWAIT) != 0 && s->channel.is_open()) s->drain();
  s->owner_closed = true;
  s->call([&] { s->channel.close(); });
  uv_run(s->loop.native(), UV_RUN_DEFAULT);  // the close callback runs the completions still due
  for (int count : s->completions)
    if (count != 1) broken("a send completion did not run exactly once");
  ::close(s->raw);
  int probe_read = s->probe[0];
  ::close(s->probe[1]);
  s.reset();
  char byte;
  if (read(probe_read, &byte, 1) != 0) broken("a descriptor leaked: the probe pipe still has a writer");
  ::close(probe_read);
  return 0;
}
