#include "crew/ipc.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>

#include "crew/message_port.hpp"
#include "crew/timer.hpp"
#include "detail/ipc_state.hpp"
#include "detail/stop_relay.hpp"

namespace crew {

using detail::ipc_state;

namespace {

constexpr std::size_t read_chunk = 64 * 1024;
constexpr int max_fds_per_read = 16;
constexpr std::size_t max_unclaimed_fds = 16;  // received descriptors no NODE_HANDLE has claimed yet
constexpr int max_handle_retransmissions = 3;  // Node's MAX_HANDLE_RETRANSMISSIONS
constexpr std::size_t max_batch = 256;            // messages per sendmsg
constexpr std::size_t batch_bytes = 64 * 1024;    // queued bytes that are written at once

bool is_internal(const message::value_type& v) {
  if (!v.is_object()) return false;
  auto cmd = v.find("cmd");
  return cmd != v.end() && cmd->is_string() && cmd->get_ref<const std::string&>().size() > 5 &&
         cmd->get_ref<const std::string&>().compare(0, 5, "NODE_") == 0;
}

// Node's handle types, as its receiver maps them (lib/internal/child_process.js).
const char* handle_type(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return "crew.fd";
  int type = 0;
  length = sizeof type;
  getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length);
  if (type == SOCK_DGRAM) return "dgram.Native";
  return "net.Native";  // a TCP or Unix stream socket: Node wraps it as it is
}

// NODE_CHANNEL_FD is read and removed from the environment before main() runs
// (the static initialiser below; child_process.cpp uses this file, so every
// program that spawns through crew links it), so that a grandchild never
// inherits the channel, as in Node. Later calls return the same answer.
int channel_fd_from_environment() {
  static const int fd = [] {
    const char* value = std::getenv("NODE_CHANNEL_FD");
    int parsed = -1;
    if (value) {
      char* end = nullptr;
      long n = std::strtol(value, &end, 10);
      if (end != value && *end == '\0' && n >= 0 && n < 1 << 20) parsed = static_cast<int>(n);
    }
    unsetenv("NODE_CHANNEL_FD");
    unsetenv("NODE_CHANNEL_SERIALIZATION_MODE");
    return parsed;
  }();
  return fd;
}
[[maybe_unused]] const int channel_fd_at_start = channel_fd_from_environment();

// Whether fd can be a channel: a connected Unix stream socket. Anything else
// (closed, a file, a TCP, UDP or listening socket) means no channel, as a
// NODE_CHANNEL_FD that Node cannot open gives a process without one.
bool usable_channel(int fd) {
  int domain = 0, type = 0, listening = 1;
  socklen_t length = sizeof(int);
  return getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0 && domain == AF_UNIX &&
         getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == SOCK_STREAM &&
         getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 && listening == 0;
}

}  // namespace

namespace detail {

namespace {

void close_all(const message& m) noexcept {
  for (int received : m.fds()) ::close(received);
}

}  // namespace

// A request() from its making to its end: listed with its channel by id
// (so that a channel closing before the request starts ends it too) until the
// reply comes, its timeout passes, its stop token is requested, or the channel
// ends. Whichever comes first completes it; the others find it gone.
struct ipc_request final : operation<result<message>> {
  ipc_request(loop& l, ipc_state* c, message request, request_options o, std::stop_token s)
      : operation(l), channel(c), m(std::move(request)), options(o), stop(std::move(s)) {}

  void start() override {
    std::error_code refused;
    if (!channel || !channel->connected)
      refused = make_error_code(errc::ipc_channel_closed);
    else if (!m.value().is_object())
      refused = uv_error(UV_EINVAL);
    if (refused) {
      forget();
      return complete_later(refused);
    }
    m.value()["id"] = id;
    auto self = std::static_pointer_cast<ipc_request>(shared_from_this());
    hold = loop::keep_alive(loop_);
    if (options.timeout.count() > 0)
      deadline.emplace(scoped_timeout(options.timeout, [this] { finish(uv_error(UV_ETIMEDOUT)); }, loop_));
    if (stop.stop_possible()) relay.emplace(loop_, std::move(stop), [this] { finish(uv_error(UV_ECANCELED)); });
    channel->send(std::move(m), [weak = std::weak_ptr<ipc_request>(self)](std::error_code ec) {
      // A peer that went away (EPIPE, ECONNRESET) will never answer: its channel is closed.
      bool gone = ec.value() == UV_EPIPE || ec.value() == UV_ECONNRESET;
      if (auto r = weak.lock(); r && ec) r->finish(gone ? make_error_code(errc::ipc_channel_closed) : ec);
    });
  }

  void cancel() noexcept override { forget(); }

  // Leaves the channel's list and stops waiting. The caller holds a reference.
  void forget() noexcept {
    if (channel) channel->requests.erase(id);
    channel = nullptr;
    deadline.reset();
    relay.reset();
    hold = {};
  }

  void finish(result<message> outcome) {
    forget();
    complete(std::move(outcome));
  }

  ipc_state* channel;  // null once the request has left its channel
  message m;
  request_options options;
  std::stop_token stop;
  std::int64_t id = 0;
  std::optional<timer> deadline;
  std::optional<stop_relay> relay;
  loop::keep_alive hold;  // a request waiting for its reply keeps the loop running
};

ipc_state::~ipc_state() {
  for (auto& r : orphaned_requests) r->finish(make_error_code(errc::ipc_channel_closed));
  drop_sends();
  // A loop being destroyed closes its open handles: then, like the loop's
  // posts, completions are dropped rather than run inside ~loop, where what
  // they capture may be gone.
  if (closed_by_owner || finished) run_completions();
  for (const parked& p : early) close_all(p.m);
  for (int received : received_fds) ::close(received);
  ::close(fd);
}

void ipc_state::on_closing() noexcept {
  spin.close();
  if (turn) uv_close(reinterpret_cast<uv_handle_t*>(turn), [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
  turn = nullptr;
  for (auto& [id, r] : requests) {
    r->channel = nullptr;
    orphaned_requests.push_back(std::move(r));
  }
  requests.clear();
  if (closed_hook) closed_hook();
}

void ipc_state::later() noexcept {
  if (closing) return;
  if (!turn) {
    turn = new uv_idle_t;
    uv_idle_init(loop.native(), turn);
    turn->data = this;
  }
  uv_idle_start(turn, [](uv_idle_t* idle) {
    uv_idle_stop(idle);
    auto* s = static_cast<ipc_state*>(idle->data);
    s->settle();
    if (!s->closing) s->watch();
  });
}

void ipc_state::settle() {
  if (closing) return;
  if (write_error) return fail(write_error);
  run_completions();
  if (early_due && !closing) {
    early_due = false;
    deliver_early();
  }
  if (finishing && !closing && queue.empty() && !in_flight && held.empty()) finish();
}

void ipc_state::watch() noexcept {
  if (closing) return;
  int events = UV_READABLE;
  if (!queue.empty()) events |= UV_WRITABLE;
  if (events != watched) {
    uv_poll_start(&poll, events, &ipc_state::on_poll);
    watched = events;
  }
}

void ipc_state::on_poll(uv_poll_t* handle, int status, int events) {
  auto* s = static_cast<ipc_state*>(handle->data);
  s->wrote_this_turn = false;
  s->keep_spinning();
  if (status < 0) return s->fail(uv_error(status));
  if (events & UV_WRITABLE) {
    s->socket_full = false;
    s->flush();
  }
  if (events & UV_READABLE) s->read();
  s->settle();
  if (!s->closing) s->watch();
}

void ipc_state::complete(ipc_channel::error_callback done, std::error_code ec) {
  if (!done) return;
  completions.emplace_back(std::move(done), ec);
  later();
}

void ipc_state::run_completions() {
  // Completions are not events: they run even once the channel is closed.
  while (!completions.empty()) {
    auto [done, ec] = std::move(completions.front());
    completions.pop_front();
    loop.invoke(done, ec);
  }
}

bool ipc_state::send(message m, ipc_channel::error_callback done) {
  // Ports belong to threads of one process: they cannot cross to another; and
  // Node's protocol carries one descriptor per message.
  std::error_code refused;
  if (!connected)
    refused = make_error_code(errc::ipc_channel_closed);
  else if (!std::as_const(m).ports().empty() || std::as_const(m).fds().size() > 1)
    refused = make_error_code(errc::data_clone_error);
  int handle_fd = -1;
  if (!refused && !std::as_const(m).fds().empty()) {
    // The channel's own descriptor: the caller may close theirs at once, and a
    // number reused meanwhile can never send another file.
    handle_fd = fcntl(m.fds().front(), F_DUPFD_CLOEXEC, 0);
    if (handle_fd < 0) refused = uv_error(-errno);
    m.fds().clear();
  }
  if (refused) {
    complete(std::move(done), refused);
    return false;
  }
  if (in_flight) {
    held.push_back({std::move(m), handle_fd, std::move(done)});
    return false;
  }
  enqueue(std::move(m), handle_fd, std::move(done));
  return queued_bytes < ipc_channel::send_high_water_mark;
}

void ipc_state::enqueue(message m, int handle_fd, ipc_channel::error_callback done) {
  if (handle_fd >= 0) {
    handle_send h;
    h.fd = handle_fd;
    h.done = std::move(done);
    message wrapper(message::value_type{{"cmd", "NODE_HANDLE"}, {"type", handle_type(handle_fd)}, {"msg", std::move(m).value()}});
    wrapper.append_to(h.bytes);
    h.bytes.push_back('\n');
    queued_bytes += h.bytes.size();
    queue.push_back({h.bytes, handle_fd, {}, 0});
    in_flight = std::move(h);  // later messages wait for the peer's NODE_HANDLE_ACK
  } else {
    // Plain messages are appended to the last queued batch when it has not
    // started going out and carries no descriptor or completion of its own.
    bool extend = !queue.empty() && queue.back().offset == 0 && queue.back().fd < 0 && !queue.back().done &&
                  queue.back().bytes.size() < batch_bytes;
    if (!extend) queue.emplace_back();
    outgoing& item = queue.back();
    std::size_t old_size = item.bytes.size();
    m.append_to(item.bytes);
    item.bytes.push_back('\n');
    item.done = std::move(done);
    queued_bytes += item.bytes.size() - old_size;
  }
  // The first message of a loop turn goes out at once (latency); the ones that
  // follow it in the same turn are gathered and written together on the next
  // writable event (one system call for many), or at once when a batch is full.
  keep_spinning();
  if (!socket_full && (!wrote_this_turn || queued_bytes >= batch_bytes)) {
    wrote_this_turn = true;
    flush();
  } else {
    watch();
  }
}

void ipc_state::flush() {
  // A failed write is not reported here: flush() runs inside send(), and the
  // caller must not meet its own error, completions or disconnect there.
  while (!queue.empty() && !closing && !write_error) {
    // Gather queued messages into one sendmsg. A descriptor rides on the first
    // byte of a write, so a message with one starts a batch of its own.
    iovec iov[max_batch];
    std::size_t count = 0;
    for (auto it = queue.begin(); it != queue.end() && count < max_batch; ++it) {
      if (count > 0 && it->fd >= 0) break;
      iov[count++] = {it->bytes.data() + it->offset, it->bytes.size() - it->offset};
    }
    outgoing& item = queue.front();
    msghdr header{};
    header.msg_iov = iov;
    header.msg_iovlen = count;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    if (item.fd >= 0 && item.offset == 0) {
      header.msg_control = control;
      header.msg_controllen = sizeof control;
      cmsghdr* cmsg = CMSG_FIRSTHDR(&header);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cmsg), &item.fd, sizeof(int));
    }
    ssize_t n = sendmsg(fd, &header, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN) socket_full = true;  // until the writable event
      if (errno == EAGAIN || errno == EINTR) break;
      write_error = uv_error(-errno);
      later();
      break;
    }
    queued_bytes -= static_cast<std::size_t>(n);
    auto written = static_cast<std::size_t>(n);
    while (written > 0) {
      outgoing& front = queue.front();
      std::size_t rest = front.bytes.size() - front.offset;
      if (written < rest) {
        front.offset += written;
        break;
      }
      written -= rest;
      if (front.fd >= 0 && in_flight) in_flight->written = true;
      complete(std::move(front.done), {});
      queue.pop_front();
    }
    if (!queue.empty() && queue.front().offset > 0) break;  // the socket is full: wait until writable
  }
  watch();
}

void ipc_state::read() {
  if (!buffer) buffer = std::make_unique<char[]>(read_chunk);
  // A bounded number of reads per wake-up, so one busy channel cannot starve the loop.
  for (int round = 0; round < 16 && !closing; ++round) {
    iovec iov{buffer.get(), read_chunk};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_fds_per_read)];
    msghdr header{};
    header.msg_iov = &iov;
    header.msg_iovlen = 1;
    header.msg_control = control;
    header.msg_controllen = sizeof control;
    ssize_t n = recvmsg(fd, &header, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      return fail(uv_error(-errno));
    }
    take_descriptors(header);
    if (n == 0) return finish();  // the peer closed its end
    consume(std::string_view(buffer.get(), static_cast<std::size_t>(n)));
    if (static_cast<std::size_t>(n) < read_chunk) return;
  }
}

void ipc_state::take_descriptors(msghdr& header) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&header); c; c = CMSG_NXTHDR(&header, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      received_fds.push_back(received);
    }
  }
  // A well-behaved peer sends one descriptor and waits for its ACK; one that
  // sends descriptors no NODE_HANDLE claims cannot make this process hoard them.
  if (received_fds.size() > max_unclaimed_fds) {
    while (received_fds.size() > max_unclaimed_fds) {
      ::close(received_fds.front());
      received_fds.pop_front();
    }
    fail_soft(make_error_code(errc::queue_full));
  }
}

void ipc_state::consume(std::string_view chunk) {
  while (!chunk.empty() && !closing) {
    std::size_t newline = chunk.find('\n');
    std::string_view part = chunk.substr(0, newline);
    if (skipping) {
      // Dropping the rest of a line that was too long.
    } else if (inbox.size() + part.size() > options.max_message_size) {
      inbox.clear();
      inbox.shrink_to_fit();
      skipping = true;
      fail_soft(make_error_code(errc::message_too_large));
    } else if (newline != std::string_view::npos && inbox.empty()) {
      handle_line(part);  // the common case: a whole line in one read, no copy
    } else {
      inbox.append(part);
      if (newline != std::string_view::npos) {
        std::string line = std::move(inbox);
        inbox.clear();
        handle_line(line);
      }
    }
    if (newline == std::string_view::npos) return;
    skipping = false;
    chunk.remove_prefix(newline + 1);
  }
}

void ipc_state::handle_line(std::string_view line) {
  if (line.empty()) return;
  result<message> parsed = message::parse(line);
  if (!parsed) return fail_soft(parsed.error());
  message m = std::move(parsed).value();
  if (!is_internal(m.value())) return deliver(std::move(m), line.size());

  const std::string& cmd = m.value()["cmd"].get_ref<const std::string&>();
  if (cmd == "NODE_HANDLE") {
    if (received_fds.empty()) {
      // The descriptor was lost (MSG_CTRUNC): ask for it again, as Node does.
      write_internal(R"({"cmd":"NODE_HANDLE_NACK"})");
      return;
    }
    write_internal(R"({"cmd":"NODE_HANDLE_ACK"})");
    message inner(m.value().contains("msg") ? std::move(m.value()["msg"]) : message::value_type());
    inner.fds().push_back(received_fds.front());
    received_fds.pop_front();
    // A handle may carry an internal message too (Node's cluster sends its
    // listening sockets and connections that way).
    if (is_internal(inner.value()) && internal && owner) return loop.invoke(internal, std::move(inner));
    return deliver(std::move(inner), line.size());
  }
  // An answer to a handle that is not yet wholly written (or to none) is not
  // an answer to anything this side sent.
  bool answerable = in_flight && in_flight->written;
  if (cmd == "NODE_HANDLE_ACK") {
    if (answerable) answered({});
    return;
  }
  if (cmd == "NODE_HANDLE_NACK") {
    if (!answerable) return;
    if (++in_flight->retransmissions > max_handle_retransmissions) return answered(uv_error(UV_ECONNABORTED));
    in_flight->written = false;
    queued_bytes += in_flight->bytes.size();
    queue.push_back({in_flight->bytes, in_flight->fd, {}, 0});
    return flush();
  }
  if (internal && owner) loop.invoke(internal, std::move(m));
}

void ipc_state::answered(std::error_code ec) {
  handle_send h = std::move(*in_flight);
  in_flight.reset();
  ::close(h.fd);
  // A handle the peer never got is reported, never dropped in silence: to the
  // sender's callback, or else as an error event.
  if (h.done)
    complete(std::move(h.done), ec);
  else if (ec)
    fail_soft(ec);
  while (!held.empty() && !in_flight && !closing) {
    waiting w = std::move(held.front());
    held.pop_front();
    enqueue(std::move(w.m), w.fd, std::move(w.done));
  }
}

void ipc_state::write_internal(std::string text) {
  text.push_back('\n');
  queued_bytes += text.size();
  queue.push_back({std::move(text), -1, {}, 0});
  flush();
}

bool ipc_state::answer(message& m) {
  const message::value_type& v = m.value();
  if (requests.empty() || !v.is_object()) return false;
  auto id = v.find("id");
  if (id == v.end() || !id->is_number_integer()) return false;
  auto it = requests.find(id->get<std::int64_t>());
  if (it == requests.end()) return false;
  std::shared_ptr<ipc_request> r = it->second;
  r->finish(std::move(m));
  return true;
}

void ipc_state::deliver(message m, std::size_t bytes) {
  if (!owner) return close_all(m);
  if (answer(m)) return;
  // Messages that come before anyone listens are kept (as Node does), up to a
  // bound, so a peer cannot grow this process without limit.
  if (!user || !early.empty()) {
    if (early_bytes + bytes > options.max_early_bytes) {
      close_all(m);
      return fail_soft(make_error_code(errc::queue_full));
    }
    early_bytes += bytes;
    early.push_back({std::move(m), bytes});
    return;
  }
  loop.invoke(user, std::move(m));
}

void ipc_state::deliver_early() {
  while (!early.empty() && user && !closing && owner) {
    parked p = std::move(early.front());
    early.pop_front();
    early_bytes -= p.bytes;
    loop.invoke(user, std::move(p.m));
  }
}

void ipc_state::drop_sends() {
  std::error_code closed = make_error_code(errc::ipc_channel_closed);
  // The write that failed gets its own error; the rest ERR_IPC_CHANNEL_CLOSED.
  std::error_code ec = write_error ? write_error : closed;
  for (auto& item : queue) {
    if (item.done) completions.emplace_back(std::move(item.done), ec);
    if (item.fd >= 0 && in_flight && in_flight->done) completions.emplace_back(std::move(in_flight->done), ec);
    ec = closed;
  }
  queue.clear();
  queued_bytes = 0;
  if (in_flight) {
    ::close(in_flight->fd);
    if (in_flight->done) completions.emplace_back(std::move(in_flight->done), closed);
    in_flight.reset();
  }
  for (auto& w : held) {
    if (w.fd >= 0) ::close(w.fd);
    if (w.done) completions.emplace_back(std::move(w.done), closed);
  }
  held.clear();
}

void ipc_state::fail_soft(std::error_code ec) {
  if (error && owner) loop.invoke(error, ec);
}

void ipc_state::fail(std::error_code ec) {
  if (closing) return;
  fail_soft(ec);
  finish();
}

void ipc_state::finish() {
  if (closing) return;
  connected = false;
  finished = true;
  // The peer went away in the middle of a line: that message is lost.
  if (!inbox.empty() && !skipping) fail_soft(make_error_code(errc::invalid_message));
  inbox.clear();
  drop_sends();
  run_completions();
  event_callback_type on_disconnect = std::move(disconnect_event);
  if (on_disconnect && owner && !closing) loop.invoke(on_disconnect);
  close();
}

}  // namespace detail

ipc_channel::ipc_channel(loop& l, int fd, ipc_options options) {
  auto* s = new ipc_state(l);
  s->fd = fd;
  s->options = options;
  if (int rc = uv_poll_init(l.native(), &s->poll, fd)) {
    s->fd = -1;  // not ours to close on failure: the caller still owns it
    delete s;
    throw std::system_error(uv_error(rc), "ipc_channel");
  }
  // A deeper socket lets a burst flow while the sender is still producing it
  // (the kernel caps the size at net.core.wmem_max).
  int depth = 1 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &depth, sizeof depth);
  adopt(s);
  s->watch();
}

void ipc_channel::on_message(message_callback fn) {
  auto* s = state_as<ipc_state>();
  if (!s) return;
  s->user = std::move(fn);
  // Someone listens: the channel keeps the loop alive (parent_channel() starts unreferenced).
  if (s->user) ref();
  // Messages that arrived first are delivered in order, on the next turn.
  if (!s->early.empty()) {
    s->early_due = true;
    s->later();
  }
}

void ipc_channel::on_internal_message(message_callback fn) {
  if (auto* s = state_as<ipc_state>()) s->internal = std::move(fn);
}
void ipc_channel::on_error(error_callback fn) {
  if (auto* s = state_as<ipc_state>()) s->error = std::move(fn);
}
void ipc_channel::on_disconnect(event_callback fn) {
  if (auto* s = state_as<ipc_state>()) s->disconnect_event = std::move(fn);
}

bool ipc_channel::send(message m, error_callback done) {
  auto* s = state_as<ipc_state>();
  if (!s) {
    if (done) {
      loop::current().later([done = std::move(done)]() mutable { done(make_error_code(errc::ipc_channel_closed)); });
    }
    return false;
  }
  return s->send(std::move(m), std::move(done));
}

awaitable<result<message>> ipc_channel::request(message m, request_options options, std::stop_token stop) {
  auto* s = state_as<ipc_state>();
  auto r = std::make_shared<detail::ipc_request>(s ? s->loop : loop::current(), s, std::move(m), options, std::move(stop));
  if (s) {
    r->id = ++s->last_request_id;
    s->requests.emplace(r->id, r);
  }
  return awaitable<result<message>>(std::move(r));
}

void ipc_channel::disconnect() {
  auto* s = state_as<ipc_state>();
  if (!s || !s->connected) return;
  s->connected = false;
  s->finishing = true;
  s->later();
}

void ipc_channel::set_spin(std::chrono::microseconds spin) noexcept {
  if (auto* s = state_as<ipc_state>()) s->options.spin = spin;
}

bool ipc_channel::connected() const noexcept {
  auto* s = state_as<ipc_state>();
  return s && s->connected;
}

ipc_channel* parent_channel() {
  // The channel belongs to the loop of the thread that first asks for it (its
  // block is one of that loop's handles): it closes with that loop, and from
  // then on there is none. The object itself is a static with nothing to free.
  static ipc_channel channel = [] {
    int fd = channel_fd_from_environment();
    if (fd < 0 || !usable_channel(fd)) return ipc_channel();
    // Not for the programs this one starts without crew (crew's spawn closes it anyway).
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    ipc_channel c(loop::current(), fd);
    c.unref();
    return c;
  }();
  return channel.is_open() ? &channel : nullptr;
}

}  // namespace crew
