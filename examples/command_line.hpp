// The examples' one command-line helper: `--name value` pairs.
#pragma once

#include <cstdlib>
#include <cstring>

namespace examples {

/// The number after `name` on the command line, or `fallback` when absent.
inline long option(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atol(argv[i + 1]);
  return fallback;
}

}  // namespace examples
