// IPC channels between crew processes, and bad input on them.
#include "crew/ipc.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <stop_token>

#include "crew/child_process.hpp"
#include "socket_support.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using json = crew::message::value_type;

// A channel pair inside this process.
struct channel_pair {
  crew::ipc_channel a, b;
  channel_pair(crew::loop& l, crew::ipc_options options = {}) {
    int ends[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
    a = crew::ipc_channel(l, ends[0], options);
    b = crew::ipc_channel(l, ends[1], options);
  }
};

TEST(ipc, messages_arrive_whole_and_in_order) {
  crew::loop l;
  channel_pair p(l);
  std::vector<std::string> got;
  p.b.on_message([&](crew::message m) {
    got.push_back(m.to_string());
    if (got.size() == 3) p.b.disconnect();
  });
  EXPECT_TRUE(p.a.send(json{{"n", 1}}));
  EXPECT_TRUE(p.a.send(std::string("two")));
  EXPECT_TRUE(p.a.send(json::array({3, "\u2028", "\U0001F600"})));
  crew::test::run_within(l);
  EXPECT_EQ(got, (std::vector<std::string>{R"({"n":1})", R"("two")", "[3,\"\u2028\",\"\U0001F600\"]"}));
}

TEST(ipc, a_spinning_channel_delivers_and_never_keeps_the_loop_alive_by_spinning) {
  crew::loop l;
  channel_pair p(l, {.spin = std::chrono::milliseconds(5)});
  int got = 0;
  p.b.on_message([&](crew::message m) {
    if (++got < 100) return void(p.b.send(std::move(m)));
    p.b.disconnect();
  });
  p.a.on_message([&](crew::message m) { p.a.send(std::move(m)); });
  p.a.send(0);
  crew::test::run_within(l);  // ends once both channels closed, spinner or not
  EXPECT_EQ(got, 100);
}

TEST(ipc, messages_sent_before_anyone_listens_are_kept) {
  crew::loop l;
  channel_pair p(l);
  int got = 0;
  p.a.send(1);
  p.a.send(2);
  crew::timer later = crew::scoped_timeout(10ms, [&] {
    p.b.on_message([&](crew::message m) {
      EXPECT_EQ(m.get<int>(), ++got);
      if (got == 2) p.b.disconnect();
    });
  }, l);
  crew::test::run_within(l);
  EXPECT_EQ(got, 2);
}

TEST(ipc, send_completes_on_the_loop_and_fails_after_disconnect) {
  crew::loop l;
  channel_pair p(l);
  std::vector<std::string> order;
  p.a.send(1, [&](std::error_code ec) { order.push_back(ec ? "error" : "written"); });
  order.push_back("after send");
  p.a.disconnect();
  EXPECT_FALSE(p.a.connected());
  EXPECT_FALSE(p.a.send(2, [&](std::error_code ec) { order.push_back(crew::error_name(ec)); }));
  bool disconnected = false;
  p.b.on_disconnect([&] { disconnected = true; });
  p.b.on_message([](crew::message) {});
  crew::test::run_within(l);
  EXPECT_EQ(order, (std::vector<std::string>{"after send", "written", "ERR_IPC_CHANNEL_CLOSED"}));
  EXPECT_TRUE(disconnected) << "the peer sees the channel close";
}

TEST(ipc, a_descriptor_travels_with_a_message) {
  crew::loop l;
  channel_pair p(l);
  int pipe_ends[2];
  ASSERT_EQ(pipe2(pipe_ends, O_CLOEXEC), 0);
  crew::message m = json{{"what", "a pipe"}};
  m.fds().push_back(pipe_ends[1]);
  std::vector<std::string> got;
  p.b.on_message([&](crew::message r) {
    got.push_back(r.to_string());
    if (!r.fds().empty()) {
      EXPECT_EQ(write(r.fds()[0], "via fd", 6), 6);
      close(r.fds()[0]);
    }
    if (got.size() == 2) p.b.disconnect();
  });
  p.a.send(std::move(m));
  p.a.send(std::string("after the handle"));  // held until the ACK, then sent
  crew::test::run_within(l);
  close(pipe_ends[1]);
  char buffer[16] = {};
  EXPECT_EQ(read(pipe_ends[0], buffer, sizeof buffer), 6);
  close(pipe_ends[0]);
  EXPECT_EQ(std::string(buffer), "via fd");
  EXPECT_EQ(got, (std::vector<std::string>{R"({"what":"a pipe"})", R"("after the handle")"}));
}

// The raw end of a channel, to write bytes no well-behaved peer would.
struct raw_peer {
  int fd = -1;
  crew::ipc_channel channel;
  raw_peer(crew::loop& l, crew::ipc_options options = {}) {
    int ends[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
    fd = ends[0];
    channel = crew::ipc_channel(l, ends[1], options);
  }
  ~raw_peer() {
    if (fd >= 0) ::close(fd);
  }
  void write_raw(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::write(fd, bytes.data(), bytes.size());
      ASSERT_GT(n, 0);
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
};

// A pipe whose write end is what travels: once every copy of that end is
// closed, wherever it went, the read end sees end-of-file.
struct probe_pipe {
  int read_end = -1, write_end = -1;
  probe_pipe() {
    int ends[2];
    EXPECT_EQ(pipe2(ends, O_CLOEXEC | O_NONBLOCK), 0);
    read_end = ends[0];
    write_end = ends[1];
  }
  ~probe_pipe() {
    ::close(read_end);
    if (write_end >= 0) ::close(write_end);
  }
  // Closes this side's write end; true when no copy of it is left anywhere.
  bool no_copy_left() {
    if (write_end >= 0) ::close(std::exchange(write_end, -1));
    char byte;
    return ::read(read_end, &byte, 1) == 0;
  }
};

// Writes `bytes` to a socket with `fd` attached as SCM_RIGHTS.
void write_with_fd(int socket, std::string_view bytes, int fd) {
  ASSERT_EQ(crew::test::send_with_fd(socket, bytes, fd), static_cast<ssize_t>(bytes.size()));
}

using crew::test::read_available;

std::size_t count_of(std::string_view text, std::string_view what) {
  std::size_t count = 0;
  for (std::size_t at = text.find(what); at != std::string_view::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

TEST(ipc, a_send_that_meets_a_vanished_peer_reports_on_a_later_turn_never_inside_send) {
  crew::loop l;
  raw_peer peer(l);
  ::close(std::exchange(peer.fd, -1));  // the peer is gone: the next write meets EPIPE
  // The cluster primary's use-after-free: a disconnect handler that destroys
  // what the code calling send() still uses.
  auto user = std::make_unique<int>(7);
  std::vector<std::string> events;
  bool in_send = false;
  peer.channel.on_error([&](std::error_code ec) {
    EXPECT_FALSE(in_send);
    events.push_back("error " + crew::error_name(ec));
  });
  peer.channel.on_disconnect([&] {
    EXPECT_FALSE(in_send);
    user.reset();
    events.push_back("disconnect");
  });
  in_send = true;
  peer.channel.send(1, [&](std::error_code ec) {
    EXPECT_FALSE(in_send);
    events.push_back("done " + crew::error_name(ec));
  });
  peer.channel.send(2, [&](std::error_code ec) { events.push_back("done " + crew::error_name(ec)); });
  EXPECT_EQ(*user, 7) << "the caller's objects are intact after send()";
  in_send = false;
  EXPECT_TRUE(events.empty());
  crew::test::run_within(l);
  EXPECT_EQ(events, (std::vector<std::string>{"error EPIPE", "done EPIPE", "done ERR_IPC_CHANNEL_CLOSED",
                                              "disconnect"}));
}

TEST(ipc, every_completion_runs_once_when_the_owner_closes_or_destroys_the_channel) {
  crew::loop l;
  channel_pair p(l);
  std::vector<std::string> closed, destroyed;
  auto record = [](std::vector<std::string>& done) {
    return [&done](std::error_code ec) { done.push_back(ec ? crew::error_name(ec) : "written"); };
  };
  p.a.send(1, record(closed));  // the first of a turn is written at once
  p.a.send(2, record(closed));  // the rest wait for the writable event
  p.a.close();
  p.b.send(3, record(destroyed));
  p.b.send(4, record(destroyed));
  p.b = crew::ipc_channel();
  EXPECT_TRUE(closed.empty() && destroyed.empty()) << "completions never run inside close()";
  crew::test::run_within(l);
  EXPECT_EQ(closed, (std::vector<std::string>{"written", "ERR_IPC_CHANNEL_CLOSED"}));
  EXPECT_EQ(destroyed, (std::vector<std::string>{"written", "ERR_IPC_CHANNEL_CLOSED"}));
}

TEST(ipc, a_loop_destroyed_with_the_channel_open_drops_its_completions_as_it_drops_posts) {
  int ran = 0;
  auto l = std::make_unique<crew::loop>();
  channel_pair p(*l);
  p.a.send(1, [&](std::error_code) { ++ran; });  // written: its completion waits for the next turn
  p.a.send(2, [&](std::error_code) { ++ran; });  // queued
  l.reset();
  EXPECT_EQ(ran, 0);
  EXPECT_FALSE(p.a.is_open());
}

TEST(ipc, no_event_runs_after_the_owner_closes_the_channel) {
  crew::loop l;
  raw_peer peer(l);
  std::vector<std::string> events;
  peer.channel.on_message([&](crew::message m) {
    events.push_back(m.to_string());
    peer.channel.close();
  });
  peer.channel.on_error([&](std::error_code ec) { events.push_back(crew::error_name(ec)); });
  peer.channel.on_disconnect([&] { events.push_back("disconnect"); });
  peer.write_raw("1\n2\nnot json\n");
  ::close(std::exchange(peer.fd, -1));
  crew::test::run_within(l);
  EXPECT_EQ(events, (std::vector<std::string>{"1"}));
}

TEST(ipc, a_handle_send_completes_once_the_peer_has_acknowledged_it) {
  crew::loop l;
  channel_pair p(l);
  probe_pipe probe;
  std::vector<std::string> order;
  p.b.on_message([&](crew::message m) {
    order.push_back("received");
    for (int fd : m.fds()) ::close(fd);
    p.b.disconnect();
  });
  crew::message m = 1;
  m.fds().push_back(probe.write_end);
  p.a.send(std::move(m), [&](std::error_code ec) { order.push_back("done " + crew::error_name(ec)); });
  crew::test::run_within(l);
  EXPECT_EQ(order, (std::vector<std::string>{"received", "done "}));
  EXPECT_TRUE(probe.no_copy_left()) << "the channel's own copy is closed once the peer has it";
}

TEST(ipc, the_sender_may_close_its_descriptor_at_once_and_reuse_the_number) {
  crew::loop l;
  channel_pair p(l);
  probe_pipe sent, reused;
  crew::message m = 1;
  m.fds().push_back(sent.write_end);
  p.a.send(json{{"hold", "the next one back"}});  // the handle goes out on a later writable event
  p.a.send(std::move(m));
  // The caller closes its copy and the number is taken by another file.
  ASSERT_EQ(dup2(reused.write_end, sent.write_end), sent.write_end);
  p.b.on_message([&](crew::message r) {
    for (int fd : r.fds()) {
      EXPECT_EQ(::write(fd, "x", 1), 1);
      ::close(fd);
    }
    if (!r.fds().empty()) p.b.disconnect();
  });
  crew::test::run_within(l);
  char byte;
  EXPECT_EQ(::read(sent.read_end, &byte, 1), 1) << "the file that was sent arrived";
  EXPECT_EQ(::read(reused.read_end, &byte, 1), -1) << "not the one that took its number";
}

TEST(ipc, a_handle_the_peer_refuses_past_the_retransmission_limit_completes_with_econnaborted) {
  crew::loop l;
  raw_peer peer(l);
  probe_pipe probe;
  crew::message m = 1;
  m.fds().push_back(probe.write_end);
  std::vector<std::string> done;
  peer.channel.send(std::move(m), [&](std::error_code ec) { done.push_back(crew::error_name(ec)); });
  peer.channel.send(2, [&](std::error_code ec) { done.push_back("after: " + crew::error_name(ec)); });
  std::size_t handles = 0;
  std::string received;
  for (int turn = 0; turn < 1000 && done.size() < 2; ++turn) {
    received += read_available(peer.fd);
    for (; handles < count_of(received, "NODE_HANDLE"); ++handles) peer.write_raw("{\"cmd\":\"NODE_HANDLE_NACK\"}\n");
    uv_run(l.native(), UV_RUN_NOWAIT);
  }
  received += read_available(peer.fd);
  EXPECT_EQ(handles, 4u) << "sent once, then again after each of 3 NACKs";
  EXPECT_EQ(done, (std::vector<std::string>{"ECONNABORTED", "after: "}));
  EXPECT_NE(received.find("2\n"), std::string::npos) << "the next message went out after the give-up";
  EXPECT_TRUE(probe.no_copy_left()) << "the channel's copy is closed after the give-up";
}

TEST(ipc, handles_not_yet_acknowledged_when_the_channel_closes_complete_with_err_ipc_channel_closed) {
  crew::loop l;
  raw_peer peer(l);
  probe_pipe probe;
  std::vector<std::string> done;
  for (int i = 0; i < 2; ++i) {  // one in flight, one held behind it
    crew::message m = i;
    m.fds().push_back(probe.write_end);
    peer.channel.send(std::move(m), [&](std::error_code ec) { done.push_back(crew::error_name(ec)); });
  }
  EXPECT_NE(read_available(peer.fd).find("NODE_HANDLE"), std::string::npos) << "the first went out at once";
  ::close(std::exchange(peer.fd, -1));  // the peer leaves without an ACK
  crew::test::run_within(l);
  EXPECT_EQ(done, (std::vector<std::string>{"ERR_IPC_CHANNEL_CLOSED", "ERR_IPC_CHANNEL_CLOSED"}));
  EXPECT_TRUE(probe.no_copy_left());
}

TEST(ipc, an_ack_for_a_handle_never_sent_is_ignored) {
  crew::loop l;
  raw_peer peer(l);
  std::vector<std::string> events;
  peer.channel.on_message([&](crew::message m) { events.push_back(m.to_string()); });
  peer.channel.on_error([&](std::error_code ec) { events.push_back(crew::error_name(ec)); });
  peer.write_raw("{\"cmd\":\"NODE_HANDLE_ACK\"}\n{\"cmd\":\"NODE_HANDLE_NACK\"}\n1\n");
  ::close(std::exchange(peer.fd, -1));
  crew::test::run_within(l);
  EXPECT_EQ(events, (std::vector<std::string>{"1"}));
}

TEST(ipc, descriptors_kept_for_a_listener_that_never_comes_are_closed_with_the_channel) {
  probe_pipe probe;
  {
    crew::loop l;
    raw_peer peer(l);
    write_with_fd(peer.fd, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":1}\n", probe.write_end);
    write_with_fd(peer.fd, "2\n", probe.write_end);  // a descriptor no NODE_HANDLE claims
    ::close(std::exchange(peer.fd, -1));
    crew::test::run_within(l);  // the channel reads both, parks the first, and closes at the end
    EXPECT_FALSE(peer.channel.is_open());
  }
  EXPECT_TRUE(probe.no_copy_left());
}

TEST(ipc, messages_past_the_early_bound_are_dropped_with_err_queue_full) {
  crew::loop l;
  raw_peer peer(l, {.max_early_bytes = 20});
  probe_pipe probe;
  std::vector<std::string> events;
  peer.channel.on_error([&](std::error_code ec) { events.push_back(crew::error_name(ec)); });
  peer.write_raw("\"1234567\"\n\"abcdefg\"\n\"dropped\"\n");  // 9 bytes a line: two fit in 20
  write_with_fd(peer.fd, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":1}\n", probe.write_end);
  crew::timer later = crew::scoped_timeout(20ms, [&] {
    peer.channel.on_message([&](crew::message m) {
      events.push_back(m.to_string());
      if (events.size() == 4) peer.channel.disconnect();
    });
  }, l);
  crew::test::run_within(l);
  EXPECT_EQ(events, (std::vector<std::string>{"ERR_QUEUE_FULL", "ERR_QUEUE_FULL", R"("1234567")", R"("abcdefg")"}));
  EXPECT_TRUE(probe.no_copy_left()) << "the dropped handle's descriptor is closed";
}

TEST(ipc, descriptors_no_handle_message_claims_are_bounded) {
  crew::loop l;
  raw_peer peer(l);
  probe_pipe probe;
  int errors = 0;
  peer.channel.on_error([&](std::error_code ec) {
    EXPECT_EQ(ec, crew::errc::queue_full);
    ++errors;
  });
  int got = 0;
  peer.channel.on_message([&](crew::message m) {
    EXPECT_TRUE(m.fds().empty());
    ++got;
  });
  for (int i = 0; i < 40; ++i) write_with_fd(peer.fd, std::to_string(i) + "\n", probe.write_end);
  for (int turn = 0; turn < 1000 && got < 40; ++turn) uv_run(l.native(), UV_RUN_NOWAIT);
  EXPECT_EQ(got, 40);
  EXPECT_GT(errors, 0);
  ::close(std::exchange(peer.fd, -1));
  crew::test::run_within(l);
  EXPECT_TRUE(probe.no_copy_left());
}

TEST(ipc, malformed_lines_are_error_events_and_the_channel_goes_on) {
  crew::loop l;
  raw_peer peer(l);
  std::vector<std::string> events;
  peer.channel.on_message([&](crew::message m) { events.push_back(m.to_string()); });
  peer.channel.on_error([&](std::error_code ec) { events.push_back(crew::error_name(ec)); });
  peer.channel.on_disconnect([&] { events.push_back("disconnect"); });
  peer.write_raw("not json\n{\"ok\":1}\n{\"bad utf8\":\"\xff\"}\n[1,\n\"split ");
  peer.write_raw("across writes\"\n");
  close(peer.fd);
  crew::test::run_within(l);
  EXPECT_EQ(events, (std::vector<std::string>{"ERR_INVALID_MESSAGE", R"({"ok":1})", "ERR_INVALID_MESSAGE",
                                              "ERR_INVALID_MESSAGE", R"("split across writes")", "disconnect"}));
}

TEST(ipc, a_line_over_the_size_limit_is_skipped_with_an_error) {
  crew::loop l;
  raw_peer peer(l, {.max_message_size = 1000});
  std::vector<std::string> events;
  peer.channel.on_message([&](crew::message m) { events.push_back(m.to_string()); });
  peer.channel.on_error([&](std::error_code ec) { events.push_back(crew::error_name(ec)); });
  std::string huge = "\"" + std::string(5000, 'x') + "\"\n";
  peer.write_raw("1\n");
  peer.write_raw(huge);
  peer.write_raw("2\n");
  close(peer.fd);
  crew::test::run_within(l);
  EXPECT_EQ(events, (std::vector<std::string>{"1", "ERR_MESSAGE_TOO_LARGE", "2"}));
}

TEST(ipc, a_peer_that_dies_mid_message_is_an_error_then_a_disconnect) {
  crew::loop l;
  crew::child_process child = crew::spawn("sh", {"-c", "printf '{\"whole\":1}\\n{\"partial\":' >&3; kill -9 $$"},
                                          {.stdio = {crew::stdio::ignore(), crew::stdio::ignore(),
                                                     crew::stdio::ignore(), crew::stdio::ipc()}}, l);
  std::vector<std::string> events;
  child.on_message([&](crew::message m) { events.push_back(m.to_string()); });
  child.channel().on_error([&](std::error_code ec) { events.push_back(crew::error_name(ec)); });
  child.on_disconnect([&] { events.push_back("disconnect"); });
  crew::test::run_within(l);
  EXPECT_EQ(events, (std::vector<std::string>{R"({"whole":1})", "ERR_INVALID_MESSAGE", "disconnect"}));
  EXPECT_EQ(child.status(), (crew::exit_status{-1, SIGKILL}));
}

TEST(ipc, fork_talks_to_a_crew_child_over_the_channel) {
  crew::loop l;
  crew::child_process child = crew::fork(CREW_FIXTURE, {"echo"}, {}, l);
  std::vector<std::string> got;
  child.on_message([&](crew::message m) {
    got.push_back(m.to_string());
    if (got.size() == 2) child.disconnect();
  });
  child.send(json{{"hello", "world"}});
  child.send(json::array({1, 2, 3}));
  std::optional<crew::exit_status> status;
  child.on_close([&](crew::exit_status s) { status = s; });
  crew::test::run_within(l);
  EXPECT_EQ(got, (std::vector<std::string>{R"({"hello":"world"})", "[1,2,3]"}));
  EXPECT_EQ(status, (crew::exit_status{0, 0}));
}

TEST(ipc, the_channel_variables_are_gone_from_a_crew_childs_environment) {
  crew::loop l;
  crew::child_process child = crew::fork(CREW_FIXTURE, {"env"}, {.silent = true}, l);
  std::string out;
  child.out().on_data([&](std::string_view s) { out += s; });
  child.on_message([](crew::message) {});
  crew::test::run_within(l);
  EXPECT_EQ(out.find("NODE_CHANNEL"), std::string::npos) << out;
  EXPECT_NE(out.find("PATH="), std::string::npos);
}

TEST(ipc, a_child_without_a_channel_has_no_parent_channel) { EXPECT_EQ(crew::parent_channel(), nullptr); }

// A NODE_CHANNEL_FD that names no Unix stream socket (no such descriptor, a
// pipe, not a number) gives a process without a channel, not a crash.
TEST(ipc, a_bad_node_channel_fd_gives_no_channel) {
  for (const char* fd : {"99999", "0", "2", "-1", "seven"}) {
    crew::spawn_sync_result r = crew::spawn_sync(CREW_FIXTURE, {"channel"}, {.extra_env = {{"NODE_CHANNEL_FD", fd}}});
    EXPECT_EQ(r.status, (crew::exit_status{0, 0})) << fd << ": " << r.err;
    EXPECT_EQ(r.out, "none\n") << fd;
  }
}

// ---- request(): a request and its reply, matched by "id"

crew::task<crew::result<crew::message>> request_on(crew::ipc_channel& ch, json question,
                                                   crew::request_options options) {
  co_return co_await ch.request(question, options);
}

// Sends one request from p.a, then closes both channels, so that the loop ends.
crew::task<crew::result<crew::message>> ask(channel_pair& p, json question, crew::request_options options = {},
                                            std::stop_token stop = {}) {
  crew::result<crew::message> reply = co_await p.a.request(question, options, std::move(stop));
  p.a.close();
  p.b.close();
  co_return reply;
}

crew::task<> two_at_once(channel_pair& p, std::vector<std::string>& replies) {
  json first = {{"a", 1}, {"b", 2}};
  json second = {{"a", 10}, {"b", 20}};
  auto [r1, r2] = co_await crew::when_all(p.a.request(first), p.a.request(second));
  replies.push_back(r1 ? r1->to_string() : crew::error_name(r1.error()));
  replies.push_back(r2 ? r2->to_string() : crew::error_name(r2.error()));
  p.a.close();
  p.b.close();
}

TEST(ipc_request, each_request_completes_with_the_reply_that_carries_its_id_whatever_their_order) {
  crew::loop l;
  channel_pair p(l);
  // The peer holds the first request back and answers the second first.
  std::vector<crew::message> held;
  p.b.on_message([&](crew::message m) {
    held.push_back(std::move(m));
    if (held.size() < 2) return;
    for (int i : {1, 0}) {
      json& v = held[i].value();
      p.b.send(json{{"id", v["id"]}, {"result", v["a"].get<int>() + v["b"].get<int>()}});
    }
  });
  std::vector<std::string> replies;
  crew::task<> t = two_at_once(p, replies);
  crew::test::run_within(l);
  t.await_resume();
  EXPECT_EQ(replies, (std::vector<std::string>{R"({"id":1,"result":3})", R"({"id":2,"result":30})"}));
}

TEST(ipc_request, a_reply_goes_to_its_request_and_other_messages_to_on_message) {
  crew::loop l;
  channel_pair p(l);
  p.b.on_message([&](crew::message m) {
    p.b.send(json{{"id", 99}, {"note", "not a reply to anything"}});
    p.b.send(json{{"id", m.value()["id"]}, {"result", "ok"}});
  });
  std::vector<std::string> others;
  p.a.on_message([&](crew::message m) { others.push_back(m.to_string()); });
  json question = {{"ask", true}};
  crew::task<crew::result<crew::message>> t = ask(p, question);
  crew::test::run_within(l);
  crew::result<crew::message> reply = t.await_resume();
  ASSERT_TRUE(reply) << crew::error_name(reply.error());
  EXPECT_EQ(reply->to_string(), R"({"id":1,"result":"ok"})");
  EXPECT_EQ(others, (std::vector<std::string>{R"({"id":99,"note":"not a reply to anything"})"}));
}

// p.b answers each request `delay` late with {id, result}; p.a keeps what
// on_message() gets (a reply that came too late), and closes then.
struct late_replies {
  crew::timer answer;
  std::vector<std::string> others;
  late_replies(crew::loop& l, channel_pair& p, std::chrono::milliseconds delay, std::string result) : answer(l) {
    p.b.on_message([this, &p, delay, result](crew::message m) {
      answer.start(delay, {}, [&p, result, id = m.value()["id"]] { p.b.send(json{{"id", id}, {"result", result}}); });
    });
    p.a.on_message([this, &p](crew::message m) {
      others.push_back(m.to_string());
      p.a.close();
    });
  }
};

TEST(ipc_request, a_request_times_out_with_etimedout_and_its_late_reply_reaches_on_message) {
  crew::loop l;
  channel_pair p(l);
  late_replies peer(l, p, 50ms, "late");
  json question = {{"ask", true}};
  crew::task<crew::result<crew::message>> t = request_on(p.a, question, {.timeout = 5ms});
  crew::test::run_within(l);
  crew::result<crew::message> reply = t.await_resume();
  EXPECT_EQ(crew::error_name(reply.error()), "ETIMEDOUT");
  EXPECT_EQ(peer.others, (std::vector<std::string>{R"({"id":1,"result":"late"})"}));
}

TEST(ipc_request, a_stop_request_ends_a_request_with_ecanceled) {
  crew::loop l;
  channel_pair p(l);
  p.b.on_message([](crew::message) {});  // never answers
  std::stop_source stop;
  json question = {{"ask", true}};
  crew::task<crew::result<crew::message>> t = ask(p, question, {}, stop.get_token());
  crew::set_timeout(5ms, [&] { stop.request_stop(); }, l);
  crew::test::run_within(l);
  EXPECT_EQ(crew::error_name(t.await_resume().error()), "ECANCELED");
}

TEST(ipc_request, a_peer_that_disconnects_ends_its_pending_requests_with_err_ipc_channel_closed) {
  crew::loop l;
  channel_pair p(l);
  p.b.on_message([&](crew::message) { p.b.disconnect(); });
  json question = {{"ask", true}};
  crew::task<crew::result<crew::message>> t = ask(p, question);
  crew::test::run_within(l);
  EXPECT_EQ(crew::error_name(t.await_resume().error()), "ERR_IPC_CHANNEL_CLOSED");
}

TEST(ipc_request, closing_the_channel_ends_its_requests_after_close_returns) {
  crew::loop l;
  channel_pair p(l);
  json question = {{"ask", true}};
  crew::task<crew::result<crew::message>> t = ask(p, question);
  p.a.close();
  EXPECT_FALSE(t.done()) << "not inside close()";
  crew::test::run_within(l);
  ASSERT_TRUE(t.done());
  EXPECT_EQ(crew::error_name(t.await_resume().error()), "ERR_IPC_CHANNEL_CLOSED");
}

crew::task<> await_both(crew::awaitable<crew::result<crew::message>>& first,
                        crew::awaitable<crew::result<crew::message>>& second, std::vector<std::string>& seen) {
  crew::result<crew::message> a = co_await first;
  seen.push_back(crew::error_name(a.error()));
  crew::result<crew::message> b = co_await second;
  seen.push_back(crew::error_name(b.error()));
}

TEST(ipc_request, a_request_made_before_its_channel_closed_or_on_no_channel_gets_err_ipc_channel_closed) {
  crew::loop l;
  channel_pair p(l);
  auto pending = p.a.request(json{{"ask", true}});
  p.a.close();
  crew::ipc_channel never_opened;
  auto on_nothing = never_opened.request(json{{"ask", true}});
  std::vector<std::string> seen;
  crew::task<> t = await_both(pending, on_nothing, seen);
  crew::test::run_within(l);
  t.await_resume();
  EXPECT_EQ(seen, (std::vector<std::string>{"ERR_IPC_CHANNEL_CLOSED", "ERR_IPC_CHANNEL_CLOSED"}));
}

TEST(ipc_request, a_request_that_is_not_an_object_gets_einval) {
  crew::loop l;
  channel_pair p(l);
  crew::task<crew::result<crew::message>> t = ask(p, json::array({1, 2}));
  crew::test::run_within(l);
  EXPECT_EQ(crew::error_name(t.await_resume().error()), "EINVAL");
}

TEST(ipc_request, a_pending_request_keeps_the_loop_alive_even_on_an_unreferenced_channel) {
  crew::loop l;
  channel_pair p(l);
  p.a.unref();
  p.b.unref();
  crew::timer answer(l);
  p.b.on_message([&](crew::message m) {
    answer.start(20ms, {}, [&, id = m.value()["id"]] { p.b.send(json{{"id", id}}); });
  });
  p.b.unref();  // on_message referenced it
  json question = {{"ask", true}};
  crew::task<crew::result<crew::message>> t = ask(p, question);
  crew::test::run_within(l);
  ASSERT_TRUE(t.done());
  EXPECT_TRUE(t.await_resume());
}

crew::task<std::size_t> request_or_sleep(crew::ipc_channel& ch, crew::loop& l) {
  json question = {{"ask", true}};
  auto first = co_await crew::when_any(ch.request(question), crew::sleep(5ms, l));
  co_return first.index();
}

TEST(ipc_request, a_request_dropped_by_when_any_is_forgotten_and_its_reply_reaches_on_message) {
  crew::loop l;
  channel_pair p(l);
  late_replies peer(l, p, 30ms, "after the race");
  crew::task<std::size_t> t = request_or_sleep(p.a, l);
  crew::test::run_within(l);
  EXPECT_EQ(t.await_resume(), 1u) << "the sleep won";
  EXPECT_EQ(peer.others, (std::vector<std::string>{R"({"id":1,"result":"after the race"})"}));
}

crew::task<crew::result<crew::message>> ask_then_disconnect(crew::child_process& child, json question) {
  crew::result<crew::message> reply = co_await child.request(question);
  child.disconnect();  // the echo child exits when its channel closes
  co_return reply;
}

TEST(ipc_request, a_crew_child_that_echoes_answers_a_request) {
  crew::loop l;
  crew::child_process child = crew::fork(CREW_FIXTURE, {"echo"}, {}, l);
  json question = {{"op", "echo"}, {"id", "replaced"}};
  crew::task<crew::result<crew::message>> t = ask_then_disconnect(child, question);
  crew::test::run_within(l, 20s);
  ASSERT_TRUE(t.done());
  crew::result<crew::message> reply = t.await_resume();
  ASSERT_TRUE(reply) << crew::error_name(reply.error());
  EXPECT_EQ(reply->to_string(), R"({"op":"echo","id":1})");
}

}  // namespace
