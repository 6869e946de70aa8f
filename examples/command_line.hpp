// The examples' one command-line helper: `--name value` pairs.
#pragma once

#include <algorithm>
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

/// The number after `name` on the command line, or `fallback` when absent.
inline long option(int argc, char** argv, const char* name, long fallback) {
  const char* given = text(argc, argv, name, nullptr);
  return given ? std::atol(given) : fallback;
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
