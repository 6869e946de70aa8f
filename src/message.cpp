#include "crew/message.hpp"

namespace crew {
namespace {

// nlohmann's parser recurses once per nesting level; a hostile text of a
// million '[' would overflow the stack. One linear pass bounds the depth first.
bool nesting_within(std::string_view text, int limit) noexcept {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

}  // namespace

message::~message() = default;

message message::clone() const {
  message copy(value_);
  if (extra_) {
    attachments& to = copy.extra();
    to.buffers.reserve(extra_->buffers.size());
    for (const buffer& b : extra_->buffers) to.buffers.push_back(b.clone());
    to.shared_buffers = extra_->shared_buffers;
    to.fds = extra_->fds;
  }
  return copy;
}

std::string message::to_string() const {
  std::string text;
  append_to(text);
  return text;
}

void message::append_to(std::string& out) const {
  nlohmann::detail::serializer<value_type> writer(nlohmann::detail::output_adapter<char>(out), ' ',
                                                  value_type::error_handler_t::replace);
  writer.dump(value_, false, false, 0);
}

result<message> message::parse(std::string_view text) {
  if (!nesting_within(text, max_depth)) return errc::invalid_message;
  value_type value = value_type::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return errc::invalid_message;
  return message(std::move(value));
}

}  // namespace crew
