// A crew parent talks to a real Node child over Node's IPC protocol.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "crew/child_process.hpp"
#include "crew/timer.hpp"
#include "../unit/test_support.hpp"

namespace {

using json = crew::message::value_type;

crew::child_process fork_node(crew::loop& l) {
  return crew::fork(CREW_NODE_CHILD, {}, {.exec_path = "node"}, l);
}

TEST(node_interop, every_json_shape_comes_back_from_node_unchanged) {
  std::vector<std::string> shapes = {
      "null", "true", "0", "-1.5", "1e+300", "9007199254740991", R"("")",
      R"("quote \" backslash \\ controls \b\f\n\r\t\u0001")", "\"separators \u2028 \u2029\"",
      "\"beyond the BMP \U0001F600 \U0010FFFF\"", "[]", "{}", R"({"b":1,"a":[1,"two",{"z":null}]})",
      R"({"cmd":"NOT_NODE_internal"})"};
  std::string deep;
  for (int i = 0; i < 400; ++i) deep += "[";
  deep += "1";
  for (int i = 0; i < 400; ++i) deep += "]";
  shapes.push_back(deep);

  crew::loop l;
  crew::child_process node = fork_node(l);
  std::vector<std::string> got;
  node.on_message([&](crew::message m) {
    got.push_back(m.to_string());
    if (got.size() == shapes.size()) node.disconnect();
  });
  for (const auto& s : shapes) node.send(crew::message::parse(s).value());
  crew::test::run_within(l, std::chrono::seconds(30));
  ASSERT_EQ(got.size(), shapes.size());
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    // Node prints numbers its own way (1e+300); compare values, then text for the rest.
    EXPECT_EQ(crew::message::parse(got[i])->value(), crew::message::parse(shapes[i])->value()) << shapes[i];
  }
}

TEST(node_interop, a_16_mib_message_and_a_burst_of_100000_pass_in_order) {
  crew::loop l;
  crew::child_process node = fork_node(l);
  std::size_t big_size = 0;
  int next = 0;
  constexpr int burst = 100000;
  node.on_message([&](crew::message m) {
    if (m.value().is_object() && m.value().contains("blob")) {
      big_size = m.value()["blob"].get_ref<const std::string&>().size();
      return;
    }
    EXPECT_EQ(m.value()["i"].get<int>(), next) << "order";
    if (++next == burst) node.disconnect();
  });
  node.send(json{{"blob", std::string(16u << 20, 'x')}});
  for (int i = 0; i < burst; ++i) node.send(json{{"i", i}});
  crew::test::run_within(l, std::chrono::seconds(60));
  EXPECT_EQ(big_size, 16u << 20);
  EXPECT_EQ(next, burst);
}

TEST(node_interop, a_socket_sent_to_node_arrives_as_a_handle) {
  crew::loop l;
  crew::child_process node = fork_node(l);
  int ends[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
  crew::message m = json{{"here", "a socket"}};
  m.fds().push_back(ends[1]);
  std::vector<std::string> got;
  std::string text;
  node.on_message([&](crew::message r) {
    got.push_back(r.to_string());
    if (r.value().is_object() && r.value().contains("wrote")) {
      // Node has written and ended its side: read it, then close ours so Node's
      // socket (and Node) can finish.
      char buffer[64];
      ssize_t n;
      while ((n = read(ends[0], buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<std::size_t>(n));
      close(ends[0]);
    }
    if (got.size() == 2) node.disconnect();
  });
  node.send(std::move(m), [&](std::error_code) { close(ends[1]); });
  node.send(std::string("after the handle"));  // held until Node ACKs the handle
  crew::test::run_within(l, std::chrono::seconds(30));
  EXPECT_EQ(text, "hello from node");
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{R"("after the handle")", R"({"wrote":true,"msg":{"here":"a socket"}})"}));
}

TEST(node_interop, a_server_node_sends_arrives_as_a_listening_descriptor_and_is_acknowledged) {
  crew::loop l;
  crew::child_process node = fork_node(l);
  int received_fd = -1, port = 0;
  bool after = false;
  node.on_message([&](crew::message m) {
    if (!m.fds().empty()) {
      received_fd = m.fds()[0];
      port = m.value()["port"].get<int>();
    } else if (m.value() == "after the handle") {
      after = true;  // Node sends it only once crew acknowledged the handle
      node.disconnect();
    }
  });
  node.send(json{{"serve", true}});
  crew::test::run_within(l, std::chrono::seconds(30));
  ASSERT_GE(received_fd, 0);
  EXPECT_TRUE(after);
  sockaddr_in address{};
  socklen_t length = sizeof address;
  ASSERT_EQ(getsockname(received_fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  EXPECT_EQ(ntohs(address.sin_port), port) << "the same listening socket";
  int listening = 0;
  length = sizeof listening;
  getsockopt(received_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length);
  EXPECT_EQ(listening, 1);
  close(received_fd);
}

}  // namespace
