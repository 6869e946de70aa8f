// Whole numbers from text, for flags and queries: all of the text, in range.
#pragma once

#include <charconv>
#include <string_view>

namespace crew_server {

/// Sets `out` when `text` is a whole number in [low, high], and says whether it was.
template <class Number>
bool parse_number(std::string_view text, Number low, Number high, Number& out) {
  Number value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < low || value > high) return false;
  out = value;
  return true;
}

}  // namespace crew_server
