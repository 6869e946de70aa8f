// What the cluster's primary and workers share: Node's NODE_CLUSTER control
// messages and the listening sockets they make.
#pragma once

#include <string>

#include "crew/error.hpp"
#include "crew/message.hpp"

namespace crew::cluster::wire {

/// {"cmd":"NODE_CLUSTER","act":act}, Node's internal cluster message.
inline message::value_type control(std::string act) {
  return message::value_type{{"cmd", "NODE_CLUSTER"}, {"act", std::move(act)}};
}

// Fields of a control message, read without trusting the peer: a missing
// field or one of another type reads as the fallback (never an exception).
inline std::string text_at(const message::value_type& m, const char* key, std::string fallback = "") {
  auto it = m.is_object() ? m.find(key) : m.end();
  return it != m.end() && it->is_string() ? it->get<std::string>() : fallback;
}
inline long number_at(const message::value_type& m, const char* key, long fallback = 0) {
  auto it = m.is_object() ? m.find(key) : m.end();
  return it != m.end() && it->is_number_integer() ? it->get<long>() : fallback;
}
inline bool flag_at(const message::value_type& m, const char* key) {
  auto it = m.is_object() ? m.find(key) : m.end();
  return it != m.end() && it->is_boolean() && it->get<bool>();
}

/// A non-blocking TCP socket bound to host:port (IPv4), with SO_REUSEPORT if
/// asked, listening unless `backlog` is 0. Errors: EINVAL, EADDRINUSE...
result<int> bound_socket(const std::string& host, int port, bool reuse_port, int backlog);

/// The port a socket is bound to.
int port_of(int fd);

}  // namespace crew::cluster::wire
