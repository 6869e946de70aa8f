// Running real Node from a test, to take its behaviour as the expected one.
#pragma once

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "crew/child_process.hpp"
#include "crew/error.hpp"

namespace crew::test {

/// Runs `node -e script` with `input` on its stdin and returns what it wrote to
/// stdout; nullopt when node is not installed (the test then skips). A script
/// that fails fails the test, with node's stderr.
inline std::optional<std::string> run_node(const std::string& script, std::string input = {}) {
  crew::spawn_sync_result r = crew::spawn_sync("node", {"-e", script}, {.input = std::move(input)});
  if (r.error == std::errc::no_such_file_or_directory) return std::nullopt;
  EXPECT_TRUE(r.ok()) << "node failed (" << crew::error_name(r.error) << ", exit " << r.status.code << "):\n" << r.err;
  return r.out;
}

}  // namespace crew::test

/// Skips the current test when node is not installed.
#define CREW_NODE_OR_SKIP(var, ...)                               \
  std::optional<std::string> var = crew::test::run_node(__VA_ARGS__); \
  if (!var) GTEST_SKIP() << "node is not installed: nothing to compare with"
