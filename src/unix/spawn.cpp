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
#include <uv.h>
#include <unistd.h>

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

// glibc's clone under its own name: ThreadSanitizer interposes `clone`, and its
// wrapper, run around a child that shares our memory, loses track of the
// calling thread (later accesses of a worker thread that spawned were reported
// as races). The child runs no sanitizer code, so it needs no wrapper.
extern "C" int __clone(int (*fn)(void*), void* stack, int flags, void* arg, ...);

namespace crew::detail {
namespace {

// The child shares the parent's memory, so it must not run sanitizer
// instrumentation or interceptors (they keep state in that memory): it uses raw
// system calls only, on data the parent prepared.
#define CREW_CHILD_CODE __attribute__((no_sanitize("address", "undefined", "thread"), noinline))

constexpr int max_stdio = 64;

struct child_args {
  const spawn_plan* plan;
  const char* file;
  char* const* argv;
  char* const* envp;
  const char* cwd;  // null: stay
  int stdio[max_stdio];
  int stdio_count;
  int parent;
  int failure;  // written by the child (shared memory) when a step fails
};

// The kernel's struct sigaction for rt_sigaction.
struct kernel_sigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  unsigned long mask;
};

[[noreturn]] CREW_CHILD_CODE void child_fail(child_args* a, long error) {
  a->failure = static_cast<int>(error);
  syscall(SYS_exit_group, 127);
  __builtin_unreachable();
}

CREW_CHILD_CODE long child_call(child_args* a, long rc) {
  if (rc < 0) child_fail(a, errno);
  return rc;
}

// Moves every stdio source out of the 0..n-1 range first, so that placing fd i
// never clobbers a source still needed for a later index; then closes all else.
CREW_CHILD_CODE void child_place_stdio(child_args* a) {
  const int n = a->stdio_count;
  int moved[max_stdio];
  for (int i = 0; i < n; ++i)
    moved[i] = a->stdio[i] < 0 ? -1 : static_cast<int>(child_call(a, syscall(SYS_fcntl, a->stdio[i], F_DUPFD_CLOEXEC, n)));
  for (int i = 0; i < n; ++i) {
    if (moved[i] < 0)
      syscall(SYS_close, i);
    else
      child_call(a, syscall(SYS_dup3, moved[i], i, 0));  // without O_CLOEXEC: kept across execve
  }
  // Nothing but stdio reaches the program.
  if (syscall(SYS_close_range, n, ~0U, 0) != 0)
    for (int fd = n; fd < 65536; ++fd) syscall(SYS_close, fd);
}

CREW_CHILD_CODE int child_main(void* raw) {
  auto* a = static_cast<child_args*>(raw);
  const spawn_plan& p = *a->plan;

  // Handlers installed by the parent must not run in the child: every
  // disposition back to the default (as libuv does), then signals unblocked.
  kernel_sigaction dfl{SIG_DFL, 0, nullptr, 0};
  for (int signum = 1; signum < 65; ++signum)
    if (signum != SIGKILL && signum != SIGSTOP) syscall(SYS_rt_sigaction, signum, &dfl, nullptr, 8);

  if (p.new_session) child_call(a, syscall(SYS_setsid));
  if (p.new_process_group && !p.new_session) child_call(a, syscall(SYS_setpgid, 0, 0));
  if (p.die_with_parent) {
    child_call(a, syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0));
    if (syscall(SYS_getppid) != a->parent) syscall(SYS_exit_group, 127);  // the parent is already gone
  }
  // Raw setgid/setuid change only the calling thread; the child has no other.
  if (p.gid) {
    syscall(SYS_setgroups, 0, nullptr);  // EPERM when not root: the setgid below decides
    child_call(a, syscall(SYS_setgid, *p.gid));
  }
  if (p.uid) child_call(a, syscall(SYS_setuid, *p.uid));
  if (a->cwd) child_call(a, syscall(SYS_chdir, a->cwd));
  child_place_stdio(a);

  unsigned long none = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, 8);
  syscall(SYS_execve, a->file, a->argv, a->envp);
  child_fail(a, errno);
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
  if (plan.stdio.size() > max_stdio) return uv_error(UV_EINVAL);
  if (!child_stack) child_stack = std::make_unique<char[]>(child_stack_size);
  std::vector<char*> argv = pointers(plan.argv);
  std::vector<char*> envp = pointers(plan.env);
  child_args args{};
  args.plan = &plan;
  args.file = plan.file.c_str();
  args.argv = argv.data();
  args.envp = envp.data();
  args.cwd = plan.cwd.empty() ? nullptr : plan.cwd.c_str();
  args.stdio_count = static_cast<int>(plan.stdio.size());
  for (int i = 0; i < args.stdio_count; ++i) args.stdio[i] = plan.stdio[static_cast<std::size_t>(i)];
  args.parent = getpid();

  // Block every signal so that no handler runs on the child's side of the shared
  // memory before it has reset them; the child unblocks before execve.
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  int pidfd = -1;
  void* stack_top = child_stack.get() + child_stack_size;
  pid_t pid = __clone(child_main, stack_top, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &args, &pidfd);
  if (pid < 0 && errno == EINVAL) {  // a kernel without CLONE_PIDFD
    pidfd = -1;
    pid = __clone(child_main, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  }
  int clone_error = errno;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);

  if (pid < 0) return uv_error(-clone_error);
  if (args.failure != 0) {
    // The child never reached the program: reap it now, it has exited.
    siginfo_t info;
    if (pidfd >= 0) {
      syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED, nullptr);
      raw_close(pidfd);
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

bool try_reap(const spawned& child, int& code, int& signal, bool keep) noexcept {
  siginfo_t info{};
  int flags = WEXITED | WNOHANG | (keep ? WNOWAIT : 0);
  int rc = child.pidfd >= 0 ? static_cast<int>(syscall(SYS_waitid, P_PIDFD, child.pidfd, &info, flags, nullptr))
                            : waitid(P_PID, static_cast<id_t>(child.pid), &info, flags);
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

void raw_close(int fd) noexcept { syscall(SYS_close, fd); }

int send_signal(const spawned& child, int signal) noexcept {
  if (child.pidfd >= 0) {
    if (syscall(SYS_pidfd_send_signal, child.pidfd, signal, nullptr, 0) == 0) return 0;
    if (errno != ENOSYS) return -errno;
  }
  return kill(child.pid, signal) == 0 ? 0 : -errno;
}

}  // namespace crew::detail
