// Small blocking HTTP/1.1 clients for tests: servers in other processes
// (cluster workers, crew-server) and the hostile clients of http_test.
// 127.0.0.1 only; every read waits at most 10 s.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace crew::test {

/// Connects to 127.0.0.1:port, with a 10 s receive timeout and, if given, a
/// small receive buffer (set before connecting, so that the window stays
/// small: a slow reader). -1 on failure.
inline int connect_to(int port, int receive_buffer = 0) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (receive_buffer > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return fd;
  close(fd);
  return -1;
}

/// A socket listening on 127.0.0.1, holding a free port for a test that
/// needs the port taken. Closes on destruction unless release()d.
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
  ~held_port() {
    if (fd_ >= 0) close(fd_);
  }
  held_port(const held_port&) = delete;
  held_port& operator=(const held_port&) = delete;
  /// The port; 0 if none could be had.
  int port() const noexcept { return port_; }
  /// The listening socket.
  int fd() const noexcept { return fd_; }
  /// Gives the listening socket away (to a server's listen_fd).
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
  int port_ = 0;
};

struct http_answer {
  int status = 0;  ///< 0: the request failed (refused, reset, cut short)
  std::string head;
  std::string body;  ///< chunked encoding removed
};

/// One client connection with a read buffer: pipelines, reads slowly, reads
/// answers (interim ones included) or every byte.
class http_connection {
 public:
  explicit http_connection(int fd = -1) noexcept : fd_(fd) {}
  /// Connects to 127.0.0.1:port; is_open() tells whether it worked.
  static http_connection to(int port, int receive_buffer = 0) {
    return http_connection(connect_to(port, receive_buffer));
  }
  http_connection(http_connection&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), in_(std::move(other.in_)), pause_(other.pause_) {}
  http_connection& operator=(http_connection&& other) noexcept {
    std::swap(fd_, other.fd_);
    std::swap(in_, other.in_);
    pause_ = other.pause_;
    return *this;
  }
  ~http_connection() { close(); }

  bool is_open() const noexcept { return fd_ >= 0; }
  int fd() const noexcept { return fd_; }
  void close() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  /// Reads at most `bytes` at a time, pausing `pause` before each read: a slow, steady reader.
  void read_slowly(std::size_t bytes, std::chrono::milliseconds pause) noexcept {
    chunk_ = bytes;
    pause_ = pause;
  }

  /// Sends every byte; false once the server has gone (reset, closed).
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  /// Reads once more into the buffer; false at the end, on an error or after 10 s without a byte.
  bool fill() {
    if (pause_.count() > 0) std::this_thread::sleep_for(pause_);
    char buffer[64 * 1024];
    ssize_t n = recv(fd_, buffer, std::min(sizeof buffer, chunk_), 0);
    if (n <= 0) return false;
    in_.append(buffer, static_cast<std::size_t>(n));
    return true;
  }

  /// What the server sent next (at least a byte), as it came; "" once the connection ends.
  std::string read_some() {
    if (in_.empty() && !fill()) return {};
    return std::exchange(in_, {});
  }

  /// Everything until the server closes.
  std::string read_to_end() {
    while (fill()) {
    }
    return std::exchange(in_, {});
  }

  /// What arrives up to the end of `text`; "" if the connection ends first.
  std::string read_until(std::string_view text) {
    std::size_t at;
    while ((at = in_.find(text)) == std::string::npos)
      if (!fill()) return "";
    std::string out = in_.substr(0, at + text.size());
    in_.erase(0, at + text.size());
    return out;
  }

  /// The next answer, an interim 100 Continue included (status 0 if the
  /// connection ends first). `head_only` for the answer to a HEAD request.
  http_answer answer(bool head_only = false) {
    std::string head = read_until("\r\n\r\n");
    if (head.size() < 12 || !head.starts_with("HTTP/1.1 ")) return {};
    head.resize(head.size() - 4);
    http_answer a{std::stoi(head.substr(9, 3)), head, {}};
    std::string lower = head;
    for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    if (head_only || a.status < 200 || a.status == 204 || a.status == 304) return a;
    if (lower.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
      for (;;) {
        std::string line = read_until("\r\n");
        if (line.empty()) return {};
        std::size_t size = std::stoul(line, nullptr, 16);
        if (size == 0) return read_until("\r\n").empty() ? http_answer{} : a;
        if (!take(size + 2)) return {};
        a.body += in_.substr(0, size);
        in_.erase(0, size + 2);
      }
    }
    std::size_t length_at = lower.find("\r\ncontent-length: ");
    if (length_at == std::string::npos) {  // the body runs to the close
      a.body = read_to_end();
      return a;
    }
    std::size_t length = std::stoul(lower.substr(length_at + 18));
    if (!take(length)) return {};
    a.body = in_.substr(0, length);
    in_.erase(0, length);
    return a;
  }

 private:
  bool take(std::size_t bytes) {
    while (in_.size() < bytes)
      if (!fill()) return false;
    return true;
  }

  int fd_ = -1;
  std::string in_;
  std::size_t chunk_ = 64 * 1024;
  std::chrono::milliseconds pause_{0};
};

/// One request on a connection of its own (Connection: close).
inline http_answer request(int port, const std::string& method, const std::string& path, const std::string& body = "") {
  http_connection c = http_connection::to(port);
  if (!c.is_open()) return {};
  std::string text = method + " " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body;
  return c.send(text) ? c.answer() : http_answer{};
}

/// A keep-alive client, as wrk is: one connection for request after request,
/// a new one after an answer with Connection: close.
class http_client {
 public:
  explicit http_client(int port) : port_(port) {}

  /// Connects now (get() connects when it has no connection).
  bool connect() {
    if (!connection_.is_open()) connection_ = http_connection::to(port_);
    return connection_.is_open();
  }

  http_answer get(const std::string& path = "/") {
    if (!connect()) return {};
    http_answer answer;
    if (connection_.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")) answer = connection_.answer();
    if (answer.status == 0 || answer.head.find("Connection: close") != std::string::npos) connection_.close();
    return answer;
  }

 private:
  int port_;
  http_connection connection_;
};

}  // namespace crew::test
