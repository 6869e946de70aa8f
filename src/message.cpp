#include "crew/message.hpp"

#include "crew/message_port.hpp"

#include <simdjson.h>

#include <cstring>

namespace crew {
namespace {

// One linear pass before either parser, for what they get wrong or too slowly:
// nlohmann's parser recurses once per nesting level (a hostile text of a
// million '[' would overflow the stack), and it takes a NUL byte for the end of
// the input (so "{}\0garbage" would read as {}). JSON has no raw NUL anywhere,
// not even in a string, and no byte order mark, which nlohmann skips and
// JSON.parse refuses.
bool plausible(std::string_view text, int depth_limit) noexcept {
  if (text.find('\0') != std::string_view::npos || text.starts_with("\xEF\xBB\xBF")) return false;
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
      if (++depth > depth_limit) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// The common message is small: simdjson reads it about twice as fast as
// nlohmann's parser, and its tree is then copied into the message's value.
// Larger texts, and anything simdjson refuses (it also refuses integers past
// 64 bits, which JSON.parse reads as doubles), go to nlohmann, which decides.
constexpr std::size_t fast_parse_limit = 64 * 1024;

void convert(simdjson::dom::element from, message::value_type& to) {
  using kind = simdjson::dom::element_type;
  switch (from.type()) {
    case kind::OBJECT: {
      simdjson::dom::object fields = from.get_object().value_unsafe();
      to = message::value_type::object();
      auto& object = to.get_ref<message::value_type::object_t&>();
      object.reserve(fields.size());
      for (simdjson::dom::key_value_pair field : fields) {
        // A repeated key keeps its first place and takes the last value, as in JSON.parse.
        auto [slot, inserted] = object.emplace(std::string(field.key), nullptr);
        convert(field.value, slot->second);
      }
      return;
    }
    case kind::ARRAY: {
      simdjson::dom::array items = from.get_array().value_unsafe();
      to = message::value_type::array();
      auto& array = to.get_ref<message::value_type::array_t&>();
      array.reserve(items.size());
      for (simdjson::dom::element item : items) convert(item, array.emplace_back());
      return;
    }
    case kind::STRING:
      to = std::string(from.get_string().value_unsafe());
      return;
    case kind::INT64: {
      // nlohmann keeps non-negative integers unsigned: the same value either way.
      std::int64_t v = from.get_int64().value_unsafe();
      if (v >= 0)
        to = static_cast<std::uint64_t>(v);
      else
        to = v;
      return;
    }
    case kind::UINT64:
      to = from.get_uint64().value_unsafe();
      return;
    case kind::DOUBLE:
      to = from.get_double().value_unsafe();
      return;
    case kind::BOOL:
      to = from.get_bool().value_unsafe();
      return;
    case kind::NULL_VALUE:
      to = nullptr;
      return;
  }
}

bool fast_parse(std::string_view text, message::value_type& to) {
  thread_local simdjson::dom::parser parser;
  thread_local std::string padded;  // simdjson reads up to SIMDJSON_PADDING bytes past the end
  padded.resize(text.size() + simdjson::SIMDJSON_PADDING);
  std::memcpy(padded.data(), text.data(), text.size());
  simdjson::dom::element root;
  if (parser.parse(padded.data(), text.size(), false).get(root) != simdjson::SUCCESS) return false;
  convert(root, to);
  return true;
}

}  // namespace

struct message::attachments {
  std::vector<buffer> buffers;
  std::vector<shared_buffer> shared_buffers;
  std::vector<message_port> ports;
  std::vector<int> fds;
};

void message::attachments_deleter::operator()(attachments* a) const noexcept { delete a; }

message::attachments& message::extra() {
  if (!extra_) extra_.reset(new attachments);
  return *extra_;
}

namespace {
template <class T>
const std::vector<T>& none() noexcept {
  static const std::vector<T> empty;
  return empty;
}
}  // namespace

std::vector<buffer>& message::buffers() { return extra().buffers; }
const std::vector<buffer>& message::buffers() const noexcept { return extra_ ? extra_->buffers : none<buffer>(); }
std::vector<shared_buffer>& message::shared_buffers() { return extra().shared_buffers; }
const std::vector<shared_buffer>& message::shared_buffers() const noexcept {
  return extra_ ? extra_->shared_buffers : none<shared_buffer>();
}
std::vector<message_port>& message::ports() { return extra().ports; }
const std::vector<message_port>& message::ports() const noexcept { return extra_ ? extra_->ports : none<message_port>(); }
std::vector<int>& message::fds() { return extra().fds; }
const std::vector<int>& message::fds() const noexcept { return extra_ ? extra_->fds : none<int>(); }

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
  if (!plausible(text, max_depth)) return errc::invalid_message;
  if (text.size() <= fast_parse_limit) {
    value_type value;
    if (fast_parse(text, value)) return message(std::move(value));
  }
  value_type value = value_type::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return errc::invalid_message;
  return message(std::move(value));
}

}  // namespace crew
