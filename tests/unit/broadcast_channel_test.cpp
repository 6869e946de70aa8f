#include "crew/broadcast_channel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace {

using crew::broadcast_channel;
using crew::message;

TEST(broadcast_channel, every_other_channel_of_the_name_gets_a_copy_but_not_the_sender) {
  crew::loop loop;
  broadcast_channel sender("news"), a("news"), b("news"), elsewhere("sports");
  std::vector<std::string> got;
  bool sender_got = false, elsewhere_got = false;
  sender.on_message([&](message) { sender_got = true; });
  elsewhere.on_message([&](message) { elsewhere_got = true; });
  auto finish = [&] {
    if (got.size() == 2)
      for (auto* c : {&sender, &a, &b, &elsewhere}) c->close();
  };
  a.on_message([&](message m) {
    got.push_back("a:" + m.get<std::string>());
    finish();
  });
  b.on_message([&](message m) {
    got.push_back("b:" + m.get<std::string>());
    finish();
  });
  EXPECT_FALSE(sender.post_message(message("hello")));
  crew::test::run_within(loop);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"a:hello", "b:hello"}));
  EXPECT_FALSE(sender_got);
  EXPECT_FALSE(elsewhere_got);
}

// A small value travels copied into each queue, a large one or one with bytes
// as a clone: each receiver gets all of it, and the sender keeps its own.
TEST(broadcast_channel, each_receiver_gets_a_whole_copy_small_large_or_with_bytes) {
  crew::loop loop;
  broadcast_channel sender("copies"), a("copies"), b("copies");
  message with_bytes = crew::json{{"i", 1}};
  with_bytes.attach(crew::buffer(std::string_view("bytes")));
  std::vector<std::string> got;
  auto note = [&](message m) {
    std::string seen = m.to_string();
    if (!m.buffers().empty()) seen.append("+").append(m.buffers()[0].view());
    got.push_back(std::move(seen));
    if (got.size() == 6)
      for (auto* c : {&sender, &a, &b}) c->close();
  };
  a.on_message(note);
  b.on_message(note);
  std::string large(100, 'x');
  EXPECT_FALSE(sender.post_message(crew::json{{"i", 1}}));
  EXPECT_FALSE(sender.post_message(crew::json{{"text", large}}));
  EXPECT_FALSE(sender.post_message(with_bytes));
  crew::test::run_within(loop);
  std::sort(got.begin(), got.end());
  std::string big = R"({"text":")" + large + R"("})";
  EXPECT_EQ(got, (std::vector<std::string>{R"({"i":1})", R"({"i":1})", R"({"i":1}+bytes)", R"({"i":1}+bytes)", big, big}));
  EXPECT_EQ(with_bytes.buffers()[0].view(), "bytes");  // the sender's own is untouched
}

TEST(broadcast_channel, reaches_channels_on_other_threads_in_order) {
  crew::loop loop;
  broadcast_channel results("results");
  std::vector<int> got;
  results.on_message([&](message m) {
    got.push_back(m.get<int>());
    if (got.size() == 100) results.close();
  });
  std::thread other([] {
    broadcast_channel from_thread("results");
    for (int i = 0; i < 100; ++i) EXPECT_FALSE(from_thread.post_message(message(i)));
  });
  crew::test::run_within(loop);
  other.join();
  ASSERT_EQ(got.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], i);
}

TEST(broadcast_channel, a_closed_channel_cannot_post_and_ports_cannot_be_broadcast) {
  broadcast_channel c("closing");
  message with_port;
  crew::message_channel ports;
  with_port.ports().push_back(std::move(ports.port1));
  EXPECT_EQ(c.post_message(with_port), crew::errc::data_clone_error);
  c.close();
  EXPECT_EQ(c.post_message(message(1)), crew::errc::closed_message_port);
}

}  // namespace
