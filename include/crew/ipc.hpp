// Message channels between processes, speaking Node's IPC protocol (json mode).
//
// Every message is one JSON text and a "\n" on a Unix stream socket; objects
// whose `cmd` starts with "NODE_" are Node's internal messages, kept apart from
// user messages; a file descriptor travels as SCM_RIGHTS data with a
// {"cmd":"NODE_HANDLE","type":...,"msg":...} message, and the receiver answers
// {"cmd":"NODE_HANDLE_ACK"}. So a crew process talks to a Node parent or child
// exactly as another Node process would.
//
//   // in a child started by Node's fork() or spawn(..., {stdio: [..., 'ipc']}):
//   if (crew::ipc_channel* parent = crew::parent_channel()) {
//     parent->on_message([parent](crew::message m) { parent->send(std::move(m)); });  // echo
//   }
//   crew::loop::current().run();
#pragma once

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <stop_token>
#include <system_error>
#include <type_traits>
#include <vector>

#include "crew/detail/handle.hpp"
#include "crew/unique_function.hpp"
#include "crew/error.hpp"
#include "crew/loop.hpp"
#include "crew/message.hpp"
#include "crew/task.hpp"

namespace crew {

/// Options of an ipc_channel.
struct ipc_options {
  std::size_t max_message_size = 64u << 20;  ///< longest accepted line, bytes; default: 64 MiB
  /// Bytes of messages kept while no message callback is set (their lines'
  /// lengths). Past it a message is dropped, its descriptors closed, with an
  /// ERR_QUEUE_FULL error event. Default: 64 MiB.
  std::size_t max_early_bytes = 64u << 20;
  /// After each message sent or received, keep the loop polling without sleeping
  /// this long, so that a quick answer is read at once instead of after a
  /// wake-up (about 100 us on virtual machines). The spin ends by itself once
  /// the channel goes quiet, so an idle channel costs nothing; a busy one costs
  /// at most this much CPU time per message. 0 never spins. Default: 50 us.
  std::chrono::microseconds spin{50};
};

/// Options of ipc_channel::request().
struct request_options {
  std::chrono::milliseconds timeout{0};  ///< give up with ETIMEDOUT after this long; default: 0 (never)
};
// Written in braces inside co_await (`co_await ch.request(m, {.timeout = 1s})`),
// which GCC 12 mis-compiles for a struct with a destructor (docs/async.md). The
// stop token is therefore a parameter of its own.
static_assert(std::is_trivially_destructible_v<request_options>,
              "request_options is written in braces inside co_await: GCC 12 copies it bit by bit");

/// One end of an IPC channel. Loop thread only.
///
/// Callbacks follow crew's contract. No callback runs inside the call that
/// caused it: an error that send() or disconnect() meets (EPIPE from a peer that
/// went away) is an error event on a later loop turn, followed by the completions
/// and the disconnect event. Every send completion (`done`) runs exactly once:
/// with success, with an error, or with ERR_IPC_CHANNEL_CLOSED when the channel
/// closes first, even when the owner closes or destroys it (completions are not
/// events; they still run, after that call returns). Only a loop destroyed with
/// the channel still open drops them, as it drops its posts. Events (message,
/// internal message, error, disconnect) never run once the owner has closed or
/// destroyed the channel.
///
/// Bad input never ends the channel: a malformed line (ERR_INVALID_MESSAGE) or
/// one longer than max_message_size (ERR_MESSAGE_TOO_LARGE) is an error event
/// and is skipped; so are messages past max_early_bytes and descriptors that no
/// NODE_HANDLE claims (ERR_QUEUE_FULL; the descriptors are closed). The channel
/// ends (disconnect event) when the peer closes its end or disconnect() is
/// called; a read or write failure is an error event first.
class ipc_channel : private detail::handle_owner {
 public:
  /// Whether the channel is open (not closed, moved from or closed by its loop).
  using handle_owner::is_open;
  /// Closes the channel now, dropping queued messages (disconnect() sends them
  /// first); no event runs afterwards, and their completions get
  /// ERR_IPC_CHANNEL_CLOSED after this call returns.
  using handle_owner::close;
  /// Node's channel.ref()/unref(): a referenced channel keeps its loop's run()
  /// going.
  using handle_owner::ref;
  using handle_owner::unref;
  using handle_owner::has_ref;

  using message_callback = unique_function<void(message)>;
  using error_callback = unique_function<void(std::error_code)>;
  using event_callback = unique_function<void()>;

  /// Bytes queued for writing past which send() returns false (Node: 128 KiB).
  static constexpr std::size_t send_high_water_mark = 128 * 1024;

  ipc_channel() noexcept = default;

  /// Takes ownership of `fd`, a connected AF_UNIX SOCK_STREAM socket. Throws
  /// std::system_error if the loop cannot watch it.
  ipc_channel(loop& l, int fd, ipc_options options = ipc_options());

  /// User messages. Messages that arrive before a callback is set are kept (up
  /// to ipc_options::max_early_bytes) and delivered, in order, on the loop turn
  /// after it is set (as Node does). A message that came with a file descriptor
  /// (NODE_HANDLE) carries it in fds(); the receiver owns it.
  void on_message(message_callback fn);
  /// Node's internal messages ("NODE_..." commands) that crew does not handle itself.
  void on_internal_message(message_callback fn);
  void on_error(error_callback fn);
  /// The channel closed: the last event.
  void on_disconnect(event_callback fn);

  /// Sends a message. Returns false when the write queue holds
  /// send_high_water_mark bytes or more (back-pressure: the message is still
  /// queued). Messages keep their order.
  ///
  /// A message without descriptors: `done` runs once its bytes are written.
  ///
  /// A message with a descriptor (message::fds(), one at most: Node's protocol
  /// carries one per message) travels as a NODE_HANDLE. send() takes the
  /// channel's own duplicate of it at once, so the caller may close its copy
  /// right away; the duplicate is closed once the peer has answered, or when the
  /// message is dropped. `done` runs once the peer has acknowledged it
  /// (NODE_HANDLE_ACK): from then on the peer owns the descriptor. It gets
  /// ECONNABORTED when the peer refused it past Node's 3 retransmissions (NACK),
  /// a write error, or ERR_IPC_CHANNEL_CLOSED when the channel closes before the
  /// ACK: the peer never confirmed it, and the sender may take it back (a sender
  /// without `done` gets the ECONNABORTED as an error event instead). Later
  /// messages wait for the ACK, as in Node.
  ///
  /// Errors in `done`, never thrown and never inside this call:
  /// ERR_IPC_CHANNEL_CLOSED after disconnect() or close; DataCloneError for
  /// message ports or more than one descriptor; EBADF/EMFILE when the
  /// descriptor cannot be duplicated.
  bool send(message m, error_callback done = {});

  /// A request and its reply, as `await` on a promise-based RPC over Node's
  /// process.send reads: sends `m` (a JSON object) with an "id" member (a new
  /// number per request, replacing any "id" it had) and completes with the
  /// first user message whose "id" equals it: the reply, which on_message()
  /// then does not see. A Node peer answers with
  /// `process.on('message', m => process.send({id: m.id, result: ...}))`; a
  /// crew peer likewise, through parent_channel(). A reply that comes after its
  /// request ended (timed out, say) reaches on_message() as any message.
  ///
  /// co_await gives result<message>: the reply, or ETIMEDOUT after
  /// options.timeout, ECANCELED when `stop` is requested, ERR_IPC_CHANNEL_CLOSED
  /// when the channel is closed, disconnects or is closed before the reply,
  /// EINVAL when `m` is not an object, or the send's own error. The request is
  /// sent when awaited; while it waits, it keeps the loop alive (also on an
  /// unreferenced parent_channel()). Destroying the awaitable forgets the
  /// request. Requests in flight in both directions at once should not share
  /// ids: give each side's requests their own channel, or answer with another
  /// member than "id".
  ///
  ///   crew::message::value_type question = {{"op", "add"}, {"a", 1}, {"b", 2}};
  ///   crew::result<crew::message> reply = co_await child.request(question, {.timeout = 1s});
  ///   if (reply) std::cout << reply->value()["result"] << "\n";
  awaitable<result<message>> request(message m, request_options options = {}, std::stop_token stop = {});
  /// Rejected at build time: a braced JSON list in the co_await expression
  /// (`co_await ch.request({{"op", "add"}})`) is what GCC 12 cannot compile
  /// ("array used as initializer"). Name the message first.
  awaitable<result<message>> request(std::initializer_list<message::value_type> m,  // GCC 12: name the message first
                                     request_options options = {}, std::stop_token stop = {}) = delete;

  /// Stops sending and closes the channel, on a later turn, once queued messages
  /// are written (and a message with a descriptor acknowledged); the disconnect
  /// event follows.
  void disconnect();

  /// Whether send() is still allowed.
  bool connected() const noexcept;

  /// Changes ipc_options::spin (for parent_channel(), made with the defaults).
  void set_spin(std::chrono::microseconds spin) noexcept;

 private:
  struct state;
  friend class child_process;
};

/// The channel to this process's parent, when the parent started it with one
/// (NODE_CHANNEL_FD in the environment, which crew removes at start-up, with
/// NODE_CHANNEL_SERIALIZATION_MODE, so grandchildren do not inherit it). Null
/// otherwise, and when NODE_CHANNEL_FD names no connected Unix stream socket. Made on the calling thread's loop at the first call, and owned by
/// that loop: it closes when the loop is destroyed, and from then on this
/// returns null. Call it from the main thread. Like Node's process.channel:
/// unreferenced (the process may exit) until a message callback is set.
ipc_channel* parent_channel();

}  // namespace crew
