// What /proc tells of processes: the resident memory (RSS) that the cluster's
// and the process pool's max_memory limits compare, and this program's command
// line, which the workers they start by default carry.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace crew::detail {

/// Bytes of `pid` in memory now; 0 when the process is gone.
inline std::uint64_t resident_bytes(pid_t pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

/// This program's command line, its name (argv[0]) first.
inline std::vector<std::string> command_line() {
  std::ifstream cmdline("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> all;
  for (std::string each; std::getline(cmdline, each, '\0');) all.push_back(std::move(each));
  return all;
}

/// The name this program was started by (its argv[0]): what workers of this very
/// program (/proc/self/exe) carry, so that ps and pgrep show them under it, not
/// as "exe". Empty if /proc cannot tell.
inline std::string own_name() {
  std::vector<std::string> all = command_line();
  return all.empty() ? std::string() : std::move(all.front());
}

}  // namespace crew::detail
