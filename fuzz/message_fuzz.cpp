// message::parse and message::to_string on arbitrary text.
//
// Properties checked on every input, beyond "no crash, no leak, no UB":
//   - a text parse() accepts has no NUL byte, no byte order mark and no nesting
//     past message::max_depth, and nlohmann's own (strict, whole-input) parser
//     accepts it with the same value: the simdjson fast path reads JSON as the
//     nlohmann path does;
//   - a text parse() refuses that nlohmann accepts is one crew refuses on
//     purpose, as JSON.parse does: a NUL byte, a byte order mark, or nesting
//     past message::max_depth;
//   - parse(to_string(v)) gives v back, and to_string is then a fixpoint.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "crew/message.hpp"

namespace {

using json = crew::message::value_type;

[[noreturn]] void broken(const char* what, std::string_view text) {
  std::fprintf(stderr, "message fuzz: %s (input of %zu bytes)\n", what, text.size());
  std::abort();
}

// The deepest nesting outside strings: the oracle for max_depth.
int nesting(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

bool refused_on_purpose(std::string_view text) {
  return text.find('\0') != std::string_view::npos || text.starts_with("\xEF\xBB\xBF") ||
         nesting(text) > crew::message::max_depth;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  crew::result<crew::message> parsed = crew::message::parse(text);
  if (!parsed) {
    if (parsed.error() != crew::errc::invalid_message) broken("an error other than ERR_INVALID_MESSAGE", text);
    // json::accept is iterative: safe on any depth.
    if (json::accept(text) && !refused_on_purpose(text)) broken("refused a text that is JSON", text);
    return 0;
  }
  // nlohmann itself takes a NUL for the end of the text: it is no oracle there.
  if (refused_on_purpose(text)) broken("accepted a text that JSON.parse refuses", text);
  json direct = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (direct.is_discarded()) broken("accepted a text that is not JSON", text);
  if (direct != parsed->value()) broken("read a text otherwise than nlohmann", text);

  std::string once = parsed->to_string();
  crew::result<crew::message> again = crew::message::parse(once);
  if (!again) broken("refused its own text", text);
  if (again->value() != parsed->value()) broken("the round trip changed the value", text);
  if (again->to_string() != once) broken("to_string is not a fixpoint", text);
  return 0;
}
