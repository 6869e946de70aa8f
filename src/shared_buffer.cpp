#include "crew/shared_buffer.hpp"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <stdexcept>
#include <system_error>

#include "detail/thread_context.hpp"

namespace crew {

shared_buffer::mapping::~mapping() {
  if (bytes) munmap(bytes, size);
  if (fd >= 0) ::close(fd);
}

shared_buffer::shared_buffer(std::size_t size) {
  auto m = std::make_shared<mapping>();
  m->fd = memfd_create("crew-shared-buffer", MFD_CLOEXEC);
  if (m->fd < 0) throw std::system_error(uv_error(-errno), "memfd_create");
  if (ftruncate(m->fd, static_cast<off_t>(size)) != 0) throw std::system_error(uv_error(-errno), "ftruncate");
  if (size > 0) {
    void* bytes = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
    if (bytes == MAP_FAILED) throw std::system_error(uv_error(-errno), "mmap");
    m->bytes = static_cast<std::byte*>(bytes);
    m->size = size;
  }
  mapping_ = std::move(m);
}

result<shared_buffer> shared_buffer::from_fd(int fd) noexcept {
  auto fail = [fd](int error) -> result<shared_buffer> {
    if (fd >= 0) ::close(fd);
    return uv_error(-error);
  };
  struct stat info {};
  if (fstat(fd, &info) != 0) return fail(errno);
  if (!S_ISREG(info.st_mode)) return fail(EINVAL);
  std::shared_ptr<mapping> m;
  try {
    m = std::make_shared<mapping>();
  } catch (const std::bad_alloc&) {
    return fail(ENOMEM);
  }
  auto size = static_cast<std::size_t>(info.st_size);
  if (size > 0) {
    void* bytes = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (bytes == MAP_FAILED) return fail(errno);
    m->bytes = static_cast<std::byte*>(bytes);
    m->size = size;
  }
  m->fd = fd;
  shared_buffer buffer;
  buffer.mapping_ = std::move(m);
  return buffer;
}

namespace detail {

void check_view(std::size_t buffer_size, std::size_t byte_offset, std::size_t length, std::size_t cell_size) {
  if (byte_offset % cell_size != 0) throw std::invalid_argument("atomic_view offset is not a multiple of the cell size");
  if (byte_offset > buffer_size || length > (buffer_size - byte_offset) / cell_size)
    throw std::out_of_range("atomic_view past the end of its buffer");
}

namespace {

// Not FUTEX_PRIVATE_FLAG: the word may be mapped by other processes too.
long futex(const std::uint32_t* word, int op, std::uint32_t value, const timespec* timeout) noexcept {
  return syscall(SYS_futex, word, op, value, timeout, nullptr, 0);
}

timespec to_timespec(std::chrono::nanoseconds d) noexcept {
  return {static_cast<time_t>(d.count() / 1'000'000'000), static_cast<long>(d.count() % 1'000'000'000)};
}

}  // namespace

wait_result futex_wait(const std::uint32_t* word, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept {
  using clock = std::chrono::steady_clock;
  // A worker sleeps in slices so that terminate() can end the wait: waking the
  // word instead would wake the other waiters too, and they could not tell.
  constexpr std::chrono::nanoseconds slice = std::chrono::milliseconds(10);
  const bool stoppable = this_thread_context().stop.stop_possible();
  const bool forever = timeout == std::chrono::nanoseconds::max();
  const clock::time_point deadline = forever ? clock::time_point::max() : clock::now() + timeout;
  for (;;) {
    if (stoppable && this_thread_context().stop.stop_requested()) return wait_result::stopped;
    std::chrono::nanoseconds left = forever ? std::chrono::nanoseconds::max() : deadline - clock::now();
    if (left <= std::chrono::nanoseconds::zero()) return wait_result::timed_out;
    if (stoppable) left = std::min(left, slice);
    timespec ts = to_timespec(left);
    bool sliced = stoppable && left == slice;
    long rc = futex(word, FUTEX_WAIT, expected, forever && !stoppable ? nullptr : &ts);
    if (rc == 0) return wait_result::ok;
    if (errno == EAGAIN) return wait_result::not_equal;  // changed between the check and the sleep
    if (errno == ETIMEDOUT && !sliced && !forever) return wait_result::timed_out;
    // EINTR, or the end of a slice: check the stop request and the deadline again.
  }
}

int futex_wake(const std::uint32_t* word, int count) noexcept {
  long woken = futex(word, FUTEX_WAKE, count < 0 ? INT_MAX : static_cast<std::uint32_t>(count), nullptr);
  return woken < 0 ? 0 : static_cast<int>(woken);
}

}  // namespace detail
}  // namespace crew
