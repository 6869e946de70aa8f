#include "crew/buffer.hpp"

#include <gtest/gtest.h>

#include <type_traits>

namespace {

static_assert(!std::is_copy_constructible_v<crew::buffer>);
static_assert(std::is_nothrow_move_constructible_v<crew::buffer>);
static_assert(std::is_nothrow_move_assignable_v<crew::buffer>);

TEST(buffer, moving_passes_the_bytes_without_copying_them) {
  crew::buffer a(std::string_view("hello"));
  const std::byte* bytes = a.data();
  crew::buffer b = std::move(a);
  EXPECT_EQ(b.data(), bytes);
  EXPECT_EQ(b.view(), "hello");
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  EXPECT_EQ(a.data(), nullptr);
}

TEST(buffer, clone_is_an_independent_copy) {
  crew::buffer a(std::string_view("abc"));
  crew::buffer b = a.clone();
  b.data()[0] = std::byte{'x'};
  EXPECT_EQ(a.view(), "abc");
  EXPECT_EQ(b.view(), "xbc");
}

TEST(buffer, sized_buffers_are_writable) {
  crew::buffer b(3);
  ASSERT_EQ(b.size(), 3u);
  for (auto& byte : b.bytes()) byte = std::byte{'z'};
  EXPECT_EQ(b.view(), "zzz");
  EXPECT_TRUE(crew::buffer(0).empty());
}

}  // namespace
