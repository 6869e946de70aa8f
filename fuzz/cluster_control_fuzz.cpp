// NODE_CLUSTER control messages as the primary and its workers read them
// (src/detail/cluster_wire.hpp): bytes parsed as an IPC line's message, then
// read by wire::read_control without trusting the sender.
//
// Properties checked on every input, beyond "no crash, no leak, no UB":
//   - read_control never throws, and what it accepts is in range: seq and ack
//     -1 or more (ack 0 or more for an answer), ports -1..65535, address_type 4
//     or 6, backlog 1..65535, texts of at most max_text bytes, errno negative
//     or 0;
//   - what it accepts, written back by write_control and sent as text, reads
//     back the same (the wire's round trip).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "../src/detail/cluster_wire.hpp"

namespace {

using crew::cluster::wire::act;
using crew::cluster::wire::control;

[[noreturn]] void broken(const char* what, std::string_view input) {
  std::fprintf(stderr, "cluster_control fuzz: %s\ninput: %.*s\n", what, static_cast<int>(input.size()), input.data());
  std::abort();
}

bool in_range(const control& c) {
  using crew::cluster::wire::max_text;
  return c.seq >= -1 && c.ack >= -1 && (c.what != act::answer || c.ack >= 0) && c.port >= -1 && c.port <= 65535 &&
         (c.address_type == 4 || c.address_type == 6) && c.backlog >= 1 && c.backlog <= 65535 &&
         c.address.size() <= max_text && c.key.size() <= max_text && c.error <= 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  crew::result<crew::message> m = crew::message::parse(text);
  if (!m) return 0;
  std::optional<control> c = crew::cluster::wire::read_control(m->value());
  if (!c) return 0;
  if (!in_range(*c)) broken("a field out of range", text);
  crew::message written(crew::cluster::wire::write_control(*c));
  crew::result<crew::message> back = crew::message::parse(written.to_string());
  if (!back) broken("the writer's text does not parse", text);
  if (crew::cluster::wire::read_control(back->value()) != c) broken("the round trip changed the message", text);
  return 0;
}
