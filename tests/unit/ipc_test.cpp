// IPC channels between crew processes, and bad input on them.
#include "crew/ipc.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crew/child_process.hpp"
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
  crew::timer later = crew::set_timeout(10ms, [&] {
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
  void write_raw(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::write(fd, bytes.data(), bytes.size());
      ASSERT_GT(n, 0);
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
};

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

}  // namespace
