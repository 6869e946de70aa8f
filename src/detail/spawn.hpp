// The process-creation primitive under child_process: start a program with a
// given set of fds as its stdio, in one system call of vfork class, and get back
// its pid and a pidfd. Platform code lives in src/unix/.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "crew/error.hpp"

namespace crew::detail {

struct spawn_plan {
  std::string file;                  // resolved path of the program (see find_program)
  std::vector<std::string> argv;     // argv[0] included
  std::vector<std::string> env;      // "NAME=value" entries, the child's whole environment
  std::string cwd;                   // empty: the parent's
  std::vector<int> stdio;            // stdio[i] becomes fd i in the child; -1 leaves fd i closed
  bool new_session = false;          // setsid(): detached, own session and process group
  bool new_process_group = false;    // setpgid(0, 0): own process group, so a tree can be killed
  bool die_with_parent = false;      // PR_SET_PDEATHSIG(SIGKILL)
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
};

struct spawned {
  pid_t pid = -1;
  int pidfd = -1;  // -1 when the kernel has no pidfd (before Linux 5.3)
};

/// Starts the program. Errors: the errno of the failed step in the child (ENOENT,
/// EACCES, ENOTDIR, EPERM for setuid...), or EAGAIN/ENOMEM from the clone itself.
result<spawned> spawn(const spawn_plan& plan);

/// Resolves `name` like execvp: a name with a slash is used as is; otherwise each
/// directory of `path` (the child's PATH) is tried. Errors: ENOENT, EACCES.
result<std::string> find_program(const std::string& name, const std::string& path);

/// Waits for the exit of a child without blocking. Returns false while it runs;
/// otherwise fills code/signal and reaps it, unless `keep` leaves it a zombie
/// (so that its pid, and the id of the group it leads, stay taken).
bool try_reap(const spawned& child, int& code, int& signal, bool keep = false) noexcept;

/// Closes an fd that crew made with a raw system call (a pidfd from clone, the
/// reaper's eventfd) with a raw system call too. ThreadSanitizer tracks fd
/// numbers: a close it saw on one thread, followed by the same number made anew
/// on another thread, looks to it like a race, although the kernel orders both.
void raw_close(int fd) noexcept;

/// Sends `signal` to the child, through its pidfd when there is one (no PID reuse race).
int send_signal(const spawned& child, int signal) noexcept;

}  // namespace crew::detail
