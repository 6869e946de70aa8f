// An allocator that keeps freed blocks on a list per thread and size, for
// objects made and freed millions of times a second with many alive at once
// (a pool's jobs: 1,024 in flight). glibc's malloc keeps only seven blocks of a
// size per thread (its tcache); past that, each malloc and free takes its
// slower, locked paths. Here both are a few instructions.
//
// A block may be freed on another thread than the one that allocated it: it
// joins that thread's list. Each list keeps at most 4,096 blocks and gives the
// rest back; a thread's list is freed when the thread ends.
#pragma once

#include <cstddef>
#include <new>

namespace crew::detail {

// Under AddressSanitizer blocks are not kept, so that it still sees a use after free.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr std::size_t blocks_kept = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr std::size_t blocks_kept = 0;
#else
inline constexpr std::size_t blocks_kept = 4096;
#endif
#else
inline constexpr std::size_t blocks_kept = 4096;
#endif

template <std::size_t Size>
class block_list {
 public:
  static void* take() {
    block_list* list = here();
    if (list && list->first_) return list->pop();
    return ::operator new(Size);
  }

  static void give(void* p) noexcept {
    // Only a list this thread has made: none is made to take a block back (a
    // thread that frees during its exit, or static destruction, would make
    // one that nothing destroys).
    block_list* list = made_;
    if (!list || list->count_ == blocks_kept) return ::operator delete(p);
    list->first_ = ::new (p) node{list->first_};
    ++list->count_;
  }

 private:
  struct node {
    node* next;
  };
  static_assert(Size >= sizeof(node));

  ~block_list() {
    while (first_) ::operator delete(pop());
  }

  // This thread's list, made on first use; null once the thread's end
  // destroyed it (a block freed after that goes straight back).
  static block_list* here() noexcept {
    thread_local bool gone = false;  // trivially destructible: readable until the thread ends
    thread_local struct owner {
      owner() { made_ = &list; }
      ~owner() {
        made_ = nullptr;
        gone = true;
      }
      block_list list;
    } mine;
    return gone ? nullptr : &mine.list;
  }

  static inline thread_local block_list* made_ = nullptr;  // trivially destructible too

  void* pop() noexcept {
    node* n = first_;
    first_ = n->next;
    --count_;
    return n;
  }

  node* first_ = nullptr;
  std::size_t count_ = 0;
};

template <class T>
struct recycling_allocator {
  using value_type = T;

  recycling_allocator() = default;
  template <class U>
  recycling_allocator(const recycling_allocator<U>&) noexcept {}  // NOLINT: rebinding converts implicitly

  T* allocate(std::size_t n) {
    if (n != 1) return static_cast<T*>(::operator new(n * sizeof(T)));
    return static_cast<T*>(block_list<block_size>::take());
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (n != 1) return ::operator delete(p);
    block_list<block_size>::give(p);
  }

  template <class U>
  bool operator==(const recycling_allocator<U>&) const noexcept {
    return true;
  }

 private:
  // Rounded up to 16 bytes, so that types of nearly one size share a list.
  static constexpr std::size_t block_size = (sizeof(T) + 15) / 16 * 16;
  static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
};

}  // namespace crew::detail
