#include "crew/message.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "node_support.hpp"

namespace shapes {

struct point {
  int x = 0;
  int y = 0;
  bool operator==(const point&) const = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(point, x, y)

struct polygon {
  std::string name;
  std::vector<point> corners;
  std::map<std::string, double> tags;
  bool operator==(const polygon&) const = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(polygon, name, corners, tags)

}  // namespace shapes

namespace {

static_assert(std::is_nothrow_move_constructible_v<crew::message>);
static_assert(!std::is_copy_constructible_v<crew::message>);

TEST(message, a_user_type_goes_in_and_comes_out_as_itself) {
  shapes::polygon sent{"triangle", {{0, 0}, {4, 0}, {0, 3}}, {{"area", 6.0}}};
  crew::message m = sent;
  EXPECT_EQ(m.value()["corners"][1]["x"], 4);
  EXPECT_EQ(m.get<shapes::polygon>(), sent);
}

TEST(message, a_user_type_survives_the_text_round_trip) {
  shapes::polygon sent{"snowman \u2603 \U0001F600", {{-1, 2147483647}}, {{"pi", 3.141592653589793}}};
  crew::message m = sent;
  crew::result<crew::message> back = crew::message::parse(m.to_string());
  ASSERT_TRUE(back) << crew::error_name(back.error());
  EXPECT_EQ(back->get<shapes::polygon>(), sent);
}

TEST(message, text_is_compact_json_like_json_stringify) {
  crew::message m = nlohmann::json{{"a", 1}, {"b", {true, nullptr, "x"}}};
  EXPECT_EQ(m.to_string(), R"({"a":1,"b":[true,null,"x"]})");
}

TEST(message, object_keys_keep_their_order_as_in_javascript) {
  crew::result<crew::message> m = crew::message::parse(R"({"zebra":1,"apple":{"y":2,"b":3}})");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->to_string(), R"({"zebra":1,"apple":{"y":2,"b":3}})");
}

TEST(message, text_never_contains_a_raw_newline) {
  crew::message m = std::string("line one\nline two\r\u2028end");
  std::string text = m.to_string();
  EXPECT_EQ(text.find('\n'), std::string::npos);
  EXPECT_EQ(crew::message::parse(text)->get<std::string>(), "line one\nline two\r\u2028end");
}

TEST(message, invalid_utf8_in_a_string_is_replaced_not_thrown) {
  crew::message m = std::string("bad \xff byte");
  EXPECT_EQ(m.to_string(), "\"bad \xEF\xBF\xBD byte\"");
}

TEST(message, a_value_of_the_wrong_shape_is_err_invalid_message) {
  crew::message m = nlohmann::json{{"x", "not a number"}, {"y", 2}};
  crew::result<shapes::point> p = m.try_get<shapes::point>();
  ASSERT_FALSE(p);
  EXPECT_EQ(crew::error_name(p.error()), "ERR_INVALID_MESSAGE");
  try {
    (void)m.get<shapes::point>();
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), crew::errc::invalid_message);
    EXPECT_NE(std::string(e.what()).find("number"), std::string::npos) << e.what();
  }
}

TEST(message, text_that_is_not_json_is_err_invalid_message) {
  for (std::string_view bad : {"", "{", "{\"a\":}", "[1,2", "nul", "\"unterminated", "{} trailing", "\"\xff\""}) {
    crew::result<crew::message> r = crew::message::parse(bad);
    EXPECT_EQ(r.error(), crew::errc::invalid_message) << "accepted: " << bad;
  }
}

// As JSON.parse: a NUL byte is never JSON (nlohmann's parser took one for the
// end of the text), nor is anything after the value, nor a byte order mark.
// Small texts take simdjson's path, large ones (past 64 KiB) nlohmann's: both refuse.
TEST(message, text_with_a_nul_byte_trailing_garbage_or_a_byte_order_mark_is_refused_on_both_paths) {
  using namespace std::string_literals;
  std::string padding(70 * 1024, ' ');
  for (std::string bad : {"\0{\"a\":1}\0garbage"s, "{\"a\":1}\0garbage"s, "{\"a\":1}\0"s, "\"a\0b\""s, "[1,\0 2]"s,
                          "{\"a\":1} garbage"s, "{\"a\":1}}"s, "1 2"s, "\xEF\xBB\xBF{\"a\":1}"s}) {
    EXPECT_EQ(crew::message::parse(bad).error(), crew::errc::invalid_message) << "small: " << bad;
    EXPECT_EQ(crew::message::parse(bad + padding).error(), crew::errc::invalid_message) << "large: " << bad;
    EXPECT_EQ(crew::message::parse(padding + bad).error(), crew::errc::invalid_message) << "large: " << bad;
  }
  EXPECT_TRUE(crew::message::parse(" \t\r\n{\"a\":1} \t\r\n" + padding)) << "JSON's own whitespace is fine";
}

TEST(message, nesting_is_bounded_so_hostile_text_cannot_exhaust_the_stack) {
  auto nested = [](int depth) {
    std::string text(depth, '[');
    return text.append(depth, ']');
  };
  EXPECT_TRUE(crew::message::parse(nested(crew::message::max_depth)));
  EXPECT_EQ(crew::message::parse(nested(crew::message::max_depth + 1)).error(), crew::errc::invalid_message);
  EXPECT_EQ(crew::message::parse(std::string(10'000'000, '{')).error(), crew::errc::invalid_message);
  // Brackets inside strings do not count as nesting.
  std::string text(1, '"');
  text.append(5000, '[').append("\\\"\"");
  EXPECT_TRUE(crew::message::parse(text)) << "brackets in a string are not structure";
}

TEST(message, attachments_move_with_the_message_without_a_copy) {
  crew::message m = std::string("frame");
  m.attach(crew::buffer(std::string_view("pixels")));
  const std::byte* bytes = m.buffers()[0].data();
  crew::message moved = std::move(m);
  ASSERT_EQ(moved.buffers().size(), 1u);
  EXPECT_EQ(moved.buffers()[0].data(), bytes);
  EXPECT_EQ(moved.buffers()[0].view(), "pixels");
}

TEST(message, clone_copies_value_and_attachments) {
  crew::message m = 5;
  m.attach(crew::buffer(std::string_view("abc")));
  crew::message copy = m.clone();
  EXPECT_EQ(copy.get<int>(), 5);
  ASSERT_EQ(copy.buffers().size(), 1u);
  EXPECT_NE(copy.buffers()[0].data(), m.buffers()[0].data());
  EXPECT_EQ(copy.buffers()[0].view(), "abc");
}

TEST(message, a_default_message_is_null) {
  crew::message m;
  EXPECT_TRUE(m.value().is_null());
  EXPECT_EQ(m.to_string(), "null");
}

}  // namespace

// Small texts take simdjson's path, large ones nlohmann's: both must read JSON
// as JSON.parse does.
TEST(message, small_and_large_texts_parse_alike_as_json_parse_does) {
  std::string padding(70 * 1024, ' ');  // past the fast path's limit
  for (std::string_view text : {R"({"a":1,"b":2,"a":3})", R"([100000000000000000000,-0.5,18446744073709551615,-9223372036854775808])",
                                R"({"s":"\u00e9\ud83d\ude00\u2028","n":null,"t":true,"e":[],"o":{}})"}) {
    auto small = crew::message::parse(text);
    auto large = crew::message::parse(std::string(text) + padding);
    ASSERT_TRUE(small && large) << text;
    EXPECT_EQ(small->to_string(), large->to_string()) << text;
    EXPECT_EQ(small->value(), large->value()) << text;
  }
  auto repeated = crew::message::parse(R"({"a":1,"b":2,"a":3})");
  EXPECT_EQ(repeated->to_string(), R"({"a":3,"b":2})");  // first place, last value
  auto big = crew::message::parse("[100000000000000000000]");
  EXPECT_TRUE(big->value()[0].is_number_float());
  for (std::string_view bad : {R"("\ud800")", "[1,]", "{\"a\":1", "\"\xff\""}) {
    EXPECT_EQ(crew::message::parse(bad).error(), crew::errc::invalid_message) << bad;
  }
}

// Doubles are written as JSON.stringify writes them (Number.prototype.toString's
// digits): node, given the same doubles, is the judge.
TEST(message, doubles_are_written_exactly_as_json_stringify_writes_them) {
  using limits = std::numeric_limits<double>;
  std::vector<double> table = {0.0, -0.0, 3.0, -3.0, 0.1, 0.1 + 0.2, 1.0 / 3, -2.5, 100, 4.35, 1234.5678,
                               1e20, 1e21, -1e21, 1.2345678901234568e20, 123456789012345678901.0, 1e100, 1e300,
                               1e-6, 1e-7, -1e-7, 1.5e-7, 0.000001234, 123e-20, 0x1p53, 0x1p53 + 2, 0x1p64,
                               limits::max(), -limits::max(), limits::min(), limits::denorm_min(),
                               limits::quiet_NaN(), limits::infinity(), -limits::infinity()};
  std::mt19937_64 random(12);
  while (table.size() < 400) {  // random bit patterns: every exponent, full mantissas
    std::uint64_t bits = random();
    double x;
    std::memcpy(&x, &bits, sizeof x);
    if (std::isfinite(x)) table.push_back(x);
  }
  for (int i = 0; i < 100; ++i) table.push_back(static_cast<double>(random() % 100000) / 1000);  // prices

  std::string input;
  nlohmann::ordered_json array = nlohmann::ordered_json::array();
  for (double x : table) {
    char text[40];
    if (std::isnan(x))
      std::snprintf(text, sizeof text, "NaN");
    else if (std::isinf(x))
      std::snprintf(text, sizeof text, x > 0 ? "Infinity" : "-Infinity");
    else
      std::snprintf(text, sizeof text, "%.17g", x);  // reads back as the same double
    input.append(text).append("\n");
    array.push_back(x);
  }
  CREW_NODE_OR_SKIP(expected, R"(
    const xs = require('fs').readFileSync(0, 'utf8').trim().split('\n').map(Number);
    for (const x of xs) console.log(JSON.stringify(x));
    console.log(JSON.stringify(xs));)",
                    input);
  std::istringstream lines(*expected);
  std::string line;
  for (double x : table) {
    std::getline(lines, line);
    EXPECT_EQ(crew::message(x).to_string(), line) << "for the double " << std::hexfloat << x;
  }
  std::getline(lines, line);
  EXPECT_EQ(crew::message(array).to_string(), line) << "the whole array";
}

TEST(message, strings_and_keys_are_escaped_and_bad_utf8_replaced_as_node_does) {
  std::string all;
  for (int c = 0; c < 0x80; ++c) all += static_cast<char>(c);
  all += "\u00e9\u2028\U0001F600";
  // Ill-formed UTF-8: each maximal bad subsequence becomes one U+FFFD, as Node decodes bytes.
  all += "\xff|\xe2\x82" "A|\xed\xa0\x80|\xf0\x90\xc3\xa9|\xf4\x90\x80\x80|\xc0\xaf|\x80\xbf|\xe2\x82";
  std::string hex;
  for (unsigned char c : all) hex += "0123456789abcdef"[c >> 4], hex += "0123456789abcdef"[c & 15];
  CREW_NODE_OR_SKIP(expected, R"(
    const s = Buffer.from(require('fs').readFileSync(0, 'utf8'), 'hex').toString();
    process.stdout.write(JSON.stringify({[s]: [s]})))",
                    hex);
  nlohmann::ordered_json value = {{all, {all}}};
  EXPECT_EQ(crew::message(value).to_string(), *expected);
}
