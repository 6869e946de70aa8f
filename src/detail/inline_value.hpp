// A small JSON value copied into a port's queue instead of moved through it.
//
// Why: a moved value's heap nodes are allocated by the sending thread and freed
// by the receiving one. glibc's allocator serves that pattern through its shared
// bins, not its per-thread caches: profiled, a worker's sender spent two thirds
// of its time in malloc for `{i: n}` messages. Copied into a few bytes of the
// queue slot, the value is freed where it was made and rebuilt where it is read,
// so each thread only allocates and frees its own memory (Node's structured
// clone, for the values where a copy costs less than the cross-thread traffic).
//
// The copy is exact: the rebuilt value has the same types (signed, unsigned or
// floating numbers), the same key order, and compares equal. Values that do not
// fit in `capacity` bytes, or carry binary data, are left to be moved.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "crew/message.hpp"

namespace crew::detail {

class inline_value {
 public:
  static constexpr std::size_t capacity = 23;  // as large as a message: {"id":1,"ok":true} fits

  /// Copies v in, if it fits. False when it does not (what was written is then meaningless).
  bool assign(const json& v) noexcept;

  /// Destroys a value that fitted, leaves v null. Cheaper than its destructor,
  /// which allocates a stack for the children of any non-empty container.
  static void release(json& v) noexcept;

  /// The value copied in; a new one on the calling thread.
  json value() const;


 private:
  bool put(const json& v) noexcept;
  bool put_byte(std::size_t b) noexcept;  // false past 255 or past capacity
  bool put_bytes(const void* data, std::size_t n) noexcept;
  bool put_number(const void* number) noexcept;  // 8 bytes
  bool put_text(const std::string& s) noexcept;
  json get(std::size_t& at) const;

  std::array<unsigned char, capacity> bytes_;
  std::uint8_t size_ = 0;
};

}  // namespace crew::detail
