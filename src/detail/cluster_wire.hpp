// What the cluster's primary and workers say to each other: Node's
// NODE_CLUSTER control messages, read into a checked struct by a pure function
// (fuzz/cluster_control_fuzz.cpp drives it) and written back by its inverse.
//
// Node's shapes (lib/internal/cluster/): a message is
// {"cmd":"NODE_CLUSTER","act":...,"seq":N}, and its answer carries "ack":N and
// no "act". Worker to primary: online, queryServer {address, port,
// addressType, backlog, ipv6Only}, listening {address, port, addressType},
// close {key}, exitedAfterDisconnect, crew:figures {requests} (crew's), and
// the answer to a newconn {accepted}. Primary to worker: newconn {key} with
// the connection's descriptor, disconnect, and the answer to queryServer
// {errno | port, key, policy} (with the listening socket, for `shared`).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "crew/cluster.hpp"
#include "crew/message.hpp"

namespace crew::cluster::wire {

/// A control message's kind ("act" on the wire; an answer has none).
enum class act : std::uint8_t {
  online,
  query_server,
  listening,
  close,
  exited_after_disconnect,
  figures,
  newconn,
  disconnect,
  answer,
};

/// Longest host name or key read from the wire (a DNS name is at most 253 bytes).
constexpr std::size_t max_text = 255;

/// One control message, every field checked. Only the fields of its act are
/// read or written; the others keep their defaults.
struct control {
  act what = act::online;
  long seq = -1;  ///< queryServer, newconn: the number its answer carries; >= 0
  long ack = -1;  ///< answer: the seq it answers; >= 0
  /// queryServer, listening: the host. A queryServer whose host is not text of
  /// at most max_text bytes, or whose port is out of range, reads with port -1
  /// (the primary answers EINVAL).
  std::string address;
  int port = -1;         ///< queryServer, listening, answer: 0..65535, or -1
  int address_type = 4;  ///< queryServer, listening: 4 or 6
  int backlog = 511;     ///< queryServer: 1..65535
  bool ipv6_only = false;   ///< queryServer
  std::string key;          ///< close, newconn, answer: the primary's name for a port
  bool accepted = false;    ///< answer to a newconn
  std::uint64_t requests = 0;  ///< crew:figures
  int error = 0;  ///< answer to a queryServer: a libuv error code (< 0), or 0
  policy scheduling = policy::round_robin;  ///< answer to a queryServer
  bool operator==(const control&) const = default;
};

/// Reads a control message without trusting its sender: nothing for a value
/// that is not a NODE_CLUSTER message, has an unknown act, or lacks a field
/// its act needs (seq, ack, key, requests, a listening address) or has one of
/// the wrong type. Never throws; keeps no state.
std::optional<control> read_control(const message::value_type& v);

/// The message read_control() reads back as `c`.
message::value_type write_control(const control& c);

}  // namespace crew::cluster::wire
