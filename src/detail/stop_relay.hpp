// Carries a std::stop_token's stop request, which may come from any thread, to a
// loop: fn runs there, unless the relay was destroyed first.
#pragma once

#include <memory>
#include <optional>
#include <stop_token>

#include "crew/unique_function.hpp"
#include "crew/loop.hpp"

namespace crew::detail {

class stop_relay {
 public:
  /// Construct and destroy on l's thread.
  stop_relay(loop& l, std::stop_token token, unique_function<void()> fn)
      : shared_(std::make_shared<shared>(shared{&l, std::move(fn)})) {
    if (token.stop_possible()) callback_.emplace(std::move(token), poster{shared_});
  }
  stop_relay(const stop_relay&) = delete;
  stop_relay& operator=(const stop_relay&) = delete;
  ~stop_relay() {
    callback_.reset();  // waits for a callback running on another thread
    shared_->alive = false;
  }

 private:
  struct shared {
    loop* l;
    unique_function<void()> fn;
    bool alive = true;  // loop thread only
  };
  struct poster {
    std::shared_ptr<shared> s;
    void operator()() const {
      s->l->post([s = s] {
        if (s->alive) s->fn();
      });
    }
  };
  std::shared_ptr<shared> shared_;
  std::optional<std::stop_callback<poster>> callback_;
};

}  // namespace crew::detail
