// NODE_CLUSTER control messages: a pure reader and its inverse.
#include <limits>

#include "detail/cluster_wire.hpp"

namespace crew::cluster::wire {
namespace {

using json = message::value_type;

struct name_of_act {
  act what;
  const char* name;
};
constexpr name_of_act acts[] = {
    {act::online, "online"},
    {act::query_server, "queryServer"},
    {act::listening, "listening"},
    {act::close, "close"},
    {act::exited_after_disconnect, "exitedAfterDisconnect"},
    {act::figures, "crew:figures"},
    {act::newconn, "newconn"},
    {act::disconnect, "disconnect"},
};

const json* field(const json& v, const char* name) {
  auto it = v.find(name);
  return it == v.end() ? nullptr : &*it;
}

// An integer in [low, high], or nothing (absent, another type, out of range).
std::optional<std::int64_t> integer(const json& v, const char* name, std::int64_t low, std::int64_t high) {
  const json* f = field(v, name);
  if (!f) return std::nullopt;
  if (f->is_number_unsigned()) {
    auto n = f->get<std::uint64_t>();
    if (n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    auto value = static_cast<std::int64_t>(n);
    return value >= low && value <= high ? std::optional(value) : std::nullopt;
  }
  if (!f->is_number_integer()) return std::nullopt;
  auto value = f->get<std::int64_t>();
  return value >= low && value <= high ? std::optional(value) : std::nullopt;
}

std::optional<std::string> text(const json& v, const char* name) {
  const json* f = field(v, name);
  if (!f || !f->is_string() || f->get_ref<const std::string&>().size() > max_text) return std::nullopt;
  return f->get<std::string>();
}

bool flag(const json& v, const char* name) {
  const json* f = field(v, name);
  return f && f->is_boolean() && f->get<bool>();
}

constexpr std::int64_t max_seq = std::numeric_limits<long>::max();

// queryServer and listening: host and port, and the family (from the host when
// not given: Node sends 4 or 6).
bool read_address(const json& v, control& c, bool strict) {
  std::optional<std::string> address = text(v, "address");
  std::optional<std::int64_t> port = integer(v, "port", 0, 65535);
  if (strict && (!address || !port)) return false;
  c.address = address.value_or("");
  c.port = address && port ? static_cast<int>(*port) : -1;
  std::optional<std::int64_t> type = integer(v, "addressType", 4, 6);
  c.address_type = type == 6 || (!type && c.address.find(':') != std::string::npos) ? 6 : 4;
  return true;
}

}  // namespace

std::optional<control> read_control(const json& v) {
  if (!v.is_object()) return std::nullopt;
  const json* cmd = field(v, "cmd");
  if (!cmd || !cmd->is_string() || cmd->get_ref<const std::string&>() != "NODE_CLUSTER") return std::nullopt;
  control c;
  const json* what = field(v, "act");
  if (!what) {
    // An answer: to a newconn (accepted) or to a queryServer (errno, or the port).
    std::optional<std::int64_t> ack = integer(v, "ack", 0, max_seq);
    if (!ack) return std::nullopt;
    c.what = act::answer;
    c.ack = static_cast<long>(*ack);
    c.accepted = flag(v, "accepted");
    c.error = static_cast<int>(integer(v, "errno", std::numeric_limits<int>::min(), -1).value_or(0));
    c.port = static_cast<int>(integer(v, "port", 0, 65535).value_or(-1));
    c.key = text(v, "key").value_or("");
    if (std::optional<std::string> name = text(v, "policy"))
      c.scheduling = policy_named(*name).value_or(policy::round_robin);
    return c;
  }
  if (!what->is_string()) return std::nullopt;
  const auto& name = what->get_ref<const std::string&>();
  const name_of_act* known = nullptr;
  for (const name_of_act& a : acts)
    if (name == a.name) known = &a;
  if (!known) return std::nullopt;
  c.what = known->what;
  switch (c.what) {
    case act::query_server: {
      std::optional<std::int64_t> seq = integer(v, "seq", 0, max_seq);
      if (!seq) return std::nullopt;  // nothing to answer
      c.seq = static_cast<long>(*seq);
      read_address(v, c, false);
      c.backlog = static_cast<int>(integer(v, "backlog", 1, 65535).value_or(511));
      c.ipv6_only = flag(v, "ipv6Only");
      return c;
    }
    case act::listening:
      if (!read_address(v, c, true)) return std::nullopt;
      return c;
    case act::close: {
      std::optional<std::string> key = text(v, "key");
      if (!key) return std::nullopt;
      c.key = std::move(*key);
      return c;
    }
    case act::newconn: {
      std::optional<std::string> key = text(v, "key");
      std::optional<std::int64_t> seq = integer(v, "seq", 0, max_seq);
      if (!key || !seq) return std::nullopt;
      c.key = std::move(*key);
      c.seq = static_cast<long>(*seq);
      return c;
    }
    case act::figures: {
      const json* f = field(v, "requests");
      if (!f || !f->is_number_unsigned()) return std::nullopt;
      c.requests = f->get<std::uint64_t>();
      return c;
    }
    case act::online:
    case act::exited_after_disconnect:
    case act::disconnect:
    case act::answer:
      return c;
  }
  return std::nullopt;
}

json write_control(const control& c) {
  json v{{"cmd", "NODE_CLUSTER"}};
  if (c.what == act::answer) {
    v["ack"] = c.ack;
    if (c.accepted) v["accepted"] = true;
    if (c.error != 0) v["errno"] = c.error;
    if (c.port >= 0) v["port"] = c.port;
    if (!c.key.empty()) v["key"] = c.key;
    if (c.scheduling != policy::round_robin) v["policy"] = std::string(policy_name(c.scheduling));
    return v;
  }
  for (const name_of_act& a : acts)
    if (a.what == c.what) v["act"] = a.name;
  switch (c.what) {
    case act::query_server:
      v["seq"] = c.seq;
      v["address"] = c.address;
      if (c.port >= 0) v["port"] = c.port;
      v["addressType"] = c.address_type;
      v["backlog"] = c.backlog;
      if (c.ipv6_only) v["ipv6Only"] = true;
      break;
    case act::listening:
      v["address"] = c.address;
      v["port"] = c.port;
      v["addressType"] = c.address_type;
      break;
    case act::close:
      v["key"] = c.key;
      break;
    case act::newconn:
      v["key"] = c.key;
      v["seq"] = c.seq;
      break;
    case act::figures:
      v["requests"] = c.requests;
      break;
    case act::online:
    case act::exited_after_disconnect:
    case act::disconnect:
    case act::answer:
      break;
  }
  return v;
}

}  // namespace crew::cluster::wire
