// URLs and query strings: Node's URL and URLSearchParams (the WHATWG URL
// Standard), for what a server meets.
//
//   crew::result<crew::url> u = crew::url::parse("/search?q=caf%C3%A9+au+lait&page=2", "http://localhost");
//   u->pathname();                         // "/search"
//   u->search_params().get("q");           // "café au lait"
//
//   crew::url_search_params p;
//   p.append("name", "Jo & Co");
//   p.to_string();                         // "name=Jo+%26+Co"
//
// Parsing follows the standard's parser as Node's `new URL(input, base)` runs
// it: scheme, username and password, host (domain lower-cased, IPv4 in any of
// its forms, IPv6 literals compressed), port (the scheme's default dropped),
// path (dot segments removed, percent-encoded as Node does), query, fragment,
// and resolution against a base. Text that is not a URL gives ERR_INVALID_URL.
// One difference: a host with characters outside ASCII (which Node converts
// to punycode through IDNA tables) gives ERR_INVALID_URL.
//
// Values are plain data: copyable, no loop, usable on any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crew/error.hpp"

namespace crew {

/// Node's URLSearchParams: an ordered list of name-value pairs, read from and
/// written as application/x-www-form-urlencoded text.
class url_search_params {
 public:
  using value_type = std::pair<std::string, std::string>;
  using const_iterator = std::vector<value_type>::const_iterator;

  /// No pairs.
  url_search_params() = default;
  /// Reads `query` as Node's new URLSearchParams(string) does: a leading '?'
  /// is skipped, pairs split at '&' and at the first '=', '+' read as a space,
  /// percent escapes decoded (an invalid escape stays as written), and bytes
  /// that are not UTF-8 replaced by U+FFFD.
  explicit url_search_params(std::string_view query);

  /// The first value named `name`, if any.
  std::optional<std::string> get(std::string_view name) const;
  /// Every value named `name`, in order.
  std::vector<std::string> get_all(std::string_view name) const;
  /// Whether a pair is named `name`.
  bool has(std::string_view name) const noexcept;
  /// Adds a pair at the end.
  void append(std::string name, std::string value);
  /// Sets the first pair named `name` to `value` and removes the others named
  /// so; appends the pair if there is none.
  void set(std::string_view name, std::string value);
  /// Removes every pair named `name` (Node's delete()).
  void remove(std::string_view name);
  /// Sorts the pairs by name (in UTF-16 code unit order, as Node), keeping the
  /// order of pairs with the same name.
  void sort();
  /// How many pairs.
  std::size_t size() const noexcept { return pairs_.size(); }

  const_iterator begin() const noexcept { return pairs_.begin(); }
  const_iterator end() const noexcept { return pairs_.end(); }

  /// The pairs as Node writes them: name=value joined by '&', space as '+', and
  /// every byte but ASCII letters, digits and *-._ percent-encoded.
  std::string to_string() const;

 private:
  std::vector<value_type> pairs_;
};

/// A parsed URL, as Node's URL object reads it.
class url {
 public:
  /// Parses an absolute URL. Errors: ERR_INVALID_URL.
  static result<url> parse(std::string_view input);
  /// Parses `input` against `base` (Node's new URL(input, base)). Errors:
  /// ERR_INVALID_URL, when either is not a URL.
  static result<url> parse(std::string_view input, std::string_view base);
  static result<url> parse(std::string_view input, const url& base);

  /// The whole URL, serialized: "https://user:pw@example.com:8080/a/b?x=1#top".
  std::string href() const;
  /// "https://example.com:8080" for http(s), ws(s) and ftp; "null" for the others.
  std::string origin() const;
  /// The scheme and ':': "https:".
  std::string protocol() const { return scheme_ + ':'; }
  const std::string& username() const noexcept { return username_; }
  const std::string& password() const noexcept { return password_; }
  /// The host and port: "example.com:8080"; "" when there is no host.
  std::string host() const;
  /// The host alone: "example.com", "127.0.0.1", "[::1]".
  std::string hostname() const { return host_.value_or(""); }
  /// The port as text, "" when it is the scheme's default or absent (Node's port).
  std::string port() const { return port_ ? std::to_string(*port_) : std::string(); }
  /// The path: "/a/b" (or an opaque path, such as "x@y" of "mailto:x@y").
  std::string pathname() const;
  /// "?x=1", or "" when the query is absent or empty.
  std::string search() const;
  /// "#top", or "" when the fragment is absent or empty.
  std::string hash() const;
  /// The query's pairs (a copy: changing it does not change the URL).
  url_search_params search_params() const { return url_search_params(query_.value_or("")); }

 private:
  friend class url_parser;
  bool special() const noexcept;

  std::string scheme_;
  std::string username_;
  std::string password_;
  std::optional<std::string> host_;  // serialized; absent for "mailto:x" and the like
  std::optional<std::uint16_t> port_;  // absent when default
  std::vector<std::string> path_;     // segments, percent-encoded
  std::optional<std::string> opaque_path_;  // "x@y" of "mailto:x@y"
  std::optional<std::string> query_;
  std::optional<std::string> fragment_;
};

}  // namespace crew
