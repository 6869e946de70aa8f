// Bytes that move without a copy: Node's Buffer, as a message attachment.
//
//   crew::buffer frame(4096);                      // uninitialised bytes
//   std::memcpy(frame.data(), pixels, 4096);
//   message.attach(std::move(frame));              // moved, never copied
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <utility>

namespace crew {

/// An owned, fixed-size block of bytes. Move-only: moving passes ownership and
/// copies nothing; clone() makes the one explicit copy.
class buffer {
 public:
  buffer() noexcept = default;

  /// `size` bytes, not initialised.
  explicit buffer(std::size_t size)
      : bytes_(size ? std::make_unique_for_overwrite<std::byte[]>(size) : nullptr), size_(size) {}

  /// A copy of `bytes`.
  explicit buffer(std::span<const std::byte> bytes) : buffer(bytes.size()) {
    if (size_) std::memcpy(bytes_.get(), bytes.data(), size_);
  }

  /// A copy of the characters of `text`.
  explicit buffer(std::string_view text) : buffer(std::as_bytes(std::span(text.data(), text.size()))) {}

  buffer(buffer&& other) noexcept : bytes_(std::move(other.bytes_)), size_(std::exchange(other.size_, 0)) {}
  buffer& operator=(buffer&& other) noexcept {
    bytes_ = std::move(other.bytes_);
    size_ = std::exchange(other.size_, 0);
    return *this;
  }

  buffer clone() const { return buffer(bytes()); }

  std::byte* data() noexcept { return bytes_.get(); }
  const std::byte* data() const noexcept { return bytes_.get(); }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  std::span<std::byte> bytes() noexcept { return {bytes_.get(), size_}; }
  std::span<const std::byte> bytes() const noexcept { return {bytes_.get(), size_}; }

  /// The bytes seen as characters.
  std::string_view view() const noexcept { return {reinterpret_cast<const char*>(bytes_.get()), size_}; }

 private:
  std::unique_ptr<std::byte[]> bytes_;
  std::size_t size_ = 0;
};

}  // namespace crew
