// readline over pipes, sockets and a child's stdout, with Node's readline as
// the judge of where lines end.
#include "crew/readline.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "crew/child_process.hpp"
#include "crew/message.hpp"
#include "crew/tcp.hpp"
#include "crew/timer.hpp"
#include "node_support.hpp"
#include "test_support.hpp"

namespace {

using namespace std::chrono_literals;
using lines = std::vector<std::string>;

// Writes each chunk into a pipe on its own loop turn, `gap` apart, then closes
// the pipe: the reading stream gets the chunks exactly as given.
class chunked_pipe {
 public:
  chunked_pipe(crew::loop& l, std::vector<std::string> chunks, std::chrono::milliseconds gap = 1ms)
      : chunks_(std::move(chunks)), pacer_(l) {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    reader = crew::stream(l, fds[0]);
    writer_ = fds[1];
    pacer_.start(gap, gap, [this] {
      if (next_ < chunks_.size()) {
        const std::string& chunk = chunks_[next_++];
        EXPECT_EQ(::write(writer_, chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
        return;
      }
      ::close(std::exchange(writer_, -1));
      pacer_.stop();
    });
  }
  ~chunked_pipe() {
    if (writer_ >= 0) ::close(writer_);
  }

  crew::stream reader;

 private:
  std::vector<std::string> chunks_;
  std::size_t next_ = 0;
  int writer_ = -1;
  crew::timer pacer_;
};

lines read_lines(std::vector<std::string> chunks, crew::readline_options options = {}) {
  crew::loop l;
  chunked_pipe pipe(l, std::move(chunks));
  crew::readline rl(pipe.reader, options);
  lines got;
  bool closed = false;
  rl.on_line([&](std::string_view line) {
    EXPECT_FALSE(closed);
    got.emplace_back(line);
  });
  rl.on_close([&] { closed = true; });
  crew::test::run_within(l);
  EXPECT_TRUE(closed) << "on_close after the stream ended";
  EXPECT_FALSE(rl.is_open());
  return got;
}

std::string hex(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) out += "0123456789abcdef"[c >> 4], out += "0123456789abcdef"[c & 15];
  return out;
}

TEST(readline, lines_come_out_as_node_readline_makes_them_from_the_same_chunks) {
  std::vector<std::vector<std::string>> cases = {
      {"one\ntwo\nthree\n"},
      {"no newline at the end"},
      {"a\r\nb\rc\n\nd\r\r\ne"},
      {"split li", "ne and ", "more\nnext\n"},
      {"crlf split\r", "\nafter\n"},
      {"cr at the end\r"},
      {"\r", "\n", "\r", "\r", "\n"},
      {"\n\n\n"},
      {"", "x"},
      {"tail\n", "\r\n", "last"},
      {"caf\xc3", "\xa9 au lait\n\xe2\x82", "\xac\n"},  // UTF-8 characters split across chunks
      {"\r\n\r\n", "\n\r"},
      {"mixed\n\r\n\r", "x\r", "\ny\n"},
  };
  std::string input = "[";
  for (const auto& chunks : cases) {
    input += input.size() > 1 ? ",[" : "[";
    for (std::size_t i = 0; i < chunks.size(); ++i) input += (i ? ",\"" : "\"") + hex(chunks[i]) + "\"";
    input += "]";
  }
  input += "]";
  // Node's readline over an input that emits exactly these chunks.
  CREW_NODE_OR_SKIP(expected, R"(
    const readline = require('readline'), { EventEmitter } = require('events');
    const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
    const out = cases.map((chunks) => {
      const input = new EventEmitter();
      input.pause = input.resume = () => input;
      const rl = readline.createInterface({ input });
      const lines = [];
      rl.on('line', (line) => lines.push(line));
      for (const chunk of chunks) input.emit('data', Buffer.from(chunk, 'hex'));
      input.emit('end');
      return lines;
    });
    process.stdout.write(JSON.stringify(out));)",
                    input);
  crew::result<crew::message> parsed = crew::message::parse(*expected);
  ASSERT_TRUE(parsed) << *expected;
  ASSERT_EQ(parsed->value().size(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    lines node = parsed->value()[i].get<lines>();
    EXPECT_EQ(read_lines(cases[i]), node) << "case " << i << ": " << parsed->value()[i].dump();
  }
}

TEST(readline, a_split_crlf_is_two_line_breaks_when_the_newline_comes_after_crlf_delay) {
  crew::loop l;
  chunked_pipe pipe(l, {"a\r", "\nb\n"}, 250ms);  // the "\n" comes at least 250 ms after the "\r"
  crew::readline rl(pipe.reader, {.crlf_delay = 100ms});
  lines got;
  rl.on_line([&](std::string_view line) { got.emplace_back(line); });
  crew::test::run_within(l);
  EXPECT_EQ(got, (lines{"a", "", "b"}));
}

TEST(readline, with_an_endless_crlf_delay_a_split_crlf_is_always_one_line_break) {
  crew::loop l;
  chunked_pipe pipe(l, {"a\r", "\nb\n"}, 250ms);
  crew::readline rl(pipe.reader, {.crlf_delay = std::chrono::milliseconds::max()});
  lines got;
  rl.on_line([&](std::string_view line) { got.emplace_back(line); });
  crew::test::run_within(l);
  EXPECT_EQ(got, (lines{"a", "b"}));
}

TEST(readline, a_line_past_max_line_length_is_reported_and_dropped_and_the_others_arrive) {
  std::string long_line(100, 'x');
  crew::loop l;
  chunked_pipe pipe(l, {"short\n" + long_line.substr(0, 30), long_line.substr(30), "\nafter\nexactly10c\n", long_line});
  crew::readline rl(pipe.reader, {.max_line_length = 10});
  lines got;
  std::vector<std::string> errors;
  rl.on_line([&](std::string_view line) { got.emplace_back(line); });
  rl.on_error([&](std::error_code ec) { errors.push_back(crew::error_name(ec)); });
  bool closed = false;
  rl.on_close([&] { closed = true; });
  crew::test::run_within(l);
  EXPECT_EQ(got, (lines{"short", "after", "exactly10c"}));
  EXPECT_EQ(errors, (std::vector<std::string>{"ERR_LINE_TOO_LONG", "ERR_LINE_TOO_LONG"}));
  EXPECT_TRUE(closed);
}

TEST(readline, pause_stops_lines_at_once_and_pauses_the_stream_until_resume) {
  crew::loop l;
  chunked_pipe pipe(l, {"1\n2\n3\n", "4\n"});
  crew::readline rl(pipe.reader);
  lines got;
  bool in_resume = false, closed = false;
  crew::timer later(l);
  rl.on_line([&](std::string_view line) {
    EXPECT_FALSE(in_resume) << "a line inside resume()";
    got.emplace_back(line);
    if (line == "1") {
      rl.pause();
      EXPECT_TRUE(rl.paused());
      EXPECT_TRUE(pipe.reader.paused()) << "the stream is paused too";
      later.start(50ms, {}, [&] {
        EXPECT_EQ(got, lines{"1"}) << "no line while paused";
        in_resume = true;
        rl.resume();
        in_resume = false;
      });
    }
  });
  rl.on_close([&] { closed = true; });
  crew::test::run_within(l);
  EXPECT_EQ(got, (lines{"1", "2", "3", "4"}));
  EXPECT_TRUE(closed);
}

// Back-pressure: while the readline is paused nothing drains the pipe, so the
// writer's queue fills up and write() says so.
TEST(readline, a_paused_readline_holds_back_the_writer) {
  crew::loop l;
  crew::child_process cat = crew::spawn("cat", {}, {}, l);
  crew::readline rl(cat.out());
  std::size_t count = 0;
  bool full = false;
  crew::timer later(l);
  rl.on_line([&](std::string_view) {
    if (++count > 1) return;
    rl.pause();
    later.start(100ms, {}, [&] {
      std::string block = std::string(1023, 'x') + "\n";
      for (int i = 0; i < 16 * 1024 && !full; ++i) full = !cat.in().write(block);  // at most 16 MiB
      EXPECT_TRUE(full) << "write() never reported back-pressure";
      cat.in().end();
      rl.resume();
    });
  });
  cat.in().write("first\n");
  crew::test::run_within(l);
  EXPECT_TRUE(full);
  EXPECT_GT(count, 64u) << "the lines written while paused arrive after resume";
}

TEST(readline, destroying_the_readline_inside_on_line_stops_its_events) {
  crew::loop l;
  chunked_pipe pipe(l, {"1\n2\n3\n", "4\n"});
  auto rl = std::make_unique<crew::readline>(pipe.reader);
  lines got;
  rl->on_line([&](std::string_view line) {
    got.emplace_back(line);
    rl.reset();
    got.back() += std::string(line);  // the line stays readable in its callback
  });
  rl->on_close([] { ADD_FAILURE() << "on_close after destruction"; });
  crew::test::run_within(l);
  EXPECT_EQ(got, lines{"11"});
}

TEST(readline, closing_inside_on_line_stops_the_rest_of_the_chunk) {
  crew::loop l;
  chunked_pipe pipe(l, {"1\n2\n3\n"});
  crew::readline rl(pipe.reader);
  lines got;
  rl.on_line([&](std::string_view line) {
    got.emplace_back(line);
    rl.close();
    EXPECT_FALSE(rl.is_open());
  });
  rl.on_close([] { ADD_FAILURE() << "on_close after close()"; });
  crew::test::run_within(l);
  EXPECT_EQ(got, lines{"1"});
}

TEST(readline, reads_the_lines_of_a_child_stdout_then_closes) {
  crew::loop l;
  crew::child_process child = crew::spawn("printf", {"alpha\\nbeta\\r\\ngamma"}, {}, l);
  crew::readline rl(child.out());
  lines got;
  bool closed = false;
  rl.on_line([&](std::string_view line) { got.emplace_back(line); });
  rl.on_close([&] { closed = true; });
  crew::test::run_within(l);
  EXPECT_EQ(got, (lines{"alpha", "beta", "gamma"}));
  EXPECT_TRUE(closed);
}

TEST(readline, reads_the_lines_of_a_tcp_socket) {
  crew::loop l;
  std::vector<crew::tcp::socket> accepted;
  crew::tcp::server server([&](crew::tcp::socket s) {
    s.write("hello\r\nfrom the server\n");
    s.end();
    accepted.push_back(std::move(s));
  }, {}, l);
  crew::result<int> port = server.listen(0);
  ASSERT_TRUE(port) << crew::error_name(port.error());
  std::optional<crew::tcp::socket> client;
  std::optional<crew::readline> rl;
  lines got;
  crew::tcp::connect("127.0.0.1", *port, [&](crew::result<crew::tcp::socket> s) {
    ASSERT_TRUE(s) << crew::error_name(s.error());
    client.emplace(std::move(*s));
    rl.emplace(*client);
    rl->on_line([&](std::string_view line) { got.emplace_back(line); });
    rl->on_close([&] { server.close(); });
  }, {}, l);
  crew::test::run_within(l);
  EXPECT_EQ(got, (lines{"hello", "from the server"}));
}

}  // namespace
