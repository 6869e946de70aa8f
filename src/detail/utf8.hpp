// UTF-8 decoding as the WHATWG Encoding standard does it: each maximal
// ill-formed subsequence stands for one U+FFFD. JSON.stringify's input,
// URLSearchParams' decoded bytes and nlohmann's "replace" error handler all
// follow this rule, so crew's writers and parsers agree with Node on bad bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace crew::detail {

/// U+FFFD, the replacement character, in UTF-8.
inline constexpr std::string_view replacement_character = "\xEF\xBF\xBD";

/// The sequence at the start of non-empty `bytes`: `length` bytes that are one
/// well-formed code point (`valid`), or the ill-formed prefix to replace by one
/// U+FFFD (at least one byte; a byte that breaks a sequence is not part of it).
struct utf8_sequence {
  std::size_t length;
  bool valid;
};

inline utf8_sequence next_utf8(std::string_view bytes) noexcept {
  auto lead = static_cast<unsigned char>(bytes[0]);
  if (lead < 0x80) return {1, true};
  std::size_t needed;
  unsigned char lower = 0x80, upper = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    needed = 1;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    needed = 2;
    if (lead == 0xE0) lower = 0xA0;  // overlong
    if (lead == 0xED) upper = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    needed = 3;
    if (lead == 0xF0) lower = 0x90;  // overlong
    if (lead == 0xF4) upper = 0x8F;  // past U+10FFFF
  } else {
    return {1, false};
  }
  for (std::size_t i = 1; i <= needed; ++i) {
    if (i == bytes.size()) return {i, false};
    auto next = static_cast<unsigned char>(bytes[i]);
    if (next < lower || next > upper) return {i, false};
    lower = 0x80;
    upper = 0xBF;
  }
  return {needed + 1, true};
}

/// Appends `bytes` to `out`, each ill-formed subsequence replaced by U+FFFD.
inline void append_utf8_replacing(std::string& out, std::string_view bytes) {
  while (!bytes.empty()) {
    utf8_sequence next = next_utf8(bytes);
    if (next.valid)
      out.append(bytes.data(), next.length);
    else
      out.append(replacement_character);
    bytes.remove_prefix(next.length);
  }
}

}  // namespace crew::detail
