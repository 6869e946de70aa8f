// The heap block behind crew::ipc_channel; child_process reads its closed_hook.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <utility>

#include "crew/ipc.hpp"

namespace crew::detail {

struct ipc_state final : handle_state {
  using handle_state::handle_state;
  using event_callback_type = ipc_channel::event_callback;
  ~ipc_state() override;
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&poll); }
  void on_closing() noexcept override;

  struct outgoing {
    std::string bytes;  // one or more JSON lines
    int fd = -1;        // sent with the first byte, as SCM_RIGHTS
    ipc_channel::error_callback done;
    std::size_t offset = 0;
  };
  struct sent_handle {
    std::string bytes;
    int fd = -1;
  };

  static void on_poll(uv_poll_t* handle, int status, int events);
  void watch() noexcept;
  bool send(message m, ipc_channel::error_callback done);
  void enqueue(message m, ipc_channel::error_callback done);
  void write_internal(std::string text);
  void flush();
  void read();
  void consume(std::string_view chunk);
  void handle_line(std::string_view line);
  void acknowledged();
  void deliver(message m);
  void deliver_early();
  void run_completions();
  void fail_soft(std::error_code ec);  // an error event; the channel goes on
  void fail(std::error_code ec);       // an error event, then the channel closes
  void begin_finish();                 // closes once the queue is written, on the loop
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
  std::deque<message> early;        // user messages that came before on_message
  bool early_due = false;           // on_message was set: deliver `early` on the next poll event

  // Writing
  std::deque<outgoing> queue;
  std::size_t queued_bytes = 0;
  std::deque<std::pair<message, ipc_channel::error_callback>> held;  // waiting for NODE_HANDLE_ACK
  std::deque<std::pair<ipc_channel::error_callback, std::error_code>> completions;  // run on the next poll event
  bool awaiting_ack = false;
  bool wrote_this_turn = false;  // a send wrote at once since the last poll event
  bool socket_full = false;      // the last write met EAGAIN: wait for the writable event
  int retransmissions = 0;
  sent_handle last_handle;

  bool connected = true;
  bool finishing = false;

  // Spinning (ipc_options::spin): an idle handle keeps uv_run from sleeping.
  void keep_spinning() noexcept;
  uv_idle_t* spinner = nullptr;  // its own allocation, freed by its close callback
  uint64_t spin_until = 0;       // uv_hrtime() deadline
};

}  // namespace crew::detail
