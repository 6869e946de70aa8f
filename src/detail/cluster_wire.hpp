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

/// A non-blocking TCP socket bound to host:port (IPv4), with SO_REUSEPORT if
/// asked, listening unless `backlog` is 0. Errors: EINVAL, EADDRINUSE...
result<int> bound_socket(const std::string& host, int port, bool reuse_port, int backlog);

/// The port a socket is bound to.
int port_of(int fd);

}  // namespace crew::cluster::wire
