// thread-pool: blocking work on libuv's thread pool while the loop stays free.
//
// The seeds' point about Node's thread pool: blocking operations (file reads,
// hashing, as Node's fs and crypto do) run on a few pool threads, their callbacks
// come back to the main thread through the event loop, and the loop keeps serving
// meanwhile. Here each file is read and hashed 200 times over (key stretching, as
// crypto.pbkdf2 does) on the pool, while a 5 ms interval shows the loop is never
// blocked.
//
//   thread-pool [FILE ...]      (default: a few large headers crew depends on)
#include <crew/crew.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

struct digest {
  std::size_t bytes = 0;
  std::uint64_t fnv1a = 0xcbf29ce484222325ULL;
};

// Blocking: runs on a pool thread. A missing file is an error value, not a throw.
crew::result<digest> read_and_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::error_code(ENOENT, std::generic_category());
  std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  digest d{.bytes = bytes.size()};
  for (int round = 0; round < 200; ++round)
    for (unsigned char c : bytes) d.fnv1a = (d.fnv1a ^ c) * 0x100000001b3ULL;
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> files(argv + 1, argv + argc);
  if (files.empty())
    files = {"/usr/include/nlohmann/json.hpp", "/usr/include/uv.h", "/usr/share/include/llhttp/llhttp.h",
             "/etc/services", "/no/such/file"};

  crew::loop& loop = crew::loop::current();
  const std::thread::id main_thread = std::this_thread::get_id();
  int ticks = 0;
  crew::timer heartbeat = crew::scoped_interval(5ms, [&] { ++ticks; });
  std::size_t pending = files.size();
  bool callbacks_on_main_thread = true;

  std::printf("hashing %zu files on libuv's thread pool (UV_THREADPOOL_SIZE, default 4 threads)\n", files.size());
  for (const std::string& path : files) {
    crew::queue_work([path] { return read_and_hash(path); },
                           [&, path](crew::result<crew::result<digest>> done) {
                             callbacks_on_main_thread &= std::this_thread::get_id() == main_thread;
                             const crew::result<digest>& d = done.value();
                             if (d)
                               std::printf("  %-40s %9zu bytes  fnv1a %016llx\n", path.c_str(), d->bytes,
                                           static_cast<unsigned long long>(d->fnv1a));
                             else
                               std::printf("  %-40s error %s\n", path.c_str(), crew::error_name(d.error()).c_str());
                             if (--pending == 0) heartbeat.stop();
                           });
  }
  loop.run();
  std::printf("every callback ran on the main thread: %s\n", callbacks_on_main_thread ? "yes" : "no");
  std::printf("the main loop ticked %d times while the pool worked\n", ticks);
  return callbacks_on_main_thread ? 0 : 1;
}
