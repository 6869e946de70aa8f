#include "crew/worker_threads.hpp"

#include <pthread.h>

#include <atomic>
#include <mutex>
#include <system_error>
#include <vector>

#include "detail/port_core.hpp"
#include "detail/thread_context.hpp"

extern char** environ;

namespace crew {
namespace detail {

struct worker_state;

// What the parent's worker_state and the worker's thread share. Every field
// not marked otherwise is guarded by `mutex`.
struct worker_shared {
  std::mutex mutex;
  worker_state* parent = nullptr;      // woken on online and on finish; null once the parent side is gone
  crew::loop* worker_loop = nullptr;   // set while the worker's loop takes posts
  bool online = false;
  bool terminated = false;
  bool finished = false;
  int exit_code = 0;                   // valid once finished
  std::exception_ptr error;            // valid once finished
  std::string error_message;
  std::stop_source stop;               // thread-safe by itself

  // Handed to the thread when it starts; the thread owns them afterwards.
  worker::entry_function entry;
  worker_options options;
  message_port port;
  int thread_id = 0;
  uv_thread_t thread{};
};

// The worker's own view of itself, for the module-level functions.
struct worker_context {
  int thread_id;
  message data;
  message_port port;
  std::stop_source stop;
  std::optional<std::map<std::string, std::string>> env;
  std::optional<int> exit_code;  // set by exit_worker()
  crew::loop* loop;
};

namespace {
thread_local worker_context* current = nullptr;
std::atomic<int> last_thread_id{0};
}  // namespace

// The worker as its parent's loop sees it: a uv_async_t the thread wakes when
// it comes online and when it has finished.
struct worker_state final : handle_state {
  explicit worker_state(crew::loop& l) : handle_state(l) {}
  // exited()'s awaiters that the exit never reached: the worker's owner went first.
  ~worker_state() override {
    exit_waiters.complete_all(uv_error(UV_ECANCELED));
  }
  uv_handle_t* uv() noexcept override { return reinterpret_cast<uv_handle_t*>(&async); }
  void on_closing() noexcept override;

  void on_event();
  void emit_online();
  void request_stop() noexcept;
  void join() noexcept;
  void report_messageerror(std::error_code error) { port.report_messageerror(error); }

  uv_async_t async;
  std::shared_ptr<worker_shared> shared;
  message_port port;  // the parent's end of the worker's channel
  unique_function<void()> on_online;
  unique_function<void(worker_error_event)> on_error;
  unique_function<void(int)> on_exit;
  std::vector<unique_function<void(int)>> terminated;  // terminate()'s callbacks
  waiters<result<int>> exit_waiters;  // exited()'s
  bool online_emitted = false;
  bool joined = false;
};

void worker_state::emit_online() {
  if (online_emitted) return;
  online_emitted = true;
  if (on_online) loop.invoke(on_online);
}

void worker_state::request_stop() noexcept {
  std::lock_guard lock(shared->mutex);
  shared->terminated = true;
  shared->stop.request_stop();
  if (shared->worker_loop) shared->worker_loop->post([] { loop::current().stop(); });
}

void worker_state::join() noexcept {
  if (joined) return;
  joined = true;
  uv_thread_join(&shared->thread);
}

void worker_state::on_event() {
  bool online, finished;
  {
    std::lock_guard lock(shared->mutex);
    online = shared->online;
    finished = shared->finished;
  }
  if (online) emit_online();
  if (!finished || closing) return;
  join();
  // Messages first: the worker closed its port before it finished, so all it
  // posted is queued on ours by now.
  port.deliver_queued();
  port.close();
  if (closing) return;
  int code = shared->exit_code;  // the thread has finished: no lock needed
  if (owner) static_cast<worker*>(owner)->exit_code_ = code;
  if (shared->error && on_error) loop.invoke(on_error, worker_error_event{shared->error, shared->error_message});
  auto exit_fn = std::move(on_exit);
  auto done = std::move(terminated);
  auto waiters = std::move(exit_waiters);
  close();  // the worker no longer keeps the loop alive; no callback after this
  if (exit_fn) loop.invoke(exit_fn, code);
  for (auto& fn : done) loop.invoke(fn, code);
  waiters.complete_all(code);
}

void worker_state::on_closing() noexcept {
  {
    std::lock_guard lock(shared->mutex);
    shared->parent = nullptr;
  }
  if (joined) return;
  // Destroyed while running (its owner, or its loop, went first): stop it and
  // wait, so that nothing of it outlives its owner.
  request_stop();
  port.close();
  join();
}

namespace {

std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}

void run_worker(void* arg) {
  std::shared_ptr<worker_shared> shared(std::move(*static_cast<std::shared_ptr<worker_shared>*>(arg)));
  delete static_cast<std::shared_ptr<worker_shared>*>(arg);
  if (!shared->options.name.empty()) pthread_setname_np(pthread_self(), shared->options.name.substr(0, 15).c_str());

  worker::entry_function entry = std::move(shared->entry);
  worker_context context{shared->thread_id, std::move(shared->options.data), std::move(shared->port), shared->stop,
                         std::move(shared->options.env), std::nullopt, nullptr};
  // What the rest of crew reads about this thread: its children's environment
  // and the token that ends its waits.
  this_thread_context() = {context.env ? &*context.env : nullptr, context.stop.get_token()};
  int code = 0;
  std::exception_ptr error;
  try {
    crew::loop loop;  // the thread's first loop: its current one
    context.loop = &loop;
    current = &context;
    {
      std::lock_guard lock(shared->mutex);
      shared->worker_loop = &loop;
      shared->online = true;
      if (shared->parent) uv_async_send(&shared->parent->async);
    }
    try {
      if (!context.stop.stop_requested()) code = entry();
      if (!context.stop.stop_requested()) loop.run();
    } catch (...) {
      error = std::current_exception();
      code = 1;
    }
    {
      std::lock_guard lock(shared->mutex);
      shared->worker_loop = nullptr;
      if (shared->terminated && !error) code = 1;
    }
    if (context.exit_code) code = *context.exit_code;
    context.port.close();  // the parent sees the end after every message posted before it
    entry = nullptr;       // the function's captures die on the worker's thread, with its loop still there
    current = nullptr;
  } catch (...) {  // no loop could be made (EMFILE)
    error = std::current_exception();
    code = 1;
    current = nullptr;
  }
  context.port.close();
  this_thread_context() = {};
  std::lock_guard lock(shared->mutex);
  shared->finished = true;
  shared->exit_code = code;
  if (error) {
    shared->error = error;
    shared->error_message = describe(error);
  }
  if (shared->parent) uv_async_send(&shared->parent->async);
}

}  // namespace
}  // namespace detail

worker::worker(entry_function entry, worker_options options, loop& l, int) : loop_(&l) {
  auto* s = new detail::worker_state(l);
  uv_async_init(l.native(), &s->async, [](uv_async_t* a) { static_cast<detail::worker_state*>(a->data)->on_event(); });
  adopt(s);  // from here on, closing the handle cleans up

  message_channel channel;
  channel.port1.set_spin(options.spin);
  channel.port2.set_spin(options.spin);
  s->port = std::move(channel.port1);
  thread_id_ = ++detail::last_thread_id;

  auto shared = std::make_shared<detail::worker_shared>();
  shared->parent = s;
  shared->entry = std::move(entry);
  shared->options = std::move(options);
  shared->port = std::move(channel.port2);
  shared->thread_id = thread_id_;
  s->shared = shared;

  uv_thread_options_t thread_options{};
  if (shared->options.stack_size > 0) {
    thread_options.flags = UV_THREAD_HAS_STACK_SIZE;
    thread_options.stack_size = shared->options.stack_size;
  }
  auto* arg = new std::shared_ptr<detail::worker_shared>(shared);
  if (int rc = uv_thread_create_ex(&shared->thread, &thread_options, &detail::run_worker, arg)) {
    delete arg;
    s->joined = true;  // there is no thread to wait for
    close();
    throw std::system_error(uv_error(rc), "worker");
  }
}

worker::~worker() = default;

detail::worker_state* worker::state() noexcept { return state_as<detail::worker_state>(); }

std::error_code worker::post_message(message m) {
  auto* s = state_as<detail::worker_state>();
  return s ? s->port.post_message(std::move(m)) : make_error_code(errc::closed_message_port);
}

void worker::on_online(unique_function<void()> fn) {
  if (auto* s = state_as<detail::worker_state>()) s->on_online = std::move(fn);
}

void worker::on_message(message_port::message_callback fn) {
  auto* s = state_as<detail::worker_state>();
  if (!s) return;
  // A message proves the worker is online: its online event comes first, even
  // when the message is seen before the thread's wake-up.
  s->port.on_message([s, fn = std::move(fn)](message m) mutable {
    s->emit_online();
    fn(std::move(m));
  });
  // The worker itself keeps the loop alive until exit; the port need not.
  s->port.unref();
}

void worker::on_messageerror(message_port::error_callback fn) {
  if (auto* s = state_as<detail::worker_state>()) s->port.on_messageerror(std::move(fn));
}

void worker::on_error(unique_function<void(worker_error_event)> fn) {
  if (auto* s = state_as<detail::worker_state>()) s->on_error = std::move(fn);
}

void worker::on_exit(unique_function<void(int)> fn) {
  if (auto* s = state_as<detail::worker_state>()) s->on_exit = std::move(fn);
}

awaitable<result<int>> worker::exited() {
  auto* s = state_as<detail::worker_state>();
  auto waiter = std::make_shared<detail::operation<result<int>>>(loop_ ? *loop_ : loop::current());
  if (exit_code_)
    waiter->complete(*exit_code_);
  else if (s)
    s->exit_waiters.add(waiter);
  else
    waiter->complete(uv_error(UV_ECANCELED));
  return awaitable<result<int>>(std::move(waiter));
}

void worker::terminate(unique_function<void(int)> done) {
  auto* s = state_as<detail::worker_state>();
  if (!s) {
    if (done && loop_ && exit_code_)
      loop_->later([done = std::move(done), code = *exit_code_]() mutable { done(code); });
    return;
  }
  if (done) s->terminated.push_back(std::move(done));
  s->request_stop();
  s->port.close();
}

namespace detail {
void report_worker_messageerror(worker_state* state, std::error_code error) { state->report_messageerror(error); }
}  // namespace detail

bool is_main_thread() noexcept { return detail::current == nullptr; }

message_port* parent_port() noexcept { return detail::current ? &detail::current->port : nullptr; }

const message& worker_data() noexcept {
  static const message null;
  return detail::current ? detail::current->data : null;
}

int thread_id() noexcept { return detail::current ? detail::current->thread_id : 0; }

std::stop_token worker_stop_token() noexcept { return detail::this_thread_context().stop; }

std::map<std::string, std::string> worker_env() {
  if (const auto* env = detail::this_thread_context().env) return *env;
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    std::size_t eq = entry.find('=');
    if (eq != std::string_view::npos) env.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return env;
}

void exit_worker(int code) noexcept {
  detail::worker_context* context = detail::current;
  if (!context) return;
  context->exit_code = code;
  context->stop.request_stop();
  context->loop->stop();
}

}  // namespace crew
