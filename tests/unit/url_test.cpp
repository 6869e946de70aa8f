// URL and URLSearchParams, with Node's `new URL(input, base)` and
// `new URLSearchParams(query)` as the judges, run on the same inputs.
#include "crew/url.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "crew/message.hpp"
#include "node_support.hpp"

namespace {

using json = crew::message::value_type;

// Runs `script` in node with `cases` (a JSON array) on stdin; the script
// answers one JSON value per case, in an array.
json node_answers(const std::string& script, const json& cases) {
  std::optional<std::string> out = crew::test::run_node(
      "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
      "process.stdout.write(JSON.stringify(cases.map((c) => {\n" + script + "\n})));",
      crew::message(cases).to_string());
  if (!out) return nullptr;
  crew::result<crew::message> parsed = crew::message::parse(*out);
  EXPECT_TRUE(parsed) << *out;
  return parsed ? std::move(parsed->value()) : json();
}

TEST(url, parses_every_part_of_a_url_as_node_does) {
  // [input, base] pairs; an empty base means none.
  std::vector<std::pair<std::string, std::string>> inputs = {
      {"https://user:pass@Example.COM:8080/a/b/../c/./d?x=1&y=%zz#frag", ""},
      {"HTTP://EXAMPLE.com:80/", ""},
      {"https://example.com:443/path", ""},
      {"http://example.com:8080", ""},
      {"http://h:/", ""},
      {"http://h:00080/x", ""},
      {"http://h:65536/", ""},
      {"http://h:12a/", ""},
      {"ws://h:80/chat", ""},
      {"wss://h:444/chat", ""},
      {"ftp://h:21/file", ""},
      {"http://[::1]:3000/", ""},
      {"http://[2001:DB8:0:0:0:0:0:1]/", ""},
      {"http://[0:0:0:1:0:0:0:0]/", ""},
      {"http://[1:0:0:2:0:0:0:3]/", ""},
      {"http://[::ffff:192.168.0.1]/", ""},
      {"http://[1::2::3]/", ""},
      {"http://[::1/", ""},
      {"http://[:::1]/", ""},
      {"http://0x7f.1/", ""},
      {"http://127.1/", ""},
      {"http://0300.0250.0.1/", ""},
      {"http://4294967295/", ""},
      {"http://4294967296/", ""},
      {"http://1.2.3.4.5/", ""},
      {"http://1.2.3.256/", ""},
      {"http://256.1.1.1/", ""},
      {"http://example.1/", ""},
      {"http://09.1/", ""},
      {"http://Ex%41mple.com/", ""},
      {"http://a%2Fb/", ""},
      {"http://ex ample/", ""},
      {"http://%zz/", ""},
      {"http://a..b/", ""},
      {"http://example.com./", ""},
      {"http:///example.com/", ""},
      {"http:\\\\example.com\\a\\b", ""},
      {"http://@h/", ""},
      {"http://:@h/", ""},
      {"http://u@/", ""},
      {"http://a@b@c/", ""},
      {"http://us er:p%40ss:w@h/", ""},
      {"http://h/a b/c\"d<e>`f{g}|h^i", ""},
      {"http://h/%2e%2E/x/.%2e/y/%2e/z", ""},
      {"http://h/a/b/..", ""},
      {"http://h/a/b/.", ""},
      {"http://h/a/../../..", ""},
      {"http://h/?q='a b'\"<>#f rag`", ""},
      {"foo://h/?q='a b'", ""},
      {"http://h/\xC3\xA9t\xC3\xA9?\xC3\xA9#\xC3\xA9", ""},
      {"  \t http://h/a\tb\nc\rd  \x01", ""},
      {"mailto:someone@example.com", ""},
      {"javascript:alert(1)", ""},
      {"urn:isbn:0451450523", ""},
      {"data:text/plain,hi there", ""},
      {"non-special://host/p?q#f", ""},
      {"non-special://Host:99/p", ""},
      {"non-special:/.//p", ""},
      {"non-special://h o/", ""},
      {"sc://%41/", ""},
      {"file:///etc/passwd", ""},
      {"file://localhost/etc/hosts", ""},
      {"file://Host/share/a", ""},
      {"file:///C:/x/../..", ""},
      {"file:/a/b", ""},
      {"", ""},
      {"no scheme", ""},
      {"1http://h/", ""},
      {"http://", ""},
      {"https://", ""},
      {"/search?q=caf%C3%A9", "http://localhost:3000/index.html"},
      {"other.html", "http://h/dir/page.html?x#y"},
      {"../up", "http://h/a/b/c"},
      {"../../../../up", "http://h/a/b/c"},
      {"./", "http://h/a/b/c"},
      {"?only=query", "http://h/a/b?old#frag"},
      {"#only-fragment", "http://h/a/b?old#frag"},
      {"", "http://h/a/b?old#frag"},
      {"//other.host/p", "https://h/a"},
      {"\\\\other.host\\p", "https://h/a"},
      {"http:relative", "http://h/a/b"},
      {"https:relative", "http://h/a/b"},
      {"/abs", "non-special://h/a/b"},
      {"rel", "mailto:x@y"},
      {"#f", "mailto:x@y"},
      {"x", "not a url"},
      {"b.txt", "file:///dir/a.txt"},
      {"/root", "file:///C:/dir/a.txt"},
  };
  json cases = json::array();
  for (const auto& [input, base] : inputs) cases.push_back({input, base});
  json expected = node_answers(R"(
    try {
      const u = c[1] ? new URL(c[0], c[1]) : new URL(c[0]);
      return { href: u.href, origin: u.origin, protocol: u.protocol, username: u.username, password: u.password,
               host: u.host, hostname: u.hostname, port: u.port, pathname: u.pathname, search: u.search, hash: u.hash };
    } catch (e) { return { error: e.code }; })",
                               cases);
  if (expected.is_null()) GTEST_SKIP() << "node is not installed: nothing to compare with";
  ASSERT_EQ(expected.size(), inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const auto& [input, base] = inputs[i];
    crew::result<crew::url> u = base.empty() ? crew::url::parse(input) : crew::url::parse(input, base);
    json got;
    if (u)
      got = {{"href", u->href()},       {"origin", u->origin()},     {"protocol", u->protocol()},
             {"username", u->username()}, {"password", u->password()}, {"host", u->host()},
             {"hostname", u->hostname()}, {"port", u->port()},         {"pathname", u->pathname()},
             {"search", u->search()},   {"hash", u->hash()}};
    else
      got = {{"error", crew::error_name(u.error())}};
    EXPECT_EQ(got, expected[i]) << "new URL(" << json(input).dump() << (base.empty() ? "" : ", " + json(base).dump())
                                << ")";
  }
}

TEST(url, a_host_outside_ascii_is_refused_rather_than_converted_otherwise_than_node) {
  crew::result<crew::url> u = crew::url::parse("http://m\xC3\xBCnchen.de/");
  EXPECT_EQ(crew::error_name(u.error()), "ERR_INVALID_URL");
}

TEST(url, search_params_read_a_query_as_node_does) {
  std::vector<std::string> queries = {
      "a=1&b=2&a=3",
      "?q=caf%C3%A9+au+lait&empty=&novalue&=noname&&x==y",
      "bad=%zz%4&half=%e2%82&plus=%2B+&upper=%C3%A9%c3%a9",
      "arr[]=1&arr[]=2&sp ace=a b",
      "%FF=%fe&%e2%82%ac=euro",
      "",
      "?",
      "z=1&a=2&\xF0\x9F\x98\x80=3&\xEF\xBC\xA1=4&A=5&a=6",
  };
  json cases = json::array();
  for (const std::string& q : queries) cases.push_back(q);
  json expected = node_answers(R"(
    const p = new URLSearchParams(c);
    const pairs = [...p];
    const out = { pairs, size: p.size, string: p.toString(), a: p.get('a'), all: p.getAll('a'), has: p.has('a') };
    p.sort();
    out.sorted = p.toString();
    p.set('a', 'set & done');
    p.append('new one', '\u00e9 ~*-._!\'()');
    out.changed = p.toString();
    p.delete('a');
    out.deleted = p.toString();
    return out;)",
                               cases);
  if (expected.is_null()) GTEST_SKIP() << "node is not installed: nothing to compare with";
  for (std::size_t i = 0; i < queries.size(); ++i) {
    crew::url_search_params p(queries[i]);
    json pairs = json::array();
    for (const auto& [name, value] : p) pairs.push_back({name, value});
    json got = {{"pairs", pairs},
                {"size", p.size()},
                {"string", p.to_string()},
                {"a", p.get("a") ? json(*p.get("a")) : json(nullptr)},
                {"all", p.get_all("a")},
                {"has", p.has("a")}};
    p.sort();
    got["sorted"] = p.to_string();
    p.set("a", "set & done");
    p.append("new one", "\u00e9 ~*-._!'()");
    got["changed"] = p.to_string();
    p.remove("a");
    got["deleted"] = p.to_string();
    EXPECT_EQ(got, expected[i]) << "new URLSearchParams(" << json(queries[i]).dump() << ")";
  }
}

TEST(url, search_params_come_from_the_url_query) {
  crew::result<crew::url> u = crew::url::parse("/find?q=a%20b&q=c+d", "http://localhost");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->search_params().get_all("q"), (std::vector<std::string>{"a b", "c d"}));
  EXPECT_FALSE(u->search_params().get("missing"));
}

}  // namespace
