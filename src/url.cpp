// The WHATWG URL Standard's parser (url.spec.whatwg.org, "basic URL parser"),
// written from the standard's states without the setters' state override,
// and its application/x-www-form-urlencoded reader and writer.
#include "crew/url.hpp"

#include <algorithm>
#include <array>
#include <charconv>

#include "detail/utf8.hpp"

namespace crew {
namespace {

constexpr int eof = -1;

bool is_alpha(int c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(int c) noexcept { return c >= '0' && c <= '9'; }
bool is_hex(int c) noexcept { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
int hex_value(int c) noexcept { return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10; }
char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c | 0x20) : c; }

// The standard's percent-encode sets, each a superset of the one before.
using encode_set = bool (*)(unsigned char) noexcept;
bool c0_control_set(unsigned char c) noexcept { return c < 0x20 || c > 0x7E; }
bool fragment_set(unsigned char c) noexcept {
  return c0_control_set(c) || c == ' ' || c == '"' || c == '<' || c == '>' || c == '`';
}
bool query_set(unsigned char c) noexcept {
  return c0_control_set(c) || c == ' ' || c == '"' || c == '#' || c == '<' || c == '>';
}
bool special_query_set(unsigned char c) noexcept { return query_set(c) || c == '\''; }
bool path_set(unsigned char c) noexcept { return query_set(c) || c == '?' || c == '`' || c == '{' || c == '}'; }
bool userinfo_set(unsigned char c) noexcept {
  return path_set(c) || c == '/' || c == ':' || c == ';' || c == '=' || c == '@' || (c >= '[' && c <= '^') ||
         c == '|';
}

void percent_encode(std::string& out, char c, encode_set set) {
  auto byte = static_cast<unsigned char>(c);
  if (!set(byte)) return void(out += c);
  static constexpr char hex[] = "0123456789ABCDEF";
  out += '%';
  out += hex[byte >> 4];
  out += hex[byte & 0xF];
}

std::string percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && is_hex(in[i + 1]) && is_hex(in[i + 2])) {
      out += static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

// Bytes as a JavaScript string would hold them: ill-formed UTF-8 as U+FFFD.
std::string well_formed(std::string_view bytes) {
  std::string out;
  detail::append_utf8_replacing(out, bytes);
  return out;
}

int default_port(std::string_view scheme) noexcept {
  if (scheme == "http" || scheme == "ws") return 80;
  if (scheme == "https" || scheme == "wss") return 443;
  if (scheme == "ftp") return 21;
  return -1;
}

bool is_special(std::string_view scheme) noexcept { return default_port(scheme) != -1 || scheme == "file"; }

bool is_windows_drive_letter(std::string_view s) noexcept {
  return s.size() == 2 && is_alpha(s[0]) && (s[1] == ':' || s[1] == '|');
}
bool is_normalized_windows_drive_letter(std::string_view s) noexcept {
  return is_windows_drive_letter(s) && s[1] == ':';
}
bool starts_with_windows_drive_letter(std::string_view s) noexcept {
  return s.size() >= 2 && is_windows_drive_letter(s.substr(0, 2)) &&
         (s.size() == 2 || s[2] == '/' || s[2] == '\\' || s[2] == '?' || s[2] == '#');
}

bool is_single_dot(std::string_view s) noexcept { return s == "." || s == "%2e" || s == "%2E"; }
bool is_double_dot(std::string_view s) noexcept {
  if (s.size() < 2 || s.size() > 6) return false;
  std::string folded;
  for (char c : s) folded += lower(c);
  return folded == ".." || folded == ".%2e" || folded == "%2e." || folded == "%2e%2e";
}

bool forbidden_host_code_point(char c) noexcept {
  switch (c) {
    case '\0': case '\t': case '\n': case '\r': case ' ': case '#': case '/': case ':': case '<':
    case '>': case '?': case '@': case '[': case '\\': case ']': case '^': case '|':
      return true;
    default:
      return false;
  }
}
bool forbidden_domain_code_point(char c) noexcept {
  auto byte = static_cast<unsigned char>(c);
  return forbidden_host_code_point(c) || byte < 0x20 || c == '%' || byte == 0x7F;
}

// An IPv4 address part: decimal, 0x-hex or 0-octal. nullopt when it is none;
// values past 2^32 saturate, which every caller refuses.
std::optional<std::uint64_t> ipv4_number(std::string_view s) noexcept {
  if (s.empty()) return std::nullopt;
  int radix = 10;
  if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    radix = 16;
    s.remove_prefix(2);
  } else if (s.size() >= 2 && s[0] == '0') {
    radix = 8;
    s.remove_prefix(1);
  }
  std::uint64_t value = 0;
  for (char c : s) {
    int digit = radix == 16 ? (is_hex(c) ? hex_value(c) : -1) : (is_digit(c) ? c - '0' : -1);
    if (digit < 0 || digit >= radix) return std::nullopt;
    value = std::min<std::uint64_t>(value * radix + static_cast<std::uint64_t>(digit), std::uint64_t{1} << 40);
  }
  return value;
}

std::vector<std::string_view> split(std::string_view s, char separator) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    std::size_t end = s.find(separator, start);
    parts.push_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

bool ends_in_a_number(std::string_view domain) {
  std::vector<std::string_view> parts = split(domain, '.');
  if (parts.back().empty()) {
    if (parts.size() == 1) return false;
    parts.pop_back();
  }
  std::string_view last = parts.back();
  if (!last.empty() && std::all_of(last.begin(), last.end(), is_digit)) return true;
  return ipv4_number(last).has_value();
}

std::optional<std::string> parse_ipv4(std::string_view domain) {
  std::vector<std::string_view> parts = split(domain, '.');
  if (parts.back().empty() && parts.size() > 1) parts.pop_back();
  if (parts.size() > 4) return std::nullopt;
  std::vector<std::uint64_t> numbers;
  for (std::string_view part : parts) {
    std::optional<std::uint64_t> n = ipv4_number(part);
    if (!n) return std::nullopt;
    numbers.push_back(*n);
  }
  for (std::size_t i = 0; i + 1 < numbers.size(); ++i)
    if (numbers[i] > 255) return std::nullopt;
  if (numbers.back() >= std::uint64_t{1} << (8 * (5 - numbers.size()))) return std::nullopt;
  std::uint64_t address = numbers.back();
  for (std::size_t i = 0; i + 1 < numbers.size(); ++i) address += numbers[i] << (8 * (3 - i));
  std::string out;
  for (int shift = 24; shift >= 0; shift -= 8) {
    out += std::to_string((address >> shift) & 0xFF);
    if (shift) out += '.';
  }
  return out;
}

std::optional<std::string> parse_ipv6(std::string_view in) {
  std::array<std::uint16_t, 8> address{};
  int piece = 0, compress = -1;
  std::size_t p = 0;
  auto at = [&](std::size_t i) { return i < in.size() ? static_cast<unsigned char>(in[i]) : eof; };
  if (at(p) == ':') {
    if (at(p + 1) != ':') return std::nullopt;
    p += 2;
    compress = ++piece;
  }
  while (at(p) != eof) {
    if (piece == 8) return std::nullopt;
    if (at(p) == ':') {
      if (compress != -1) return std::nullopt;
      ++p;
      compress = ++piece;
      continue;
    }
    int value = 0, length = 0;
    while (length < 4 && is_hex(at(p))) {
      value = value * 16 + hex_value(at(p));
      ++p;
      ++length;
    }
    if (at(p) == '.') {  // an IPv4 address in the last two pieces
      if (length == 0 || piece > 6) return std::nullopt;
      p -= static_cast<std::size_t>(length);
      int numbers_seen = 0;
      while (at(p) != eof) {
        if (numbers_seen > 0) {
          if (at(p) != '.' || numbers_seen >= 4) return std::nullopt;
          ++p;
        }
        if (!is_digit(at(p))) return std::nullopt;
        int number = -1;
        while (is_digit(at(p))) {
          if (number == 0) return std::nullopt;  // no leading zero
          number = (number < 0 ? 0 : number * 10) + (at(p) - '0');
          if (number > 255) return std::nullopt;
          ++p;
        }
        address[piece] = static_cast<std::uint16_t>(address[piece] * 0x100 + number);
        if (++numbers_seen == 2 || numbers_seen == 4) ++piece;
      }
      if (numbers_seen != 4) return std::nullopt;
      break;
    }
    if (at(p) == ':') {
      if (at(++p) == eof) return std::nullopt;
    } else if (at(p) != eof) {
      return std::nullopt;
    }
    address[piece++] = static_cast<std::uint16_t>(value);
  }
  if (compress != -1) {
    int swaps = piece - compress;
    for (piece = 7; piece != 0 && swaps > 0; --piece, --swaps) std::swap(address[piece], address[compress + swaps - 1]);
  } else if (piece != 8) {
    return std::nullopt;
  }
  // Serialize: the first longest run of two or more zero pieces becomes "::".
  int best = -1, best_length = 1;
  for (int i = 0; i < 8;) {
    int j = i;
    while (j < 8 && address[j] == 0) ++j;
    if (j - i > best_length) best = i, best_length = j - i;
    i = j == i ? i + 1 : j;
  }
  std::string out = "[";
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      out += i == 0 ? "::" : ":";
      i += best_length - 1;
      continue;
    }
    char digits[8];
    out.append(digits, std::to_chars(digits, digits + sizeof digits, address[i], 16).ptr);
    if (i != 7) out += ':';
  }
  return out + "]";
}

std::optional<std::string> parse_host(std::string_view in, bool special) {
  if (!in.empty() && in.front() == '[') {
    if (in.back() != ']') return std::nullopt;
    return parse_ipv6(in.substr(1, in.size() - 2));
  }
  if (!special) {  // an opaque host
    std::string out;
    for (char c : in) {
      if (forbidden_host_code_point(c)) return std::nullopt;
      percent_encode(out, c, c0_control_set);
    }
    return out;
  }
  std::string domain = percent_decode(in);
  for (char& c : domain) {
    // Node maps other characters through IDNA (to punycode): not done here.
    if (static_cast<unsigned char>(c) >= 0x80 || forbidden_domain_code_point(c)) return std::nullopt;
    c = lower(c);
  }
  if (domain.empty()) return std::nullopt;
  if (ends_in_a_number(domain)) return parse_ipv4(domain);
  return domain;
}

}  // namespace

// The basic URL parser, state by state as the standard writes it.
class url_parser {
 public:
  url_parser(std::string_view input, const url* base) : base_(base) {
    // Leading and trailing C0 controls and spaces go, tabs and newlines anywhere.
    while (!input.empty() && static_cast<unsigned char>(input.front()) <= 0x20) input.remove_prefix(1);
    while (!input.empty() && static_cast<unsigned char>(input.back()) <= 0x20) input.remove_suffix(1);
    for (char c : well_formed(input))
      if (c != '\t' && c != '\n' && c != '\r') in_ += c;
  }

  result<url> run() {
    for (p_ = 0;; ++p_) {
      if (!step(at(p_))) return errc::invalid_url;
      if (p_ == static_cast<std::ptrdiff_t>(in_.size())) return std::move(u_);
    }
  }

 private:
  enum class state {
    scheme_start, scheme, no_scheme, special_relative_or_authority, path_or_authority, relative, relative_slash,
    special_authority_slashes, special_authority_ignore_slashes, authority, host, port, file, file_slash,
    file_host, path_start, path, opaque_path, query, fragment,
  };

  int at(std::ptrdiff_t i) const noexcept {
    return i >= 0 && i < static_cast<std::ptrdiff_t>(in_.size()) ? static_cast<unsigned char>(in_[i]) : eof;
  }
  std::string_view rest() const noexcept { return std::string_view(in_).substr(static_cast<std::size_t>(p_)); }
  bool special() const noexcept { return is_special(u_.scheme_); }
  bool slash(int c) const noexcept { return c == '/' || (special() && c == '\\'); }

  void shorten_path() {
    if (u_.scheme_ == "file" && u_.path_.size() == 1 && is_normalized_windows_drive_letter(u_.path_[0])) return;
    if (!u_.path_.empty()) u_.path_.pop_back();
  }
  void copy_authority_from_base() {
    u_.username_ = base_->username_;
    u_.password_ = base_->password_;
    u_.host_ = base_->host_;
    u_.port_ = base_->port_;
  }
  void start_query() {
    u_.query_.emplace();
    state_ = state::query;
  }
  void start_fragment() {
    u_.fragment_.emplace();
    state_ = state::fragment;
  }
  // The relative and file states' common part: the base's path and query,
  // then this input's own query or fragment, or a path that goes on from the
  // base's (true: the caller trims the base's path first).
  bool path_from_base(int c) {
    u_.path_ = base_->path_;
    u_.query_ = base_->query_;
    if (c == '?') {
      start_query();
    } else if (c == '#') {
      start_fragment();
    } else if (c != eof) {
      u_.query_.reset();
      state_ = state::path;
      --p_;
      return true;
    }
    return false;
  }
  bool set_host(bool special_host) {
    std::optional<std::string> host = parse_host(buffer_, special_host);
    if (!host) return false;
    u_.host_ = std::move(host);
    buffer_.clear();
    return true;
  }

  // One run of the state machine on code point c; false on failure.
  bool step(int c) {
    switch (state_) {
      case state::scheme_start:
        if (is_alpha(c)) {
          buffer_ += lower(static_cast<char>(c));
          state_ = state::scheme;
        } else {
          state_ = state::no_scheme;
          --p_;
        }
        return true;
      case state::scheme:
        if (is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.') {
          buffer_ += lower(static_cast<char>(c));
        } else if (c == ':') {
          u_.scheme_ = std::exchange(buffer_, {});
          if (u_.scheme_ == "file") {
            state_ = state::file;
          } else if (special() && base_ && base_->scheme_ == u_.scheme_) {
            state_ = state::special_relative_or_authority;
          } else if (special()) {
            state_ = state::special_authority_slashes;
          } else if (at(p_ + 1) == '/') {
            state_ = state::path_or_authority;
            ++p_;
          } else {
            u_.opaque_path_.emplace();
            state_ = state::opaque_path;
          }
        } else {
          buffer_.clear();
          state_ = state::no_scheme;
          p_ = -1;  // start over from the first code point
        }
        return true;
      case state::no_scheme:
        if (!base_ || (base_->opaque_path_ && c != '#')) return false;
        if (base_->opaque_path_) {
          u_.scheme_ = base_->scheme_;
          u_.opaque_path_ = base_->opaque_path_;
          u_.query_ = base_->query_;
          start_fragment();
        } else {
          state_ = base_->scheme_ == "file" ? state::file : state::relative;
          --p_;
        }
        return true;
      case state::special_relative_or_authority:
        if (c == '/' && at(p_ + 1) == '/') {
          state_ = state::special_authority_ignore_slashes;
          ++p_;
        } else {
          state_ = state::relative;
          --p_;
        }
        return true;
      case state::path_or_authority:
        if (c == '/') {
          state_ = state::authority;
        } else {
          state_ = state::path;
          --p_;
        }
        return true;
      case state::relative:
        u_.scheme_ = base_->scheme_;
        if (slash(c)) {
          state_ = state::relative_slash;
        } else {
          copy_authority_from_base();
          if (path_from_base(c)) shorten_path();
        }
        return true;
      case state::relative_slash:
        if (slash(c)) {
          state_ = special() ? state::special_authority_ignore_slashes : state::authority;
        } else {
          copy_authority_from_base();
          state_ = state::path;
          --p_;
        }
        return true;
      case state::special_authority_slashes:
        state_ = state::special_authority_ignore_slashes;
        if (c == '/' && at(p_ + 1) == '/')
          ++p_;
        else
          --p_;
        return true;
      case state::special_authority_ignore_slashes:
        if (c != '/' && c != '\\') {
          state_ = state::authority;
          --p_;
        }
        return true;
      case state::authority:
        if (c == '@') {
          if (at_sign_seen_) buffer_.insert(0, "%40");
          at_sign_seen_ = true;
          for (char b : buffer_) {
            if (b == ':' && !password_token_seen_) {
              password_token_seen_ = true;
              continue;
            }
            percent_encode(password_token_seen_ ? u_.password_ : u_.username_, b, userinfo_set);
          }
          buffer_.clear();
        } else if (c == eof || c == '?' || c == '#' || slash(c)) {
          if (at_sign_seen_ && buffer_.empty()) return false;
          p_ -= static_cast<std::ptrdiff_t>(buffer_.size()) + 1;
          buffer_.clear();
          state_ = state::host;
        } else {
          buffer_ += static_cast<char>(c);
        }
        return true;
      case state::host:
        if (c == ':' && !inside_brackets_) {
          if (buffer_.empty() || !set_host(special())) return false;
          state_ = state::port;
        } else if (c == eof || c == '?' || c == '#' || slash(c)) {
          --p_;
          if (special() && buffer_.empty()) return false;
          if (!set_host(special())) return false;
          state_ = state::path_start;
        } else {
          if (c == '[') inside_brackets_ = true;
          if (c == ']') inside_brackets_ = false;
          buffer_ += static_cast<char>(c);
        }
        return true;
      case state::port:
        if (is_digit(c)) {
          if (port_ = port_ * 10 + static_cast<unsigned>(c - '0'); port_ > 65535) return false;
          buffer_ += static_cast<char>(c);
          return true;
        }
        if (c != eof && c != '?' && c != '#' && !slash(c)) return false;
        if (!buffer_.empty()) {
          unsigned port = std::exchange(port_, 0);
          if (static_cast<int>(port) == default_port(u_.scheme_))
            u_.port_.reset();
          else
            u_.port_ = static_cast<std::uint16_t>(port);
          buffer_.clear();
        }
        state_ = state::path_start;
        --p_;
        return true;
      case state::file:
        u_.scheme_ = "file";
        u_.host_.emplace();
        if (c == '/' || c == '\\') {
          state_ = state::file_slash;
        } else if (base_ && base_->scheme_ == "file") {
          u_.host_ = base_->host_;
          bool drive_letter = starts_with_windows_drive_letter(rest());
          if (path_from_base(c)) {
            if (drive_letter)
              u_.path_.clear();
            else
              shorten_path();
          }
        } else {
          state_ = state::path;
          --p_;
        }
        return true;
      case state::file_slash:
        if (c == '/' || c == '\\') {
          state_ = state::file_host;
        } else {
          if (base_ && base_->scheme_ == "file") {
            u_.host_ = base_->host_;
            if (!starts_with_windows_drive_letter(rest()) && !base_->path_.empty() &&
                is_normalized_windows_drive_letter(base_->path_[0]))
              u_.path_.push_back(base_->path_[0]);
          }
          state_ = state::path;
          --p_;
        }
        return true;
      case state::file_host:
        if (c == eof || c == '/' || c == '\\' || c == '?' || c == '#') {
          --p_;
          if (is_windows_drive_letter(buffer_)) {
            state_ = state::path;  // the buffer is the path's start, not a host
          } else if (buffer_.empty()) {
            u_.host_.emplace();
            state_ = state::path_start;
          } else {
            if (!set_host(true)) return false;
            if (u_.host_ == "localhost") u_.host_.emplace();
            state_ = state::path_start;
          }
        } else {
          buffer_ += static_cast<char>(c);
        }
        return true;
      case state::path_start:
        if (special()) {
          state_ = state::path;
          if (c != '/' && c != '\\') --p_;
        } else if (c == '?') {
          start_query();
        } else if (c == '#') {
          start_fragment();
        } else if (c != eof) {
          state_ = state::path;
          if (c != '/') --p_;
        }
        return true;
      case state::path:
        if (c == eof || slash(c) || c == '?' || c == '#') {
          if (is_double_dot(buffer_)) {
            shorten_path();
            if (!slash(c)) u_.path_.emplace_back();
          } else if (is_single_dot(buffer_)) {
            if (!slash(c)) u_.path_.emplace_back();
          } else {
            if (u_.scheme_ == "file" && u_.path_.empty() && is_windows_drive_letter(buffer_)) buffer_[1] = ':';
            u_.path_.push_back(buffer_);
          }
          buffer_.clear();
          if (c == '?') start_query();
          if (c == '#') start_fragment();
        } else {
          percent_encode(buffer_, static_cast<char>(c), path_set);
        }
        return true;
      case state::opaque_path:
        if (c == '?') {
          start_query();
        } else if (c == '#') {
          start_fragment();
        } else if (c != eof) {
          percent_encode(*u_.opaque_path_, static_cast<char>(c), c0_control_set);
        }
        return true;
      case state::query:
        if (c == '#') {
          start_fragment();
        } else if (c != eof) {
          percent_encode(*u_.query_, static_cast<char>(c), special() ? special_query_set : query_set);
        }
        return true;
      case state::fragment:
        if (c != eof) percent_encode(*u_.fragment_, static_cast<char>(c), fragment_set);
        return true;
    }
    return false;
  }

  const url* base_;
  std::string in_;
  std::ptrdiff_t p_ = 0;
  state state_ = state::scheme_start;
  std::string buffer_;
  bool at_sign_seen_ = false;
  bool inside_brackets_ = false;
  bool password_token_seen_ = false;
  unsigned port_ = 0;  // the port state's digits so far
  url u_;
};

result<url> url::parse(std::string_view input) { return url_parser(input, nullptr).run(); }

result<url> url::parse(std::string_view input, const url& base) { return url_parser(input, &base).run(); }

result<url> url::parse(std::string_view input, std::string_view base) {
  result<url> parsed_base = parse(base);
  if (!parsed_base) return parsed_base;
  return parse(input, *parsed_base);
}

bool url::special() const noexcept { return is_special(scheme_); }

std::string url::host() const {
  if (!host_) return {};
  return port_ ? *host_ + ':' + std::to_string(*port_) : *host_;
}

std::string url::pathname() const {
  if (opaque_path_) return *opaque_path_;
  std::string out;
  for (const std::string& segment : path_) out.append(1, '/').append(segment);
  return out;
}

std::string url::search() const { return query_ && !query_->empty() ? '?' + *query_ : std::string(); }

std::string url::hash() const { return fragment_ && !fragment_->empty() ? '#' + *fragment_ : std::string(); }

std::string url::href() const {
  std::string out = scheme_ + ':';
  if (host_) {
    out += "//";
    if (!username_.empty() || !password_.empty()) {
      out += username_;
      if (!password_.empty()) out.append(1, ':').append(password_);
      out += '@';
    }
    out += host();
  } else if (!opaque_path_ && path_.size() > 1 && path_[0].empty()) {
    out += "/.";  // so that the path's "//" does not read as an authority
  }
  out += pathname();
  if (query_) out.append(1, '?').append(*query_);
  if (fragment_) out.append(1, '#').append(*fragment_);
  return out;
}

std::string url::origin() const {
  if (!special() || scheme_ == "file") return "null";
  return scheme_ + "://" + host();
}

// application/x-www-form-urlencoded

namespace {

std::string form_decode(std::string_view bytes) {
  std::string plus_as_space(bytes);
  std::replace(plus_as_space.begin(), plus_as_space.end(), '+', ' ');
  return well_formed(percent_decode(plus_as_space));
}

void form_encode(std::string& out, std::string_view s) {
  for (char c : well_formed(s)) {
    if (c == ' ')
      out += '+';
    else if (is_alpha(c) || is_digit(c) || c == '*' || c == '-' || c == '.' || c == '_')
      out += c;
    else
      percent_encode(out, c, [](unsigned char) noexcept { return true; });
  }
}

// The UTF-16 code units of UTF-8 text, the order in which JavaScript compares strings.
std::u16string utf16(std::string_view s) {
  std::u16string out;
  std::string text = well_formed(s);
  for (std::string_view rest = text; !rest.empty();) {
    std::size_t n = detail::next_utf8(rest).length;
    char32_t code = n == 1 ? static_cast<unsigned char>(rest[0]) : static_cast<unsigned char>(rest[0]) & (0x7F >> n);
    for (std::size_t i = 1; i < n; ++i) code = code << 6 | (static_cast<unsigned char>(rest[i]) & 0x3F);
    if (code >= 0x10000) {
      out += static_cast<char16_t>(0xD800 + ((code - 0x10000) >> 10));
      out += static_cast<char16_t>(0xDC00 + ((code - 0x10000) & 0x3FF));
    } else {
      out += static_cast<char16_t>(code);
    }
    rest.remove_prefix(n);
  }
  return out;
}

}  // namespace

url_search_params::url_search_params(std::string_view query) {
  if (!query.empty() && query.front() == '?') query.remove_prefix(1);
  for (std::string_view pair : split(query, '&')) {
    if (pair.empty()) continue;
    std::size_t equals = pair.find('=');
    std::string_view name = pair.substr(0, equals);
    std::string_view value = equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1);
    pairs_.emplace_back(form_decode(name), form_decode(value));
  }
}

std::optional<std::string> url_search_params::get(std::string_view name) const {
  for (const auto& [n, v] : pairs_)
    if (n == name) return v;
  return std::nullopt;
}

std::vector<std::string> url_search_params::get_all(std::string_view name) const {
  std::vector<std::string> values;
  for (const auto& [n, v] : pairs_)
    if (n == name) values.push_back(v);
  return values;
}

bool url_search_params::has(std::string_view name) const noexcept {
  return std::any_of(pairs_.begin(), pairs_.end(), [name](const value_type& p) { return p.first == name; });
}

void url_search_params::append(std::string name, std::string value) {
  pairs_.emplace_back(std::move(name), std::move(value));
}

void url_search_params::set(std::string_view name, std::string value) {
  auto first = std::find_if(pairs_.begin(), pairs_.end(), [name](const value_type& p) { return p.first == name; });
  if (first == pairs_.end()) return append(std::string(name), std::move(value));
  first->second = std::move(value);
  pairs_.erase(std::remove_if(first + 1, pairs_.end(), [name](const value_type& p) { return p.first == name; }),
               pairs_.end());
}

void url_search_params::remove(std::string_view name) {
  std::erase_if(pairs_, [name](const value_type& p) { return p.first == name; });
}

void url_search_params::sort() {
  std::vector<std::pair<std::u16string, value_type>> keyed;
  keyed.reserve(pairs_.size());
  for (value_type& p : pairs_) keyed.emplace_back(utf16(p.first), std::move(p));
  std::stable_sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (std::size_t i = 0; i < keyed.size(); ++i) pairs_[i] = std::move(keyed[i].second);
}

std::string url_search_params::to_string() const {
  std::string out;
  for (const auto& [name, value] : pairs_) {
    if (!out.empty()) out += '&';
    form_encode(out, name);
    out += '=';
    form_encode(out, value);
  }
  return out;
}

}  // namespace crew
