#include "crew/error.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <uv.h>

#include <future>
#include <string>

namespace {

TEST(error, libuv_codes_carry_nodes_name_and_message) {
  std::error_code ec = crew::uv_error(UV_ENOENT);
  EXPECT_EQ(crew::error_name(ec), "ENOENT");
  EXPECT_EQ(ec.message(), "no such file or directory");
  EXPECT_EQ(ec.category().name(), std::string("crew"));
}

TEST(error, libuv_codes_compare_equal_to_the_matching_std_errc) {
  EXPECT_EQ(crew::uv_error(UV_ETIMEDOUT), std::errc::timed_out);
  EXPECT_EQ(crew::uv_error(UV_ECANCELED), std::errc::operation_canceled);
  EXPECT_EQ(crew::uv_error(UV_EMFILE), std::errc::too_many_files_open);
  EXPECT_NE(crew::uv_error(UV_ENOENT), std::errc::timed_out);
}

TEST(error, libuv_codes_without_an_errno_stay_in_crews_category) {
  std::error_code eof = crew::uv_error(UV_EOF);
  EXPECT_EQ(crew::error_name(eof), "EOF");
  EXPECT_EQ(eof.default_error_condition().category(), crew::error_category());
}

TEST(error, a_zero_status_is_success) {
  EXPECT_FALSE(crew::uv_error(0));
  EXPECT_EQ(crew::error_name(crew::uv_error(0)), "");
}

TEST(error, a_signal_error_is_named_after_its_signal) {
  std::error_code killed = crew::signal_error(SIGSEGV);
  EXPECT_EQ(crew::error_name(killed), "SIGSEGV");
  EXPECT_NE(killed.message().find("Segmentation fault"), std::string::npos) << killed.message();
  EXPECT_EQ(crew::error_name(crew::signal_error(SIGKILL)), "SIGKILL");
  EXPECT_NE(killed, crew::signal_error(SIGKILL));
}

TEST(error, crews_own_conditions_have_node_style_names) {
  EXPECT_EQ(crew::error_name(crew::errc::ipc_channel_closed), "ERR_IPC_CHANNEL_CLOSED");
  EXPECT_EQ(crew::error_name(crew::errc::child_process_stdio_maxbuffer), "ERR_CHILD_PROCESS_STDIO_MAXBUFFER");
  EXPECT_EQ(crew::error_name(crew::errc::invalid_message), "ERR_INVALID_MESSAGE");
  EXPECT_EQ(crew::error_name(crew::errc::message_too_large), "ERR_MESSAGE_TOO_LARGE");
  EXPECT_EQ(crew::error_name(crew::errc::queue_full), "ERR_QUEUE_FULL");
  EXPECT_EQ(std::error_code(crew::errc::ipc_channel_closed).message(), "channel closed");
}

TEST(error, crews_own_conditions_map_to_std_errc) {
  EXPECT_EQ(std::error_code(crew::errc::message_too_large), std::errc::message_size);
  EXPECT_EQ(std::error_code(crew::errc::queue_full), std::errc::resource_unavailable_try_again);
  EXPECT_EQ(std::error_code(crew::errc::invalid_message), std::errc::bad_message);
}

TEST(error, std_error_codes_are_named_too) {
  EXPECT_EQ(crew::error_name(std::make_error_code(std::errc::timed_out)), "ETIMEDOUT");
  EXPECT_EQ(crew::error_name(std::error_code(EPIPE, std::system_category())), "EPIPE");
  EXPECT_EQ(crew::error_name(std::make_error_code(std::future_errc::broken_promise)), "UNKNOWN");
}

TEST(error, throw_if_error_throws_system_error_with_the_code) {
  EXPECT_NO_THROW(crew::throw_if_error({}, "nothing"));
  try {
    crew::throw_if_error(crew::uv_error(UV_EACCES), "spawn");
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), crew::uv_error(UV_EACCES));
    EXPECT_NE(std::string(e.what()).find("spawn"), std::string::npos);
  }
}

TEST(result, holds_a_value) {
  crew::result<std::string> r = std::string("ok");
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, "ok");
  EXPECT_EQ(r->size(), 2u);
  EXPECT_FALSE(r.error());
  EXPECT_EQ(r.value(), "ok");
}

TEST(result, holds_an_error_and_value_throws_it) {
  crew::result<int> r = crew::uv_error(UV_ECANCELED);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), std::errc::operation_canceled);
  EXPECT_EQ(r.value_or(7), 7);
  try {
    (void)r.value();
    FAIL() << "no exception";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), crew::uv_error(UV_ECANCELED));
  }
}

TEST(result, moves_its_value_out) {
  crew::result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 5);
}

}  // namespace
