// Helpers shared by crew's unit tests.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "crew/loop.hpp"
#include "crew/timer.hpp"

namespace crew::test {

/// Sanitizer builds run slower; their test presets set CREW_TIMEOUT_MULTIPLIER.
inline std::chrono::milliseconds scaled(std::chrono::milliseconds limit) {
  const char* factor = std::getenv("CREW_TIMEOUT_MULTIPLIER");
  return limit * (factor ? std::max(1, std::atoi(factor)) : 1);
}

/// Runs l until it has nothing left to do, failing the test (and stopping the
/// loop) if that takes longer than `limit`: a hang becomes a failure, not a stuck suite.
/// The watchdog timer is unreferenced, so it never keeps the loop alive itself.
inline void run_within(crew::loop& l, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  bool expired = false;
  crew::timer watchdog(l);
  watchdog.start(scaled(limit), {}, [&] {
    expired = true;
    l.stop();
  });
  watchdog.unref();
  l.run();
  EXPECT_FALSE(expired) << "the loop was still busy after " << scaled(limit).count() << " ms";
}

}  // namespace crew::test
