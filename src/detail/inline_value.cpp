#include "detail/inline_value.hpp"

#include <cstring>
#include <string>

namespace crew::detail {

// Each value is its type's tag, then: a byte for a boolean; 8 bytes for a
// number; a length byte and the bytes for a string; a count byte and the
// members (key as a string without a tag, then value) or elements for an
// object or array. Lengths and counts past 255 do not fit anyway.

bool inline_value::assign(const json& v) noexcept {
  size_ = 0;
  return put(v);
}

void inline_value::release(json& v) noexcept {
  // Children first: a container emptied this way frees itself without that
  // stack. Deep values never fit, so the recursion stays short.
  if (v.is_object()) {
    auto& members = v.get_ref<json::object_t&>();
    for (auto& member : members) release(member.second);
    members.clear();
  } else if (v.is_array()) {
    auto& elements = v.get_ref<json::array_t&>();
    for (json& element : elements) release(element);
    elements.clear();
  }
  v = nullptr;
}

bool inline_value::put_byte(std::size_t b) noexcept {
  if (b > 255 || size_ == capacity) return false;
  bytes_[size_++] = static_cast<unsigned char>(b);
  return true;
}

bool inline_value::put_bytes(const void* data, std::size_t n) noexcept {
  if (n > capacity - size_) return false;
  std::memcpy(bytes_.data() + size_, data, n);
  size_ = static_cast<std::uint8_t>(size_ + n);
  return true;
}

bool inline_value::put_number(const void* number) noexcept {
  if (capacity - size_ < 8) return false;
  std::memcpy(bytes_.data() + size_, number, 8);  // a fixed size: no call
  size_ = static_cast<std::uint8_t>(size_ + 8);
  return true;
}

bool inline_value::put_text(const std::string& s) noexcept { return put_byte(s.size()) && put_bytes(s.data(), s.size()); }

bool inline_value::put(const json& v) noexcept {
  if (!put_byte(static_cast<std::size_t>(v.type()))) return false;
  switch (v.type()) {
    case json::value_t::null:
      return true;
    case json::value_t::boolean:
      return put_byte(v.get_ref<const bool&>() ? 1 : 0);
    case json::value_t::number_integer:
      return put_number(&v.get_ref<const json::number_integer_t&>());
    case json::value_t::number_unsigned:
      return put_number(&v.get_ref<const json::number_unsigned_t&>());
    case json::value_t::number_float:
      return put_number(&v.get_ref<const json::number_float_t&>());
    case json::value_t::string:
      return put_text(v.get_ref<const std::string&>());
    case json::value_t::object: {
      const auto& members = v.get_ref<const json::object_t&>();
      if (!put_byte(members.size())) return false;
      for (const auto& [key, value] : members)
        if (!put_text(key) || !put(value)) return false;
      return true;
    }
    case json::value_t::array: {
      const auto& elements = v.get_ref<const json::array_t&>();
      if (!put_byte(elements.size())) return false;
      for (const json& element : elements)
        if (!put(element)) return false;
      return true;
    }
    default:  // binary data, or a parser's discarded value: moved instead
      return false;
  }
}

json inline_value::value() const {
  std::size_t at = 0;
  return get(at);
}

json inline_value::get(std::size_t& at) const {
  auto number = [&]<class T>(T out) {
    std::memcpy(&out, bytes_.data() + at, sizeof out);
    at += sizeof out;
    return json(out);
  };
  auto text = [&] {
    std::size_t n = bytes_[at++];
    std::string s(reinterpret_cast<const char*>(bytes_.data() + at), n);
    at += n;
    return s;
  };
  switch (static_cast<json::value_t>(bytes_[at++])) {
    case json::value_t::boolean:
      return json(bytes_[at++] != 0);
    case json::value_t::number_integer:
      return number(json::number_integer_t{});
    case json::value_t::number_unsigned:
      return number(json::number_unsigned_t{});
    case json::value_t::number_float:
      return number(json::number_float_t{});
    case json::value_t::string:
      return json(text());
    case json::value_t::object: {
      json object = json::object();
      auto& members = object.get_ref<json::object_t&>();
      std::size_t count = bytes_[at++];
      members.reserve(count);
      for (std::size_t i = 0; i < count; ++i) {
        std::string key = text();
        members.emplace_back(std::move(key), get(at));
      }
      return object;
    }
    case json::value_t::array: {
      json array = json::array();
      auto& elements = array.get_ref<json::array_t&>();
      std::size_t count = bytes_[at++];
      elements.reserve(count);
      for (std::size_t i = 0; i < count; ++i) elements.push_back(get(at));
      return array;
    }
    default:  // null: put() wrote nothing else
      return json();
  }
}

}  // namespace crew::detail
