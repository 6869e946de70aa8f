// Shared memory and atomics: Node's SharedArrayBuffer and Atomics, across
// threads and, beyond Node, across processes.
//
// A shared_buffer is a block of zeroed bytes in shared memory (a memfd). Copies
// of a shared_buffer share the same bytes, so a worker given a copy (captured
// by its entry, or attached to a message) sees every write. Its descriptor can
// travel to another process over an IPC channel, which maps the same bytes:
//
//   crew::shared_buffer counter(8);
//   crew::atomic_view<std::int64_t> cells(counter);
//   cells.add(0, 1);                                    // Atomics.add
//
//   crew::message m("counter");
//   m.fds().push_back(counter.fd());                    // sent as SCM_RIGHTS
//   child.send(std::move(m));
//   // in the child:  auto shared = crew::shared_buffer::from_fd(m.fds()[0]);
//
// atomic_view's wait/notify are futexes on the shared mapping, so they work
// between threads and between processes alike (Atomics.wait / Atomics.notify).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <type_traits>

#include "crew/error.hpp"

namespace crew {

/// A shared block of bytes. Copyable: copies share the bytes (reference
/// counted; the memory is unmapped when the last copy goes). Thread-safe as
/// far as the bytes go: use atomic_view for cells that threads or processes
/// write concurrently.
class shared_buffer {
 public:
  /// An empty buffer: no bytes, fd() == -1.
  shared_buffer() noexcept = default;

  /// `size` zeroed bytes in a new memfd. Throws std::system_error (ENOMEM,
  /// EMFILE) when the memory or the descriptor cannot be had.
  explicit shared_buffer(std::size_t size);

  /// Maps the shared memory of a descriptor received from another process
  /// (its size is the file's). Takes ownership of fd, closed on failure too.
  /// Errors: EBADF, EINVAL (not a mappable file), ENOMEM.
  [[nodiscard]] static result<shared_buffer> from_fd(int fd) noexcept;

  std::byte* data() const noexcept { return mapping_ ? mapping_->bytes : nullptr; }
  std::size_t size() const noexcept { return mapping_ ? mapping_->size : 0; }
  bool empty() const noexcept { return size() == 0; }
  std::span<std::byte> bytes() const noexcept { return {data(), size()}; }

  /// The memfd behind the bytes, for sending over an IPC channel (the buffer
  /// keeps it; a receiver gets its own copy). -1 when empty.
  int fd() const noexcept { return mapping_ ? mapping_->fd : -1; }

  /// Whether two buffers share the same bytes.
  friend bool operator==(const shared_buffer& a, const shared_buffer& b) noexcept {
    return a.mapping_ == b.mapping_;
  }

 private:
  struct mapping {
    std::byte* bytes = nullptr;
    std::size_t size = 0;
    int fd = -1;
    ~mapping();
  };
  std::shared_ptr<const mapping> mapping_;
};

/// What atomic_view::wait() returns (Atomics.wait's strings, plus `stopped`).
enum class wait_result {
  ok,         ///< "ok": woken by notify().
  not_equal,  ///< "not-equal": the cell did not hold the expected value.
  timed_out,  ///< "timed-out": the timeout passed first.
  stopped,    ///< the calling worker was asked to stop (worker::terminate()).
};

namespace detail {
// Futex wait and wake on a 32-bit word of shared memory (src/shared_buffer.cpp).
wait_result futex_wait(const std::uint32_t* word, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept;
int futex_wake(const std::uint32_t* word, int count) noexcept;
void check_view(std::size_t buffer_size, std::size_t byte_offset, std::size_t length, std::size_t cell_size);
}  // namespace detail

/// A typed view of atomic cells over a shared_buffer: Int32Array / BigInt64Array
/// with Node's Atomics functions as members. Cell is one of int32_t, uint32_t,
/// int64_t, uint64_t. The view keeps the buffer alive. Every operation is
/// sequentially consistent, as Atomics' are; indexes past the end throw
/// std::out_of_range (Node's RangeError).
template <class Cell>
  requires(std::is_same_v<Cell, std::int32_t> || std::is_same_v<Cell, std::uint32_t> ||
           std::is_same_v<Cell, std::int64_t> || std::is_same_v<Cell, std::uint64_t>)
class atomic_view {
 public:
  /// `length` cells starting `byte_offset` bytes into `buffer` (default: to
  /// the end). Throws std::invalid_argument for a misaligned offset and
  /// std::out_of_range for a view past the buffer's end.
  explicit atomic_view(shared_buffer buffer, std::size_t byte_offset = 0, std::size_t length = npos)
      : buffer_(std::move(buffer)) {
    if (length == npos) length = byte_offset <= buffer_.size() ? (buffer_.size() - byte_offset) / sizeof(Cell) : 0;
    detail::check_view(buffer_.size(), byte_offset, length, sizeof(Cell));
    cells_ = reinterpret_cast<Cell*>(buffer_.data() + byte_offset);
    length_ = length;
  }

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  std::size_t size() const noexcept { return length_; }
  const shared_buffer& buffer() const noexcept { return buffer_; }

  Cell load(std::size_t i) const { return ref(i).load(); }
  /// Returns `value`, as Atomics.store does.
  Cell store(std::size_t i, Cell value) const {
    ref(i).store(value);
    return value;
  }
  // The read-modify-write operations return the value the cell held before.
  Cell add(std::size_t i, Cell value) const { return ref(i).fetch_add(value); }
  Cell sub(std::size_t i, Cell value) const { return ref(i).fetch_sub(value); }
  Cell bit_and(std::size_t i, Cell value) const { return ref(i).fetch_and(value); }
  Cell bit_or(std::size_t i, Cell value) const { return ref(i).fetch_or(value); }
  Cell bit_xor(std::size_t i, Cell value) const { return ref(i).fetch_xor(value); }
  Cell exchange(std::size_t i, Cell value) const { return ref(i).exchange(value); }
  /// Stores `replacement` if the cell holds `expected`; returns what it held.
  Cell compare_exchange(std::size_t i, Cell expected, Cell replacement) const {
    ref(i).compare_exchange_strong(expected, replacement);
    return expected;
  }

  /// Atomics.wait: sleeps while cell i holds `expected`, until notify() on that
  /// cell or `timeout` passes. Returns not_equal at once when the cell holds
  /// something else. Works on any thread (Node allows it on the main thread
  /// too, where it blocks the loop) and across processes. In a worker, a
  /// terminate() ends the wait with `stopped` (checked every 10 ms).
  /// A 64-bit cell sleeps on its low half: a notify() is never missed, but a
  /// change to the high half alone between the check and the sleep is seen only
  /// at the next notify() or timeout.
  wait_result wait(std::size_t i, Cell expected,
                   std::chrono::nanoseconds timeout = std::chrono::nanoseconds::max()) const {
    if (ref(i).load() != expected) return wait_result::not_equal;
    return detail::futex_wait(word(i), static_cast<std::uint32_t>(expected), timeout);
  }

  /// Atomics.notify: wakes up to `count` waiters on cell i (default: all), in
  /// this process and others. Returns how many woke.
  int notify(std::size_t i, int count = -1) const { return detail::futex_wake(word(i), count); }

 private:
  std::atomic_ref<Cell> ref(std::size_t i) const {
    if (i >= length_) throw std::out_of_range("atomic_view index past the end");
    return std::atomic_ref<Cell>(cells_[i]);
  }
  // The 32-bit word a futex sleeps on: the cell itself, or the low half of a
  // 64-bit cell (Linux is little-endian on every platform crew builds for).
  const std::uint32_t* word(std::size_t i) const {
    (void)ref(i);
    return reinterpret_cast<const std::uint32_t*>(cells_ + i);
  }

  shared_buffer buffer_;
  Cell* cells_ = nullptr;
  std::size_t length_ = 0;
};

}  // namespace crew
