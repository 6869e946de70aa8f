#include "crew/message_port.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

#include "crew/timer.hpp"
#include "test_support.hpp"

namespace {

using crew::message;
using crew::message_channel;
using crew::message_port;

static_assert(std::is_nothrow_move_constructible_v<message_port>);
static_assert(std::is_nothrow_move_assignable_v<message_port>);
static_assert(!std::is_copy_constructible_v<message_port>);

TEST(message_port, delivers_messages_in_order_on_the_loop_never_inside_the_post) {
  crew::loop loop;
  message_channel channel;
  std::vector<int> received;
  channel.port2.on_message([&](message m) {
    received.push_back(m.get<int>());
    if (received.size() == 3) channel.port2.close();
  });
  for (int i = 1; i <= 3; ++i) EXPECT_FALSE(channel.port1.post_message(i));
  EXPECT_TRUE(received.empty());
  crew::test::run_within(loop);
  EXPECT_EQ(received, (std::vector<int>{1, 2, 3}));
}

TEST(message_port, messages_posted_before_a_listener_wait_for_it) {
  crew::loop loop;
  message_channel channel;
  EXPECT_FALSE(channel.port1.post_message("early"));
  std::string got;
  channel.port2.on_message([&](message m) {
    got = m.get<std::string>();
    channel.port2.close();
  });
  crew::test::run_within(loop);
  EXPECT_EQ(got, "early");
}

TEST(message_port, receive_message_on_port_takes_the_oldest_without_a_loop) {
  message_channel channel;
  EXPECT_FALSE(crew::receive_message_on_port(channel.port2));
  EXPECT_FALSE(channel.port1.post_message(1));
  EXPECT_FALSE(channel.port1.post_message(2));
  auto first = crew::receive_message_on_port(channel.port2);
  auto second = crew::receive_message_on_port(channel.port2);
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->get<int>(), 1);
  EXPECT_EQ(second->get<int>(), 2);
  EXPECT_FALSE(crew::receive_message_on_port(channel.port2));
}

TEST(message_port, closing_one_end_closes_the_other_after_its_messages) {
  crew::loop loop;
  message_channel channel;
  std::vector<std::string> events;
  channel.port2.on_message([&](message m) { events.push_back(m.get<std::string>()); });
  channel.port2.on_close([&] { events.push_back("close"); });
  EXPECT_FALSE(channel.port1.post_message("last words"));
  channel.port1.close();
  crew::test::run_within(loop);  // returns: the closed port no longer keeps the loop alive
  EXPECT_EQ(events, (std::vector<std::string>{"last words", "close"}));
}

TEST(message_port, posting_to_or_from_a_closed_port_is_an_error_not_a_hang) {
  message_channel channel;
  channel.port2.close();
  EXPECT_EQ(channel.port1.post_message(1), crew::errc::closed_message_port);
  channel.port1.close();
  EXPECT_EQ(channel.port1.post_message(1), crew::errc::closed_message_port);
  message_port never_opened;
  EXPECT_EQ(never_opened.post_message(1), crew::errc::closed_message_port);
  EXPECT_EQ(crew::error_name(crew::errc::closed_message_port), "ERR_CLOSED_MESSAGE_PORT");
}

TEST(message_port, destroying_a_port_closes_its_peer) {
  crew::loop loop;
  message_channel channel;
  bool closed = false;
  channel.port2.on_message([](message) {});  // a listening port keeps the loop alive until the end
  channel.port2.on_close([&] { closed = true; });
  { message_port gone = std::move(channel.port1); }
  crew::test::run_within(loop);
  EXPECT_TRUE(closed);
}

TEST(message_port, a_port_travels_inside_a_message_to_another_thread_and_keeps_working) {
  crew::loop loop;
  message_channel to_thread;
  message_channel carried;
  std::thread other([port = std::move(to_thread.port2)]() mutable {
    crew::loop thread_loop;
    port.on_message([&](message m) {
      ASSERT_EQ(m.ports().size(), 1u);
      message_port received = std::move(m.ports()[0]);
      EXPECT_FALSE(received.post_message(m.get<std::string>() + " back"));
      port.close();
    });
    thread_loop.run();
  });
  std::string answer;
  carried.port1.on_message([&](message m) {
    answer = m.get<std::string>();
    carried.port1.close();
  });
  message m("there and");
  m.ports().push_back(std::move(carried.port2));
  EXPECT_FALSE(to_thread.port1.post_message(std::move(m)));
  crew::test::run_within(loop);
  other.join();
  EXPECT_EQ(answer, "there and back");
}

TEST(message_port, a_port_transferred_twice_still_reaches_its_peer) {
  crew::loop loop;
  message_channel first_hop, second_hop, carried;
  std::string answer;
  carried.port1.on_message([&](message m) {
    answer = m.get<std::string>();
    carried.port1.close();
  });
  std::thread relay([in = std::move(first_hop.port2), out = std::move(second_hop.port1)]() mutable {
    crew::loop l;
    in.on_message([&](message m) {
      EXPECT_FALSE(out.post_message(std::move(m)));  // passes the port on, untouched
      in.close();
    });
    l.run();
  });
  std::thread last([in = std::move(second_hop.port2)]() mutable {
    crew::loop l;
    in.on_message([&](message m) {
      message_port port = std::move(m.ports().at(0));
      EXPECT_FALSE(port.post_message("after two hops"));
      in.close();
    });
    l.run();
  });
  message m("carrying");
  m.ports().push_back(std::move(carried.port2));
  EXPECT_FALSE(first_hop.port1.post_message(std::move(m)));
  crew::test::run_within(loop);
  relay.join();
  last.join();
  EXPECT_EQ(answer, "after two hops");
}

TEST(message_port, a_port_cannot_carry_itself_or_its_peer) {
  message_channel channel;
  message m;
  m.ports().push_back(std::move(channel.port2));
  EXPECT_EQ(channel.port1.post_message(std::move(m)), crew::errc::data_clone_error);
  message closed_port;
  closed_port.ports().emplace_back();
  message_channel other;
  EXPECT_EQ(other.port1.post_message(std::move(closed_port)), crew::errc::data_clone_error);
}

TEST(message_port, keeps_order_under_a_burst_from_several_threads) {
  crew::loop loop;
  constexpr int senders = 4, per_sender = 20000;
  std::vector<message_channel> channels(senders);
  std::vector<int> next(senders, 0);
  int received = 0, out_of_order = 0;
  for (int s = 0; s < senders; ++s) {
    channels[s].port2.on_message([&, s](message m) {
      if (m.get<int>() != next[s]++) ++out_of_order;
      if (++received == senders * per_sender)
        for (auto& c : channels) c.port2.close();
    });
  }
  std::vector<std::thread> threads;
  for (int s = 0; s < senders; ++s)
    threads.emplace_back([&, s] {
      for (int i = 0; i < per_sender; ++i) EXPECT_FALSE(channels[s].port1.post_message(i));
    });
  crew::test::run_within(loop, std::chrono::seconds(30));
  for (auto& t : threads) t.join();
  EXPECT_EQ(received, senders * per_sender);
  EXPECT_EQ(out_of_order, 0);
}

TEST(message_port, a_typed_listener_reports_a_mismatch_as_messageerror_and_goes_on) {
  crew::loop loop;
  message_channel channel;
  std::vector<int> numbers;
  std::vector<std::error_code> errors;
  channel.port2.on_messageerror([&](std::error_code ec) { errors.push_back(ec); });
  channel.port2.on_message<int>([&](int n) {
    numbers.push_back(n);
    if (n == 2) channel.port2.close();
  });
  EXPECT_FALSE(channel.port1.post_message(1));
  EXPECT_FALSE(channel.port1.post_message("not a number"));
  EXPECT_FALSE(channel.port1.post_message(2));
  crew::test::run_within(loop);
  EXPECT_EQ(numbers, (std::vector<int>{1, 2}));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0], crew::errc::invalid_message);
}

TEST(message_port, an_unreferenced_port_does_not_keep_the_loop_alive) {
  crew::loop loop;
  message_channel channel;
  int received = 0;
  channel.port2.on_message([&](message) {
    ++received;
    channel.port2.close();
  });
  EXPECT_TRUE(loop.alive()) << "a port with a message callback keeps its loop alive";
  channel.port2.unref();
  EXPECT_FALSE(loop.alive());
  crew::test::run_within(loop);  // returns at once: nothing keeps the loop
  EXPECT_EQ(received, 0);
  channel.port2.ref();
  EXPECT_TRUE(loop.alive());
  ASSERT_FALSE(channel.port1.post_message(1));
  crew::test::run_within(loop);  // the referenced port keeps it until the message came
  EXPECT_EQ(received, 1);
}

TEST(message_port, clearing_the_callback_keeps_later_messages_queued) {
  crew::loop loop;
  message_channel channel;
  std::vector<int> seen;
  channel.port2.on_message([&](message m) {
    seen.push_back(m.get<int>());
    channel.port2.on_message(nullptr);  // stop after the first
  });
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(channel.port1.post_message(i));
  crew::test::run_within(loop);
  EXPECT_EQ(seen, (std::vector<int>{0}));
  auto rest = crew::receive_message_on_port(channel.port2);
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->get<int>(), 1);
}

// A callback that stops delivery and then reads the queue itself gets the
// messages in the order sent, each once, small or large (found by a hostile
// trial: one was lost and a newer one came twice).
TEST(message_port, a_callback_that_stops_delivery_and_reads_the_queue_gets_each_message_once_in_order) {
  for (std::string padding : {std::string(), std::string(40, '.')}) {
    SCOPED_TRACE(padding.empty() ? "small" : "large");
    crew::loop loop;
    message_channel channel;
    auto post = [&](int i) { EXPECT_FALSE(channel.port1.post_message(crew::json{{"i", i}, {"pad", padding}})); };
    std::vector<int> seen;
    for (int i = 1; i <= 3; ++i) post(i);
    channel.port2.on_message([&](message m) {
      seen.push_back(m.value()["i"].get<int>());
      channel.port2.on_message(nullptr);
      for (int i = 4; i <= 5; ++i) post(i);
      auto next = crew::receive_message_on_port(channel.port2);  // the next in line: 2, not 4
      ASSERT_TRUE(next);
      seen.push_back(next->value()["i"].get<int>());
    });
    loop.run_once();
    while (auto m = crew::receive_message_on_port(channel.port2)) seen.push_back(m->value()["i"].get<int>());
    EXPECT_EQ(seen, (std::vector<int>{1, 2, 3, 4, 5}));
  }
}

TEST(message_port, spinning_off_still_delivers) {
  crew::loop loop;
  message_channel channel;
  channel.port2.set_spin(std::chrono::microseconds(0));
  int got = 0;
  std::thread sender([&] {
    for (int i = 0; i < 1000; ++i) EXPECT_FALSE(channel.port1.post_message(i));
  });
  channel.port2.on_message([&](message) {
    if (++got == 1000) channel.port2.close();
  });
  crew::test::run_within(loop);
  sender.join();
  EXPECT_EQ(got, 1000);
}


// Small values travel copied into the queue, larger ones moved: either way the
// receiver gets the same value, with the same number types and key order.
TEST(message_port, every_value_arrives_exactly_as_sent_small_or_large) {
  using crew::json;
  std::vector<json> sent = {
      json(),
      json(true),
      json(false),
      json(-5),
      json(std::uint64_t{18446744073709551615U}),
      json(0.1),
      json(-0.0),
      json(""),
      json("twenty-one characters"),                             // fills a small slot exactly
      json("twenty-two characters!"),                            // one byte too many: moved
      json(std::string(300, 'x')),                               // longer than a length byte
      json::object(),
      json::array(),
      json{{"i", 7}},
      json{{"z", 1}, {"a", 2}},                                  // insertion order, not sorted
      json{{"id", 1}, {"ok", true}},
      json{{"a", json{{"b", json{{"c", json::array({1, 2})}}}}}},  // nested
      json::array({1, "two", 3.0, nullptr, json::array()}),
      json::binary({1, 2, 3}),                                   // binary: always moved
      json(std::vector<int>(300, 1)),                            // more elements than a count byte
  };
  std::vector<json> received;
  crew::loop loop;
  message_channel channel;
  channel.port2.on_message([&](message m) {
    received.push_back(std::move(m).value());
    if (received.size() == sent.size()) channel.port2.close();
  });
  std::thread sender([&] {
    for (const json& v : sent) EXPECT_FALSE(channel.port1.post_message(json(v)));
  });
  crew::test::run_within(loop);
  sender.join();
  ASSERT_EQ(received.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(received[i], sent[i]) << sent[i].dump();
    EXPECT_EQ(received[i].type(), sent[i].type()) << sent[i].dump();
    EXPECT_EQ(received[i].dump(), sent[i].dump());  // key order included
  }
  EXPECT_TRUE(std::signbit(received[6].get<double>()));
}

TEST(message_port, a_small_value_with_an_attachment_keeps_its_attachment) {
  crew::loop loop;
  message_channel channel;
  message m = crew::json{{"i", 1}};
  m.attach(crew::buffer(std::string_view("bytes")));
  message got;
  channel.port2.on_message([&](message in) {
    got = std::move(in);
    channel.port2.close();
  });
  EXPECT_FALSE(channel.port1.post_message(std::move(m)));
  crew::test::run_within(loop);
  EXPECT_EQ(got.value(), (crew::json{{"i", 1}}));
  ASSERT_EQ(got.buffers().size(), 1U);
  EXPECT_EQ(got.buffers()[0].view(), "bytes");
}

}  // namespace
