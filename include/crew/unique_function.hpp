// crew::unique_function: a move-only type-erased callable, what C++23 calls
// std::move_only_function (C++20, crew's standard, lacks it).
//
//   crew::unique_function<void(int)> f = [owned = std::make_unique<int>(1)](int x) { ... };
//   f(2);
//
// crew stores callbacks that own their captures (a message, a unique_ptr), so
// they cannot go through std::function, which requires copyable targets. Every
// callback crew takes is a unique_function; any callable converts to one.
#pragma once

// Every handle's header includes this one (through loop.hpp), so a build
// without -std=c++20 (GCC 12 defaults to C++17) stops here with one clear line.
#if __cplusplus < 202002L
#error "crew needs C++20 or later: compile with -std=c++20 (pkg-config's flags leave the standard to you)"
#endif

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace crew {

/// A move-only callable holding any invocable of that signature. Small targets
/// (up to six pointers, nothrow-movable) are stored inline; larger ones on the
/// heap. Calling an empty one is undefined, like calling a null function pointer.
template <class Signature>
class unique_function;

template <class R, class... Args>
class unique_function<R(Args...)> {
 public:
  unique_function() noexcept = default;
  unique_function(std::nullptr_t) noexcept {}

  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, unique_function> &&
             std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
  unique_function(F&& f) {  // NOLINT: implicit like std::function
    using target = std::decay_t<F>;
    if constexpr (fits_inline<target>) {
      ::new (static_cast<void*>(&storage_)) target(std::forward<F>(f));
      ops_ = &inline_ops<target>;
    } else {
      heap_ = new target(std::forward<F>(f));
      ops_ = &heap_ops<target>;
    }
  }

  unique_function(unique_function&& other) noexcept { take(other); }
  unique_function& operator=(unique_function&& other) noexcept {
    if (this != &other) {
      reset();
      take(other);
    }
    return *this;
  }
  unique_function& operator=(std::nullptr_t) noexcept {
    reset();
    return *this;
  }
  ~unique_function() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }

  R operator()(Args... args) { return ops_->call(*this, std::forward<Args>(args)...); }

 private:
  // Small callables (up to six pointers) live inline, as folly::Function's
  // do: a lambda that captures a pointer and a few values, or `[&]` with a few
  // locals, costs no allocation. A unique_function is one cache line.
  static constexpr std::size_t inline_size = 6 * sizeof(void*);
  template <class T>
  static constexpr bool fits_inline = sizeof(T) <= inline_size &&
                                      alignof(T) <= alignof(std::max_align_t) &&
                                      std::is_nothrow_move_constructible_v<T>;

  struct operations {
    R (*call)(unique_function&, Args&&...);
    void (*move)(unique_function& from, unique_function& to) noexcept;
    void (*destroy)(unique_function&) noexcept;
  };

  template <class T>
  static constexpr operations inline_ops{
      [](unique_function& self, Args&&... args) -> R {
        return (*std::launder(reinterpret_cast<T*>(&self.storage_)))(std::forward<Args>(args)...);
      },
      [](unique_function& from, unique_function& to) noexcept {
        T* source = std::launder(reinterpret_cast<T*>(&from.storage_));
        ::new (static_cast<void*>(&to.storage_)) T(std::move(*source));
        source->~T();
      },
      [](unique_function& self) noexcept { std::launder(reinterpret_cast<T*>(&self.storage_))->~T(); },
  };

  template <class T>
  static constexpr operations heap_ops{
      [](unique_function& self, Args&&... args) -> R {
        return (*static_cast<T*>(self.heap_))(std::forward<Args>(args)...);
      },
      [](unique_function& from, unique_function& to) noexcept { to.heap_ = std::exchange(from.heap_, nullptr); },
      [](unique_function& self) noexcept { delete static_cast<T*>(self.heap_); },
  };

  void take(unique_function& other) noexcept {
    if (other.ops_) {
      other.ops_->move(other, *this);
      ops_ = std::exchange(other.ops_, nullptr);
    }
  }

  void reset() noexcept {
    if (ops_) std::exchange(ops_, nullptr)->destroy(*this);
  }

  union {
    alignas(std::max_align_t) std::byte storage_[inline_size];
    void* heap_;
  };
  const operations* ops_ = nullptr;
};

}  // namespace crew
