#include "crew/child_process.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "crew/error.hpp"
#include "crew/timer.hpp"
#include "detail/ipc_state.hpp"
#include "detail/reaper.hpp"
#include "detail/spawn.hpp"
#include "detail/stop_relay.hpp"
#include "detail/stream_state.hpp"
#include "detail/thread_context.hpp"

extern char** environ;

namespace crew {

struct child_process::state final : detail::handle_state {
  using handle_state::handle_state;
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&handle); }

  // A started child is watched by polling its pidfd; a failed start uses a
  // zero-delay timer instead, to deliver error and close on the loop.
  union {
    uv_poll_t poll;
    uv_timer_t timer;
  } handle;

  // A group leader is reaped only when this block closes: while it is a
  // zombie its id, which is its group's, cannot go to another process, so
  // signalling the group (whose members may outlive the leader) never reaches
  // a stranger. The pidfd stays open until the poll handle is closed: libuv
  // unregisters the fd number then, which by then could be another handle's.
  detail::spawned child;
  std::error_code spawn_error;
  std::optional<exit_status> status;
  int open_pipes = 0;
  bool killed = false;
  bool leads_group = false;
  bool detached = false;
  bool reaped = false;
  bool finished = false;  // closing after the close event, not abandoned
  int kill_signal = SIGTERM;
  std::chrono::milliseconds kill_timeout{0};
  std::optional<std::chrono::steady_clock::time_point> kill_at;  // the SIGKILL that terminate() armed
  // The pipes' closed hooks reach this block through here: a stream moved out
  // of the child_process may close after the block is gone.
  std::shared_ptr<state*> pipes_see;
  event_callback spawn_event;
  error_callback error_event;
  exit_callback exit_event;
  exit_callback close_event;
  std::optional<timer> spawn_notice;  // the spawn event, on the next loop iteration
  std::optional<timer> timeout;
  std::optional<timer> escalation;  // SIGKILL at kill_at
  std::optional<detail::stop_relay> stop;
  // exited()'s awaiters: told at exit, or of the spawn's failure; ECANCELED
  // (once the call that closed the block has returned) when it closes first.
  detail::waiters<result<exit_status>> exit_waiters;
  std::string program;  // a start that failed: what it was, should nobody hear of it

  ~state() override {
    notify_exit(uv_error(UV_ECANCELED));
    if (child.pidfd >= 0) detail::raw_close(child.pidfd);
  }

  void notify_exit(const result<exit_status>& outcome) {
    exit_waiters.complete_all(outcome);
  }

  bool attached() const noexcept { return owner != nullptr && !closing; }

  child_process* owner_object() const noexcept { return static_cast<child_process*>(owner); }

  bool running() const noexcept { return child.pid > 0 && !status; }

  void record(exit_status s) noexcept {
    status = s;
    if (auto* o = owner_object()) o->status_ = s;
  }

  void exited(exit_status s) {
    record(s);
    timeout.reset();
    stop.reset();
    if (!leads_group) escalation.reset();  // a group may outlive its leader
    // As Node's flushStdio: output nobody reads is pulled through, so that its
    // end, and the close event, can come. Unlike Node, crew keeps it for a
    // later reader: what the dead child left in the pipe is bounded by the pipe.
    if (auto* o = owner_object()) o->take_the_rest_of_the_output();
    // One-shot events are moved out while they run: they may destroy the child
    // object, or (as exec does) hold the last reference to what owns it.
    exit_callback on_exit = std::move(exit_event);
    if (on_exit && attached()) loop.invoke(on_exit, s);
    notify_exit(s);
    maybe_close();
  }

  void reap() noexcept {
    int code = 0, sig = 0;
    detail::try_reap(child, code, sig);
    detail::raw_close(child.pidfd);
    child.pidfd = -1;
  }

  void pipe_closed() noexcept {
    --open_pipes;
    maybe_close();
  }

  void maybe_close() noexcept {
    if (closing || !status || open_pipes > 0) return;
    exit_callback on_close = std::move(close_event);
    if (on_close && attached()) loop.invoke(on_close, *status);
    finished = true;
    close();  // the owner keeps pid, status and killed itself
  }

  // The block closes: after the close event, or abandoned (close(), the
  // owner's destruction, the loop's). An abandoned child still running, or a
  // group whose leader exited, is terminated and goes to the reaper.
  void on_closing() noexcept override {
    if (pipes_see) *pipes_see = nullptr;
    spawn_notice.reset();
    timeout.reset();
    escalation.reset();
    stop.reset();
    if (child.pid <= 0 || reaped) return;
    bool abandoned = !finished && !detached;
    if (!abandoned && status) return reap();
    if (abandoned && !kill_at) {
      (void)signal_tree(kill_signal);
      kill_at = std::chrono::steady_clock::now() + kill_timeout;
    }
    // A detached child is only waited for, unless terminate() armed its SIGKILL.
    detail::reap_in_background({child, kill_at, leads_group, status.has_value()});
    child.pidfd = -1;
  }

  std::error_code signal(int signum) {
    if (!running()) return uv_error(UV_ESRCH);
    if (int rc = detail::send_signal(child, signum)) return uv_error(rc);
    note_killed(signum != 0);
    return {};
  }

  std::error_code signal_group(int signum) {
    if (child.pid <= 0) return uv_error(UV_ESRCH);
    if (!leads_group) return uv_error(UV_EINVAL);
    if (::kill(-child.pid, signum) < 0) return uv_error(-errno);
    note_killed(signum != 0);
    return {};
  }

  std::error_code signal_tree(int signum) { return leads_group ? signal_group(signum) : signal(signum); }

  std::error_code terminate() {
    if (std::error_code ec = signal_tree(kill_signal)) return ec;
    if (!escalation && kill_signal != SIGKILL) {
      kill_at = std::chrono::steady_clock::now() + kill_timeout;
      escalation.emplace(scoped_timeout(kill_timeout, [this] { (void)signal_tree(SIGKILL); }, loop));
    }
    return {};
  }

  void note_killed(bool yes) noexcept {
    if (!yes) return;
    killed = true;
    if (auto* o = owner_object()) o->killed_ = true;
  }
};

namespace {

constexpr const char* default_path = "/usr/local/bin:/usr/bin:/bin";  // when the environment has no PATH

// Builds the child's environment: the base (given, the calling worker's, or
// ours) with extra entries. The common case, our own environment unchanged, is
// copied as it is.
std::vector<std::string> make_environment(const std::optional<environment>& given, const environment& extra,
                                          std::string& path) {
  const environment* env = given ? &*given : detail::this_thread_context().env;
  std::vector<std::string> entries;
  if (!env && extra.empty()) {
    for (char** e = environ; e && *e; ++e) entries.emplace_back(*e);
    const char* ours = std::getenv("PATH");
    path = ours ? ours : default_path;
    return entries;
  }
  environment merged;
  if (env) {
    merged = *env;
  } else {
    for (char** e = environ; e && *e; ++e) {
      const char* eq = std::strchr(*e, '=');
      if (eq) merged.emplace(std::string(*e, static_cast<std::size_t>(eq - *e)), std::string(eq + 1));
    }
  }
  for (const auto& [name, value] : extra) merged[name] = value;
  auto it = merged.find("PATH");
  path = it != merged.end() ? it->second : default_path;
  entries.reserve(merged.size());
  for (const auto& [name, value] : merged) entries.push_back(name + "=" + value);
  return entries;
}

// The descriptors for the child's stdio: the child's ends go into plan.stdio,
// ours (for pipes) into parent_ends; every fd we opened is listed in to_close.
struct stdio_fds {
  std::vector<int> parent_ends;
  int channel_index = -1;  // the stdio index of the IPC channel
  std::vector<int> to_close;
  ~stdio_fds() {
    for (int fd : to_close) ::close(fd);
  }
};

constexpr int pipe_size = 1 << 20;  // /proc/sys/fs/pipe-max-size's default; beyond it the call just fails

std::error_code open_stdio(const std::vector<stdio>& entries, std::vector<int>& child, stdio_fds& fds) {
  child.assign(entries.size(), -1);
  fds.parent_ends.assign(entries.size(), -1);
  int null_fd = -1;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    switch (entries[i].how) {
      case stdio::kind::pipe: {
        int ends[2];
        if (pipe2(ends, O_CLOEXEC) < 0) return uv_error(-errno);
        bool child_reads = i == 0;
        // A larger pipe lets a fast writer run longer between context switches.
        if (!child_reads) fcntl(ends[0], F_SETPIPE_SZ, pipe_size);
        child[i] = child_reads ? ends[0] : ends[1];
        fds.parent_ends[i] = child_reads ? ends[1] : ends[0];
        fds.to_close.push_back(child[i]);
        fds.to_close.push_back(fds.parent_ends[i]);
        break;
      }
      case stdio::kind::inherit:
        child[i] = static_cast<int>(i);
        break;
      case stdio::kind::ignore:
        if (null_fd < 0) {  // one /dev/null serves every ignored entry
          null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
          if (null_fd < 0) return uv_error(-errno);
          fds.to_close.push_back(null_fd);
        }
        child[i] = null_fd;
        break;
      case stdio::kind::fd:
        child[i] = entries[i].fd;
        break;
      case stdio::kind::ipc: {
        if (fds.channel_index >= 0) return uv_error(UV_EINVAL);  // Node: ERR_IPC_ONE_PIPE
        int ends[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) < 0) return uv_error(-errno);
        child[i] = ends[0];
        fds.parent_ends[i] = ends[1];
        fds.channel_index = static_cast<int>(i);
        fds.to_close.push_back(ends[0]);
        fds.to_close.push_back(ends[1]);
        break;
      }
    }
  }
  return {};
}

std::string join_command(const std::string& command, const std::vector<std::string>& args) {
  std::string line = command;
  for (const auto& a : args) line += " " + a;
  return line;
}

}  // namespace

child_process::child_process(child_process&& other) noexcept
    : handle_owner(std::move(other)),
      stdio_(std::move(other.stdio_)),
      channel_(std::move(other.channel_)),
      pid_(std::exchange(other.pid_, 0)),
      status_(std::exchange(other.status_, std::nullopt)),
      killed_(std::exchange(other.killed_, false)) {}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    close();
    stdio_ = std::move(other.stdio_);
    channel_ = std::move(other.channel_);
    pid_ = std::exchange(other.pid_, 0);
    status_ = std::exchange(other.status_, std::nullopt);
    killed_ = std::exchange(other.killed_, false);
    handle_owner::operator=(std::move(other));
  }
  return *this;
}

child_process::~child_process() { close(); }

void child_process::close() noexcept {
  // The block first: it is abandoned (docs/reaping.md), and the pipes closing
  // next cannot make it run its close event.
  handle_owner::close();
  stdio_.clear();
  channel_.close();
}

void child_process::adopt_pipe(std::size_t index, int fd) {
  auto* s = state_as<state>();
  if (index >= stdio_.size()) stdio_.resize(index + 1);
  stdio_[index] = stream(s->loop, fd);
  // As in Node, close waits for the pipes the child writes, not for its stdin,
  // which only we can close.
  if (index == 0) return;
  ++s->open_pipes;
  auto* pipe = stdio_[index].state_as<detail::stream_state>();
  // Counted once read to its end: bytes kept for a late reader do not hold
  // the close event back.
  pipe->ended_hook = [see = s->pipes_see] {
    if (*see) (*see)->pipe_closed();
  };
  pipe->start_reading();
}

void child_process::take_the_rest_of_the_output() noexcept {
  for (std::size_t i = 1; i < stdio_.size(); ++i) {
    auto* pipe = stdio_[i].state_as<detail::stream_state>();
    if (!pipe || pipe->data) continue;
    pipe->read_limit = stream::high_water_mark + static_cast<std::size_t>(pipe_size);
    pipe->start_reading();
  }
}

void child_process::adopt_channel(int fd, ipc_options limits) {
  auto* s = state_as<state>();
  channel_ = ipc_channel(s->loop, fd, limits);
  ++s->open_pipes;  // as in Node, close also waits for the channel
  channel_.state_as<detail::ipc_state>()->closed_hook = [see = s->pipes_see] {
    if (*see) (*see)->pipe_closed();
  };
}

pid_t child_process::pid() const noexcept { return pid_; }

void child_process::on_spawn(event_callback fn) {
  if (auto* s = state_as<state>()) s->spawn_event = std::move(fn);
}
void child_process::on_error(error_callback fn) {
  if (auto* s = state_as<state>()) s->error_event = std::move(fn);
}
void child_process::on_exit(exit_callback fn) {
  if (auto* s = state_as<state>()) s->exit_event = std::move(fn);
}
void child_process::on_close(exit_callback fn) {
  if (auto* s = state_as<state>()) s->close_event = std::move(fn);
}

namespace {

bool valid_signal(int signal) noexcept { return signal >= 0 && signal < NSIG; }

}  // namespace

std::error_code child_process::kill(int signal) {
  if (!valid_signal(signal)) return uv_error(UV_EINVAL);
  auto* s = state_as<state>();
  return s ? s->signal(signal) : uv_error(UV_ESRCH);
}

std::error_code child_process::kill_tree(int signal) {
  if (!valid_signal(signal)) return uv_error(UV_EINVAL);
  auto* s = state_as<state>();
  return s ? s->signal_group(signal) : uv_error(UV_ESRCH);
}

std::error_code child_process::terminate() {
  auto* s = state_as<state>();
  return s ? s->terminate() : uv_error(UV_ESRCH);
}

bool child_process::killed() const noexcept { return killed_; }

std::optional<exit_status> child_process::status() const noexcept { return status_; }

awaitable<result<exit_status>> child_process::exited() {
  auto* s = state_as<state>();
  auto waiter = std::make_shared<detail::operation<result<exit_status>>>(s ? s->loop : loop::current());
  if (status_)
    waiter->complete(pid_ ? result<exit_status>(*status_) : result<exit_status>(uv_error(status_->code)));
  else if (s)
    s->exit_waiters.add(waiter);
  else
    waiter->complete(uv_error(UV_ECANCELED));
  return awaitable<result<exit_status>>(std::move(waiter));
}

child_process spawn(std::string command, std::vector<std::string> args, process_options options, loop& l) {
  child_process result;
  auto* s = new child_process::state(l);
  s->leads_group = options.detached || options.process_group;
  s->detached = options.detached;
  s->kill_signal = options.kill_signal;
  s->kill_timeout = options.kill_timeout;

  detail::spawn_plan plan;
  std::string path;
  plan.env = make_environment(options.env, options.extra_env, path);
  if (options.shell.empty()) {
    plan.argv.push_back(options.argv0.empty() ? command : options.argv0);
    for (auto& a : args) plan.argv.push_back(std::move(a));
  } else {
    plan.argv = {options.argv0.empty() ? options.shell : options.argv0, "-c", join_command(command, args)};
    command = options.shell;
  }
  plan.cwd = std::move(options.cwd);
  plan.new_session = options.detached;
  plan.new_process_group = options.process_group;
  plan.die_with_parent = options.die_with_parent;
  plan.uid = options.uid;
  plan.gid = options.gid;

  if (options.stdio.empty()) options.stdio = {stdio::pipe(), stdio::pipe(), stdio::pipe()};
  stdio_fds fds;
  std::error_code failure = open_stdio(options.stdio, plan.stdio, fds);
  if (fds.channel_index >= 0) {
    plan.env.push_back("NODE_CHANNEL_FD=" + std::to_string(fds.channel_index));
    plan.env.push_back("NODE_CHANNEL_SERIALIZATION_MODE=json");
  }
  if (!failure) {
    if (auto file = detail::find_program(command, path))
      plan.file = std::move(*file);
    else
      failure = file.error();
  }
  if (!failure) {
    if (auto started = detail::spawn(plan))
      s->child = *started;
    else
      failure = started.error();
    if (!failure && s->child.pidfd < 0) {
      // Without a pidfd (Linux before 5.3) crew cannot watch the exit: refuse.
      detail::send_signal(s->child, SIGKILL);
      int code, sig;
      while (!detail::try_reap(s->child, code, sig)) usleep(1000);
      s->child = {};
      failure = uv_error(UV_ENOSYS);
    }
  }

  if (failure) {
    // Node: error, then close, on the loop and never inside spawn; no exit
    // event. A channel that was set up is kept, as Node keeps it: it reads the
    // end of the stream (the child's end is closed with `fds`), and its
    // disconnect event comes between error and close, so that whoever waits
    // on the channel hears of the failure too.
    s->spawn_error = failure;
    s->program = command;
    uv_timer_init(l.native(), &s->handle.timer);
    result.adopt(s);
    if (fds.channel_index >= 0) {
      int fd = fds.parent_ends[static_cast<std::size_t>(fds.channel_index)];
      std::erase(fds.to_close, fd);
      s->pipes_see = std::make_shared<child_process::state*>(s);
      result.adopt_channel(fd, options.ipc);
    }
    uv_timer_start(&s->handle.timer, [](uv_timer_t* t) {
      auto* st = static_cast<child_process::state*>(t->data);
      if (st->error_event && st->attached())
        st->loop.invoke(st->error_event, st->spawn_error);
      else if (st->attached() && st->exit_waiters.empty())
        // Where Node would crash on an 'error' event nobody listens to, crew says so and goes on.
        std::fprintf(stderr, "crew: cannot start %s: %s (the child_process has no on_error handler)\n",
                     st->program.c_str(), error_name(st->spawn_error).c_str());
      st->record({st->spawn_error.value(), 0});  // Node: the negative error number
      st->notify_exit(st->spawn_error);
      st->maybe_close();
    }, 0, 0);
    return result;
  }

  uv_poll_init(l.native(), &s->handle.poll, s->child.pidfd);
  result.adopt(s);
  result.pid_ = s->child.pid;
  uv_poll_start(&s->handle.poll, UV_READABLE, [](uv_poll_t* p, int, int) {
    auto* st = static_cast<child_process::state*>(p->data);
    int code = 0, sig = 0;
    if (!detail::try_reap(st->child, code, sig, st->leads_group)) return;
    uv_poll_stop(p);
    st->reaped = !st->leads_group;
    st->exited({code, sig});
  });

  // Our ends of the pipes become streams; the child's ends close with `fds`.
  for (std::size_t i = 0; i < fds.parent_ends.size(); ++i) {
    int fd = fds.parent_ends[i];
    if (fd < 0) continue;
    std::erase(fds.to_close, fd);
    if (!s->pipes_see) s->pipes_see = std::make_shared<child_process::state*>(s);
    if (static_cast<int>(i) == fds.channel_index)
      result.adopt_channel(fd, options.ipc);
    else
      result.adopt_pipe(i, fd);
  }

  if (options.timeout.count() > 0)
    s->timeout.emplace(scoped_timeout(options.timeout, [s] { (void)s->terminate(); }, l));
  if (options.stop.stop_possible())
    s->stop.emplace(l, std::move(options.stop), [s] { (void)s->terminate(); });
  // The spawn event, on the loop like every event: a timer of the block's own,
  // so it can never fire after the block is gone, and before any exit event.
  s->spawn_notice.emplace(scoped_timeout(timer::duration::zero(), [s] {
    if (s->spawn_event && s->attached()) s->loop.invoke(s->spawn_event);
  }, l));
  return result;
}

child_process fork(std::string module, std::vector<std::string> args, process_options options, loop& l) {
  std::string command = std::move(module);
  if (!options.exec_path.empty()) {
    std::vector<std::string> full = std::move(options.exec_args);
    full.push_back(std::move(command));
    for (auto& a : args) full.push_back(std::move(a));
    args = std::move(full);
    command = std::move(options.exec_path);
  }
  if (options.stdio.empty()) {
    crew::stdio shared = options.silent ? crew::stdio::pipe() : crew::stdio::inherit();
    options.stdio = {shared, shared, shared};
  }
  if (std::none_of(options.stdio.begin(), options.stdio.end(), [](crew::stdio e) { return e.how == stdio::kind::ipc; }))
    options.stdio.push_back(crew::stdio::ipc());
  options.shell.clear();
  return spawn(std::move(command), std::move(args), std::move(options), l);
}

}  // namespace crew
