// The resident memory (RSS) of a process, read from /proc: what the cluster's
// and the process pool's max_memory limits compare.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace crew::detail {

/// Bytes of `pid` in memory now; 0 when the process is gone.
inline std::uint64_t resident_bytes(pid_t pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace crew::detail
