// A small blocking HTTP/1.1 client for tests that talk to servers in other
// processes (cluster workers, crew-server). 127.0.0.1 only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace crew::test {

/// Connects to 127.0.0.1:port, with a 10 s receive timeout; -1 on failure.
inline int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return fd;
  close(fd);
  return -1;
}

/// A socket listening on 127.0.0.1, holding a free port for a test that
/// needs the port taken. Closes on destruction.
class held_port {
 public:
  held_port() : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    socklen_t length = sizeof address;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 && ::listen(fd_, 1) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0)
      port_ = ntohs(address.sin_port);
  }
  ~held_port() { close(fd_); }
  held_port(const held_port&) = delete;
  held_port& operator=(const held_port&) = delete;
  /// The port; 0 if none could be had.
  int port() const noexcept { return port_; }

 private:
  int fd_;
  int port_ = 0;
};

struct http_answer {
  int status = 0;  ///< 0: the request failed (refused, reset, cut short)
  std::string head;
  std::string body;
};

/// Reads one answer from fd (Content-Length bodies).
inline http_answer read_answer(int fd) {
  std::string in;
  char buffer[16 * 1024];
  for (;;) {
    std::size_t head = in.find("\r\n\r\n");
    if (head != std::string::npos) {
      std::size_t length_at = in.find("Content-Length: ");
      std::size_t length = length_at < head ? std::stoul(in.substr(length_at + 16)) : 0;
      if (in.size() >= head + 4 + length && in.starts_with("HTTP/1.1 "))
        return {std::stoi(in.substr(9, 3)), in.substr(0, head), in.substr(head + 4, length)};
    }
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) return {};
    in.append(buffer, static_cast<std::size_t>(n));
  }
}

/// One request on a connection of its own (Connection: close).
inline http_answer request(int port, const std::string& method, const std::string& path, const std::string& body = "") {
  int fd = connect_to(port);
  if (fd < 0) return {};
  std::string text = method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body;
  http_answer answer;
  if (send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size())) answer = read_answer(fd);
  close(fd);
  return answer;
}

/// A keep-alive client, as wrk is: one connection for request after request,
/// a new one after an answer with Connection: close.
class http_client {
 public:
  explicit http_client(int port) : port_(port) {}
  ~http_client() { reset(); }
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// Connects now (get() connects when it has no connection).
  bool connect() {
    if (fd_ < 0) fd_ = connect_to(port_);
    return fd_ >= 0;
  }

  http_answer get(const std::string& path = "/") {
    if (!connect()) return {};
    std::string text = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
    http_answer answer;
    if (send(fd_, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size())) answer = read_answer(fd_);
    if (answer.status == 0 || answer.head.find("Connection: close") != std::string::npos) reset();
    return answer;
  }

 private:
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int port_;
  int fd_ = -1;
};

}  // namespace crew::test
