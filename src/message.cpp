#include "crew/message.hpp"

#include "crew/message_port.hpp"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "detail/utf8.hpp"

namespace crew {
namespace {

// One linear pass before either parser, for what they get wrong or too slowly:
// nlohmann's parser recurses once per nesting level (a hostile text of a
// million '[' would overflow the stack), and it takes a NUL byte for the end of
// the input (so "{}\0garbage" would read as {}). JSON has no raw NUL anywhere,
// not even in a string, and no byte order mark, which nlohmann skips and
// JSON.parse refuses.
bool plausible(std::string_view text, int depth_limit) noexcept {
  if (text.find('\0') != std::string_view::npos || text.starts_with("\xEF\xBB\xBF")) return false;
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > depth_limit) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// The common message is small: simdjson reads it about twice as fast as
// nlohmann's parser, and its tree is then copied into the message's value.
// Larger texts, and anything simdjson refuses (it also refuses integers past
// 64 bits, which JSON.parse reads as doubles), go to nlohmann, which decides.
constexpr std::size_t fast_parse_limit = 64 * 1024;

void convert(simdjson::dom::element from, message::value_type& to) {
  using kind = simdjson::dom::element_type;
  switch (from.type()) {
    case kind::OBJECT: {
      simdjson::dom::object fields = from.get_object().value_unsafe();
      to = message::value_type::object();
      auto& object = to.get_ref<message::value_type::object_t&>();
      object.reserve(fields.size());
      for (simdjson::dom::key_value_pair field : fields) {
        // A repeated key keeps its first place and takes the last value, as in JSON.parse.
        auto [slot, inserted] = object.emplace(std::string(field.key), nullptr);
        convert(field.value, slot->second);
      }
      return;
    }
    case kind::ARRAY: {
      simdjson::dom::array items = from.get_array().value_unsafe();
      to = message::value_type::array();
      auto& array = to.get_ref<message::value_type::array_t&>();
      array.reserve(items.size());
      for (simdjson::dom::element item : items) convert(item, array.emplace_back());
      return;
    }
    case kind::STRING:
      to = std::string(from.get_string().value_unsafe());
      return;
    case kind::INT64: {
      // nlohmann keeps non-negative integers unsigned: the same value either way.
      std::int64_t v = from.get_int64().value_unsafe();
      if (v >= 0)
        to = static_cast<std::uint64_t>(v);
      else
        to = v;
      return;
    }
    case kind::UINT64:
      to = from.get_uint64().value_unsafe();
      return;
    case kind::DOUBLE:
      to = from.get_double().value_unsafe();
      return;
    case kind::BOOL:
      to = from.get_bool().value_unsafe();
      return;
    case kind::NULL_VALUE:
      to = nullptr;
      return;
  }
}

bool fast_parse(std::string_view text, message::value_type& to) {
  thread_local simdjson::dom::parser parser;
  thread_local std::string padded;  // simdjson reads up to SIMDJSON_PADDING bytes past the end
  padded.resize(text.size() + simdjson::SIMDJSON_PADDING);
  std::memcpy(padded.data(), text.data(), text.size());
  simdjson::dom::element root;
  if (parser.parse(padded.data(), text.size(), false).get(root) != simdjson::SUCCESS) return false;
  convert(root, to);
  return true;
}

// A JSON string as JSON.stringify writes it: '"', '\\' and control characters
// escaped (\u00XX in lowercase hex but for the five short forms), everything
// else as is. Ill-formed UTF-8 becomes U+FFFD (nlohmann's "replace" handler
// did the same; a JavaScript string cannot hold such bytes).
void write_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the bytes not yet copied
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++i;
      continue;
    }
    out.append(s.data() + run, i - run);
    if (c >= 0x80) {
      detail::utf8_sequence next = detail::next_utf8(s.substr(i));
      if (next.valid)
        out.append(s.data() + i, next.length);
      else
        out.append(detail::replacement_character);
      i += next.length;
    } else {
      out += '\\';
      switch (c) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '\b': out += 'b'; break;
        case '\f': out += 'f'; break;
        case '\n': out += 'n'; break;
        case '\r': out += 'r'; break;
        case '\t': out += 't'; break;
        default:
          out += "u00";
          out += hex[c >> 4];
          out += hex[c & 0xF];
      }
      ++i;
    }
    run = i;
  }
  out.append(s.data() + run, i - run);
  out += '"';
}

template <class Integer>
void write_integer(std::string& out, Integer n) {
  char digits[24];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, n).ptr);
}

// A number as JavaScript's Number.prototype.toString writes it (ECMAScript's
// Number::toString): the shortest digits that read back as the same double,
// placed by the decimal exponent: 3, 0.1, 1e-7, 1.5e+300, 100000000000000000000,
// 1e+21; -0 as 0. JSON.stringify writes NaN and the infinities as null.
void write_double(std::string& out, double x) {
  if (!std::isfinite(x)) return void(out += "null");
  if (x == 0) return void(out += '0');
  // Whole numbers below 2^53, the common case, are their integer's digits.
  if (std::abs(x) < 0x1p53 && x == std::trunc(x)) return write_integer(out, static_cast<std::int64_t>(x));
  // to_chars in scientific form gives the shortest round-trip digits:
  // "-1.2345e+05" is digits 12345 and exponent 5.
  char sci[32];
  char* end = std::to_chars(sci, sci + sizeof sci, x, std::chars_format::scientific).ptr;
  char* p = sci;
  char text[48];  // the longest form is 21 digits and a sign, or 0.00000 and 17 digits
  char* to = text;
  if (*p == '-') *to++ = *p++;
  char digits[20];
  int k = 0;  // how many significant digits
  for (; *p != 'e'; ++p)
    if (*p != '.') digits[k++] = *p;
  bool negative_power = p[1] == '-';
  int power = 0;
  for (p += 2; p < end; ++p) power = power * 10 + (*p - '0');
  int n = (negative_power ? -power : power) + 1;  // the value is 0.digits * 10^n
  auto copy = [&to](const char* from, int count) { to = std::copy_n(from, count, to); };
  if (k <= n && n <= 21) {
    copy(digits, k);
    to = std::fill_n(to, n - k, '0');
  } else if (0 < n && n <= 21) {
    copy(digits, n);
    *to++ = '.';
    copy(digits + n, k - n);
  } else if (-6 < n && n <= 0) {
    copy("0.", 2);
    to = std::fill_n(to, -n, '0');
    copy(digits, k);
  } else {
    *to++ = digits[0];
    if (k > 1) {
      *to++ = '.';
      copy(digits + 1, k - 1);
    }
    copy(n - 1 < 0 ? "e-" : "e+", 2);
    to = std::to_chars(to, text + sizeof text, std::abs(n - 1)).ptr;
  }
  out.append(text, to);
}

void write_json(std::string& out, const message::value_type& v) {
  using kind = nlohmann::detail::value_t;
  switch (v.type()) {
    case kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : v.get_ref<const message::value_type::object_t&>()) {
        if (!first) out += ',';
        first = false;
        write_string(out, key);
        out += ':';
        write_json(out, item);
      }
      out += '}';
      return;
    }
    case kind::array: {
      out += '[';
      bool first = true;
      for (const auto& item : v.get_ref<const message::value_type::array_t&>()) {
        if (!first) out += ',';
        first = false;
        write_json(out, item);
      }
      out += ']';
      return;
    }
    case kind::string: return write_string(out, v.get_ref<const std::string&>());
    case kind::boolean: return void(out += v.get<bool>() ? "true" : "false");
    case kind::number_integer: return write_integer(out, v.get<std::int64_t>());
    case kind::number_unsigned: return write_integer(out, v.get<std::uint64_t>());
    case kind::number_float: return write_double(out, v.get<double>());
    case kind::binary: {
      // Not a JSON.stringify value: written as nlohmann writes it.
      const auto& bytes = v.get_binary();
      out += "{\"bytes\":[";
      for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (i) out += ',';
        write_integer(out, bytes[i]);
      }
      out += "],\"subtype\":";
      if (bytes.has_subtype())
        write_integer(out, bytes.subtype());
      else
        out += "null";
      out += '}';
      return;
    }
    case kind::null:
    case kind::discarded: out += "null"; return;
  }
}

}  // namespace

struct message::attachments {
  std::vector<buffer> buffers;
  std::vector<shared_buffer> shared_buffers;
  std::vector<message_port> ports;
  std::vector<int> fds;
};

void message::attachments_deleter::operator()(attachments* a) const noexcept { delete a; }

message::attachments& message::extra() {
  if (!extra_) extra_.reset(new attachments);
  return *extra_;
}

namespace {
template <class T>
const std::vector<T>& none() noexcept {
  static const std::vector<T> empty;
  return empty;
}
}  // namespace

std::vector<buffer>& message::buffers() { return extra().buffers; }
const std::vector<buffer>& message::buffers() const noexcept { return extra_ ? extra_->buffers : none<buffer>(); }
std::vector<shared_buffer>& message::shared_buffers() { return extra().shared_buffers; }
const std::vector<shared_buffer>& message::shared_buffers() const noexcept {
  return extra_ ? extra_->shared_buffers : none<shared_buffer>();
}
std::vector<message_port>& message::ports() { return extra().ports; }
const std::vector<message_port>& message::ports() const noexcept { return extra_ ? extra_->ports : none<message_port>(); }
std::vector<int>& message::fds() { return extra().fds; }
const std::vector<int>& message::fds() const noexcept { return extra_ ? extra_->fds : none<int>(); }

bool message::has_attachments() const noexcept {
  return extra_ && (!extra_->buffers.empty() || !extra_->shared_buffers.empty() || !extra_->ports.empty() || !extra_->fds.empty());
}

message message::clone() const {
  message copy(value_);
  if (extra_) {
    attachments& to = copy.extra();
    to.buffers.reserve(extra_->buffers.size());
    for (const buffer& b : extra_->buffers) to.buffers.push_back(b.clone());
    to.shared_buffers = extra_->shared_buffers;
    to.fds = extra_->fds;
  }
  return copy;
}

std::string message::to_string() const {
  std::string text;
  append_to(text);
  return text;
}

void message::append_json(std::string& out, const value_type& value) { write_json(out, value); }

result<message> message::parse(std::string_view text) {
  if (!plausible(text, max_depth)) return errc::invalid_message;
  if (text.size() <= fast_parse_limit) {
    value_type value;
    if (fast_parse(text, value)) return message(std::move(value));
  }
  value_type value = value_type::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return errc::invalid_message;
  return message(std::move(value));
}

}  // namespace crew
