// The examples' one command-line helper: `--name value` pairs.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace examples {

/// The text after `name` on the command line, or `fallback` when absent.
inline const char* text(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

/// The whole number after `name` on the command line, or `fallback` when
/// absent. Anything else ("4x", "-1", a number past `high`) ends the program
/// with a message naming the option, instead of running with a wrong value.
inline long option(int argc, char** argv, const char* name, long fallback, long low = 0, long high = 1'000'000'000) {
  const char* given = text(argc, argv, name, nullptr);
  if (!given) return fallback;
  long value = 0;
  const char* end = given + std::strlen(given);
  auto [stop, error] = std::from_chars(given, end, value);
  if (error != std::errc() || stop != end || value < low || value > high) {  // (from_chars refuses "")
    std::fprintf(stderr, "%s: expected a whole number from %ld to %ld, got '%s'\n", name, low, high, given);
    std::exit(2);
  }
  return value;
}

/// Whether the command line is only `flags`, each followed by its value.
inline bool only(int argc, char** argv, std::initializer_list<const char*> flags) {
  for (int i = 1; i < argc; i += 2) {
    auto named = [&](const char* flag) { return std::strcmp(argv[i], flag) == 0; };
    if (i + 1 == argc || std::none_of(flags.begin(), flags.end(), named)) return false;
  }
  return true;
}

}  // namespace examples
