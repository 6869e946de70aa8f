// The background reaper on Linux (detail/reaper.hpp). One thread polls the
// pidfds of the children handed to it and an eventfd that announces new ones,
// with a timeout at the nearest SIGKILL deadline. It is started on the first
// hand-off and ends when nothing is left, so a program that abandons no child
// never has it, and one that did is left with no thread and no fd.
#include "detail/reaper.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace crew::detail {
namespace {

using clock = std::chrono::steady_clock;

struct entry {
  orphan o;
  entry* next = nullptr;
};

// Shared by the thread, every hand-off and the exit hook. Never destroyed
// (static and trivially destructible): exit() may run while the thread still
// uses it. Entries are on the heap only while their child is pending; one still
// pending at exit is reachable from `pending`, so nothing counts as leaked.
struct shared_state {
  std::mutex mutex;
  entry* pending = nullptr;  // guarded by mutex
  bool running = false;      // a thread serves `pending`; guarded by mutex
  int wake_fd = -1;          // that thread's eventfd (-1: none could be made); guarded by mutex
};
static_assert(std::is_trivially_destructible_v<shared_state>);
constinit shared_state shared;

// Without an eventfd (the fd table was full) the thread looks for new
// children this often instead of being woken.
constexpr int unwoken_poll_ms = 50;

void send_sigkill(const orphan& o) noexcept {
  // The leader is not reaped before its deadline has passed, so the group's id
  // is still ours to signal.
  if (o.group)
    ::kill(-o.child.pid, SIGKILL);
  else
    send_signal(o.child, SIGKILL);
}

void reap(orphan& o) noexcept {
  int code = 0, signal = 0;
  try_reap(o.child, code, signal);  // fails only if someone else reaped it (waitpid(-1))
  raw_close(o.child.pidfd);
}

// The thread. Under the lock it settles what is due (deadlines passed, exits
// seen), then it polls without the lock. Only this thread removes entries, so
// the ones it polls stay valid while it waits.
void serve() {
  pthread_setname_np(pthread_self(), "crew-reaper");  // for ps, top and debuggers
  std::vector<pollfd> fds;
  std::vector<entry*> polled;
  std::unique_lock lock(shared.mutex);
  for (;;) {
    clock::time_point now = clock::now();
    std::optional<clock::time_point> next_kill;
    fds.assign(1, pollfd{shared.wake_fd, POLLIN, 0});
    polled.assign(1, nullptr);
    for (entry** link = &shared.pending; *link;) {
      orphan& o = (*link)->o;
      if (o.kill_at && *o.kill_at <= now) {
        send_sigkill(o);
        o.kill_at.reset();
      }
      if (o.exited && !(o.group && o.kill_at)) {
        reap(o);
        entry* done = *link;
        *link = done->next;
        delete done;
        continue;
      }
      if (o.kill_at && (!next_kill || *o.kill_at < *next_kill)) next_kill = o.kill_at;
      if (!o.exited) {
        fds.push_back(pollfd{o.child.pidfd, POLLIN, 0});
        polled.push_back(*link);
      }
      link = &(*link)->next;
    }
    if (!shared.pending) {
      if (shared.wake_fd >= 0) raw_close(shared.wake_fd);
      shared.wake_fd = -1;
      shared.running = false;
      return;
    }
    int timeout = -1;
    if (next_kill) timeout = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(*next_kill - now).count());
    if (shared.wake_fd < 0 && (timeout < 0 || timeout > unwoken_poll_ms)) timeout = unwoken_poll_ms;
    lock.unlock();
    int ready = ::poll(fds.data(), fds.size(), timeout);
    lock.lock();
    if (ready <= 0) continue;
    if (fds[0].revents) {
      std::uint64_t count;
      syscall(SYS_read, shared.wake_fd, &count, sizeof count);
    }
    // Any event on a pidfd (POLLIN at exit, POLLNVAL for a bad fd) ends its
    // wait: reap() copes with both, and nothing is polled again in a spin.
    for (std::size_t i = 1; i < fds.size(); ++i)
      if (fds[i].revents) polled[i]->o.exited = true;
  }
}

// exit() leaves the pending children to init, which reaps them; those that
// were being terminated get their SIGKILL now, so that none outlives us by
// ignoring kill_signal. Detached children are left alone.
void kill_at_exit() {
  std::lock_guard lock(shared.mutex);
  for (entry* e = shared.pending; e; e = e->next)
    if (e->o.kill_at) send_sigkill(e->o);
}

// fork() (without exec) copies the list but not the thread, and the children
// listed are the parent's, not the copy's. The lock is held across fork(), so
// that the copy's lock is not held by a thread the copy does not have; the
// copy then starts with an empty list.
void before_fork() { shared.mutex.lock(); }
void after_fork_in_parent() { shared.mutex.unlock(); }
void after_fork_in_child() {
  while (entry* e = shared.pending) {
    shared.pending = e->next;
    raw_close(e->o.child.pidfd);
    delete e;
  }
  if (shared.wake_fd >= 0) raw_close(shared.wake_fd);
  shared.wake_fd = -1;
  shared.running = false;
  shared.mutex.unlock();
}

// Installed before main(), while the program has a single thread.
[[maybe_unused]] const bool hooks_installed =
    std::atexit(kill_at_exit) == 0 && pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child) == 0;

void start_thread() noexcept {
  // Made, used and closed with raw system calls, like the pidfds (see raw_close).
  shared.wake_fd = static_cast<int>(syscall(SYS_eventfd2, 0, EFD_CLOEXEC | EFD_NONBLOCK));
  // The thread takes no signal meant for the process: it inherits a full mask.
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  try {
    std::thread(serve).detach();
    shared.running = true;
  } catch (const std::system_error&) {
    // No thread now (EAGAIN): the child stays listed, the next hand-off tries
    // again, and exit() sends the SIGKILL it is owed.
    if (shared.wake_fd >= 0) raw_close(shared.wake_fd);
    shared.wake_fd = -1;
  }
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
}

}  // namespace

void reap_in_background(orphan o) noexcept {
  std::lock_guard lock(shared.mutex);
  shared.pending = new entry{o, shared.pending};
  if (!shared.running) {
    start_thread();
  } else if (shared.wake_fd >= 0) {
    std::uint64_t one = 1;
    syscall(SYS_write, shared.wake_fd, &one, sizeof one);
  }
}

}  // namespace crew::detail
