// Linux process creation with clone(CLONE_VM | CLONE_VFORK): the child shares the
// parent's memory until it calls execve, so no page table is copied and the cost
// does not grow with the parent's resident memory (fork's does: libuv 1.44 forks).
// CLONE_PIDFD gives a pidfd for race-free waiting and signalling.
//
// The child runs on a stack of its own, in the parent's address space, so it may
// only make async-signal-safe system calls, must not touch the heap, and reports a
// failure by writing errno into the shared `failure` variable before _exit.
#include "detail/spawn.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace crew::detail {
namespace {

struct child_args {
  const spawn_plan* plan;
  const char* file;
  char* const* argv;
  char* const* envp;
  pid_t parent;
  int failure;  // written by the child (shared memory) when a step fails
};

// Moves every stdio source out of the 0..n-1 range first, so that placing fd i
// never clobbers a source still needed for a later index.
int place_stdio(const std::vector<int>& stdio) {
  const int n = static_cast<int>(stdio.size());
  int moved[64];
  if (n > 64) return EINVAL;
  for (int i = 0; i < n; ++i) {
    moved[i] = -1;
    if (stdio[i] < 0) continue;
    moved[i] = fcntl(stdio[i], F_DUPFD_CLOEXEC, n);
    if (moved[i] < 0) return errno;
  }
  for (int i = 0; i < n; ++i) {
    if (moved[i] < 0) {
      close(i);
      continue;
    }
    if (dup2(moved[i], i) < 0) return errno;  // dup2 clears FD_CLOEXEC on i
  }
  // Nothing but stdio reaches the program: close everything above it.
  if (syscall(SYS_close_range, n, ~0U, 0) != 0) {
    struct rlimit limit {};
    getrlimit(RLIMIT_NOFILE, &limit);
    for (rlim_t fd = n; fd < limit.rlim_cur && fd < 65536; ++fd) close(static_cast<int>(fd));
  }
  return 0;
}

int child_main(void* raw) {
  auto* a = static_cast<child_args*>(raw);
  const spawn_plan& p = *a->plan;
  auto fail = [a](int error) {
    a->failure = error;
    _exit(127);
  };

  // Handlers installed by the parent must not run in the child: reset every
  // disposition to the default (as libuv does), then unblock signals.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int signum = 1; signum < NSIG; ++signum) {
    if (signum == SIGKILL || signum == SIGSTOP) continue;
    sigaction(signum, &dfl, nullptr);  // EINVAL for glibc's reserved signals: harmless
  }

  if (p.new_session && setsid() < 0) fail(errno);
  if (p.new_process_group && !p.new_session && setpgid(0, 0) < 0) fail(errno);
  if (p.die_with_parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail(errno);
    if (getppid() != a->parent) _exit(127);  // the parent died before prctl took effect
  }
  if (p.gid) {
    if (setgroups(0, nullptr) < 0 && errno != EPERM) fail(errno);
    if (setgid(*p.gid) < 0) fail(errno);
  }
  if (p.uid && setuid(*p.uid) < 0) fail(errno);
  if (!p.cwd.empty() && chdir(p.cwd.c_str()) < 0) fail(errno);
  if (int error = place_stdio(p.stdio)) fail(error);

  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  execve(a->file, a->argv, a->envp);
  fail(errno);
  return 127;
}

// Each thread spawns on a stack of its own: CLONE_VFORK suspends the calling
// thread until the child execs, so one stack per thread is enough.
constexpr std::size_t child_stack_size = 64 * 1024;
thread_local std::unique_ptr<char[]> child_stack;

std::vector<char*> pointers(const std::vector<std::string>& strings) {
  std::vector<char*> result;
  result.reserve(strings.size() + 1);
  for (const auto& s : strings) result.push_back(const_cast<char*>(s.c_str()));
  result.push_back(nullptr);
  return result;
}

}  // namespace

result<spawned> spawn(const spawn_plan& plan) {
  if (!child_stack) child_stack = std::make_unique<char[]>(child_stack_size);
  std::vector<char*> argv = pointers(plan.argv);
  std::vector<char*> envp = pointers(plan.env);
  child_args args{&plan, plan.file.c_str(), argv.data(), envp.data(), getpid(), 0};

  // Block every signal so that no handler runs on the child's side of the shared
  // memory before it has reset them; the child unblocks before execve.
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  int pidfd = -1;
  void* stack_top = child_stack.get() + child_stack_size;
  pid_t pid = clone(child_main, stack_top, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &args, &pidfd);
  if (pid < 0 && errno == EINVAL) {  // a kernel without CLONE_PIDFD
    pidfd = -1;
    pid = clone(child_main, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  }
  int clone_error = errno;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);

  if (pid < 0) return std::error_code(clone_error, std::generic_category());
  if (args.failure != 0) {
    // The child never reached the program: reap it now, it has exited.
    siginfo_t info;
    if (pidfd >= 0) {
      syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED, nullptr);
      close(pidfd);
    } else {
      waitpid(pid, nullptr, 0);
    }
    return uv_error(-args.failure);
  }
  return spawned{pid, pidfd};
}

result<std::string> find_program(const std::string& name, const std::string& path) {
  if (name.empty()) return uv_error(-ENOENT);
  if (name.find('/') != std::string::npos) return name;
  int error = ENOENT;
  std::size_t begin = 0;
  while (begin <= path.size()) {
    std::size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(begin, end - begin);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    if (errno == EACCES && access(candidate.c_str(), F_OK) == 0) error = EACCES;
    begin = end + 1;
  }
  return uv_error(-error);
}

bool try_reap(const spawned& child, int& code, int& signal) noexcept {
  siginfo_t info{};
  int rc = child.pidfd >= 0 ? static_cast<int>(syscall(SYS_waitid, P_PIDFD, child.pidfd, &info, WEXITED | WNOHANG, nullptr))
                            : waitid(P_PID, static_cast<id_t>(child.pid), &info, WEXITED | WNOHANG);
  if (rc < 0 || info.si_pid == 0) return false;
  if (info.si_code == CLD_EXITED) {
    code = info.si_status;
    signal = 0;
  } else {
    code = -1;
    signal = info.si_status;
  }
  return true;
}

int send_signal(const spawned& child, int signal) noexcept {
  if (child.pidfd >= 0) {
    if (syscall(SYS_pidfd_send_signal, child.pidfd, signal, nullptr, 0) == 0) return 0;
    if (errno != ENOSYS) return -errno;
  }
  return kill(child.pid, signal) == 0 ? 0 : -errno;
}

}  // namespace crew::detail
