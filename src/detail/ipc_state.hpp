// The heap block behind crew::ipc_channel; child_process reads its closed_hook.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "crew/ipc.hpp"
#include "detail/spinner.hpp"

namespace crew::detail {

struct ipc_request;  // a request() waiting for its reply (ipc.cpp)

struct ipc_state final : handle_state {
  using handle_state::handle_state;
  using event_callback_type = ipc_channel::event_callback;
  // Completions still due run here: the close callback comes after the call
  // that closed the channel has returned.
  ~ipc_state() override;
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&poll); }
  void on_closing() noexcept override;

  struct outgoing {
    std::string bytes;  // one or more JSON lines
    int fd = -1;        // sent with the first byte, as SCM_RIGHTS: the handle in flight's descriptor
    ipc_channel::error_callback done;
    std::size_t offset = 0;
  };
  // The message with a descriptor that was sent last, until the peer answers.
  struct handle_send {
    std::string bytes;  // its NODE_HANDLE line, kept to send again after a NACK
    int fd = -1;        // the channel's own dup of the sender's descriptor
    ipc_channel::error_callback done;
    bool written = false;  // the whole line went out, so the peer may answer it
    int retransmissions = 0;
  };
  // A message sent while a handle is in flight: it waits for the peer's answer.
  struct waiting {
    message m;
    int fd = -1;  // the channel's own dup, when the message carries a descriptor
    ipc_channel::error_callback done;
  };
  struct parked {
    message m;
    std::size_t bytes;  // the length of its line
  };

  static void on_poll(uv_poll_t* handle, int status, int events);
  void watch() noexcept;
  bool send(message m, ipc_channel::error_callback done);
  void enqueue(message m, int handle_fd, ipc_channel::error_callback done);
  void write_internal(std::string text);
  void flush();
  void read();
  void take_descriptors(msghdr& header);
  void consume(std::string_view chunk);
  void handle_line(std::string_view line);
  void answered(std::error_code ec);  // the peer's NODE_HANDLE_ACK, or giving up on NACKs
  bool answer(message& m);  // completes the request m replies to, if any
  void deliver(message m, std::size_t bytes);
  void deliver_early();
  void complete(ipc_channel::error_callback done, std::error_code ec);  // runs `done` on a later turn
  void run_completions();
  void drop_sends();                   // every send not finished gets ERR_IPC_CHANNEL_CLOSED
  void fail_soft(std::error_code ec);  // an error event; the channel goes on
  void fail(std::error_code ec);       // an error event, then the channel closes
  void later() noexcept;               // settle() on the next loop iteration
  void settle();                       // what calls found, delivered from a loop callback
  void finish();

  uv_poll_t poll;
  int fd = -1;
  int watched = 0;  // the events uv_poll watches now
  ipc_options options;

  ipc_channel::message_callback user;
  ipc_channel::message_callback internal;
  ipc_channel::error_callback error;
  event_callback_type disconnect_event;
  unique_function<void()> closed_hook;  // internal: told once when the channel closes

  // Reading
  std::unique_ptr<char[]> buffer;
  std::string inbox;                // the start of a line still being received
  bool skipping = false;            // dropping the rest of a line over max_message_size
  std::deque<int> received_fds;     // SCM_RIGHTS descriptors not yet claimed by a NODE_HANDLE
  std::deque<parked> early;         // user messages that came before on_message, or behind those
  std::size_t early_bytes = 0;      // the lines of `early`, bounded by options.max_early_bytes
  bool early_due = false;           // on_message was set: deliver `early` on the next turn

  // Requests (ipc_channel::request): by id, until their reply. A closed
  // channel's requests complete with ERR_IPC_CHANNEL_CLOSED once it is gone,
  // after the call that closed it has returned.
  std::map<std::int64_t, std::shared_ptr<ipc_request>> requests;
  std::int64_t last_request_id = 0;
  std::vector<std::shared_ptr<ipc_request>> orphaned_requests;

  // Writing
  std::deque<outgoing> queue;
  std::size_t queued_bytes = 0;
  std::optional<handle_send> in_flight;  // later messages wait in `held` while it is set
  std::deque<waiting> held;
  std::deque<std::pair<ipc_channel::error_callback, std::error_code>> completions;
  std::error_code write_error;   // a failed write, reported on the next turn
  bool wrote_this_turn = false;  // a send wrote at once since the last poll event
  bool socket_full = false;      // the last write met EAGAIN: wait for the writable event

  bool connected = true;
  bool finishing = false;  // disconnect(): close once every send is done
  bool finished = false;   // the channel ended itself (finish()), not its owner or its loop

  // The next turn: an idle handle (its own allocation, freed by its close
  // callback) that runs settle() once, so nothing a call finds reaches the
  // user inside that call.
  uv_idle_t* turn = nullptr;

  // Spinning (ipc_options::spin): the loop polls the socket instead of sleeping.
  void keep_spinning() noexcept {
    if (!closing) spin.keep(loop.native(), options.spin, this);
  }
  spinner spin;
};

}  // namespace crew::detail
