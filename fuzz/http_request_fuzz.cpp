// The HTTP request path through a real server connection: a script of writes
// (split wherever the fuzzer likes, so requests arrive pipelined and cut at
// any byte), loop turns, late answers, half-closes, graceful closes and the
// server's destruction, played against an http::server that adopted one end
// of a Unix socketpair (as a cluster worker adopts a handed-over connection).
//
// Input: one config byte (its low bits shrink max_header_bytes, so that the
// limits are met often), then records, each an op byte (op & 7) and what it needs:
//   0  write the next (op >> 3) + 1 bytes
//   1  write the next (next byte) + 1 bytes
//   2  one loop turn, then read what the server wrote
//   3  answer the responses kept by /later (op & 8: streamed; op & 16: dropped)
//   4  the client shuts down its writing side
//   5  close() the server gracefully
//   6  destroy the server
//   7  write the rest of the input
// Routes: /echo (the body back), /upload (streamed body), /stream (streamed
// answer), /later (answered by op 3), /header (request data as a header and
// status), /json, /close and /destroy (from inside the handler), /drop (no
// answer: 500), anything else 404.
//
// Properties checked on every input, beyond "no crash, no leak, no UB":
//   - no handler or event runs inside a call to the server or a response
//     (send, write, end, close, on_data...);
//   - none runs after the server is destroyed;
//   - close()'s done runs exactly once when the loop runs to the end;
//   - what the server writes parses as HTTP/1.1 answers (llhttp, response
//     mode): no response splitting, no broken framing. HEAD answers have no
//     body, which a response parser cannot know, so "HEAD" in the input is
//     made "HEAX" first.
//
#include <llhttp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <optional>
#include <string>
#include <string_view>

#include "crew/http.hpp"

namespace {

using crew::http::request;
using crew::http::response;

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "http fuzz: %s\n", what);
  std::abort();
}

struct input {
  std::string data;
  std::size_t at = 0;
  bool empty() const { return at == data.size(); }
  std::uint8_t byte() { return empty() ? 0 : static_cast<std::uint8_t>(data[at++]); }
  std::string_view bytes(std::size_t n) {
    n = std::min(n, data.size() - at);
    std::string_view taken(data.data() + at, n);
    at += n;
    return taken;
  }
};

struct session {
  crew::loop loop;
  std::optional<crew::http::server> server;
  int client = -1;
  std::string output;  // what the server wrote, as the client read it
  bool output_complete = true;
  std::list<response> later;
  bool in_call = false;     // inside a call to the server or a response
  bool destroyed = false;   // the server was destroyed
  bool close_called = false;
  int closes_done = 0;

  void event() {
    if (in_call) broken("a handler or event ran inside the call that caused it");
    if (destroyed) broken("a handler or event ran after the server was destroyed");
  }

  template <class F>
  void call(F&& f) {
    bool outer = in_call;
    in_call = true;
    f();
    in_call = outer;
  }

  crew::http::router routes() {
    crew::http::router r;
    r.post("/echo", [this](request& req, response& res) {
      event();
      call([&] { res.send(req.body); });
    });
    r.post("/json", [this](request& req, response& res) {
      event();
      call([&] { res.send(req.json() ? "json" : "not json"); });
    });
    r.post("/upload", [this](request& req, response& res) {
      event();
      auto bytes = std::make_shared<std::size_t>(0);
      call([&] {
        req.on_data([this, bytes](std::string_view chunk) {
          event();
          *bytes += chunk.size();
        });
        req.on_end([this, bytes, res = std::move(res)](std::error_code ec) mutable {
          event();
          call([&] { res.send(ec ? crew::error_name(ec) : std::to_string(*bytes)); });
        });
      });
    }, {.stream_body = true});
    r.get("/stream", [this](request& req, response& res) {
      event();
      call([&] {
        res.set_header("Content-Type", "text/plain");
        for (char c : req.query.substr(0, 8)) res.write(std::string(static_cast<unsigned char>(c) % 64, c));
        res.end("done");
      });
    });
    r.get("/later", [this](request&, response& res) {
      event();
      res.on_close([this] { event(); });
      later.push_back(std::move(res));
    });
    r.get("/header", [this](request& req, response& res) {
      event();
      call([&] {
        try {
          res.set_header("X-Echo", std::string(req.header("x-in")));
          res.set_header(std::string(req.header("x-name")), "v");
        } catch (const std::system_error&) {
        }
        try {
          res.status(std::atoi(req.query.c_str()), req.header("x-reason"));
        } catch (const std::system_error&) {
        }
        res.send("header");
      });
    });
    r.get("/close", [this](request&, response& res) {
      event();
      call([&] {
        res.send("closing");
        close();
      });
    });
    r.get("/destroy", [this](request&, response&) {
      event();
      destroy();
    });
    r.get("/drop", [this](request&, response&) { event(); });
    return r;
  }

  void close() {
    if (!server || close_called) return;
    close_called = true;
    call([&] {
      server->close([this] {
        if (in_call) broken("close()'s done ran inside a call");
        ++closes_done;
      });
    });
  }

  void destroy() {
    if (!server) return;
    call([&] { server.reset(); });
    destroyed = true;
  }

  void answer_later(std::uint8_t how) {
    for (response& res : later)
      call([&] {
        if (how & 16) return;  // dropped below: the server answers 500 (or closes)
        if (how & 8) {
          res.write("part");
          res.end();
        } else {
          res.send("later");
        }
      });
    call([&] { later.clear(); });
  }

  void write(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(client, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n <= 0) return;  // the server stopped reading (back-pressure) or left: the rest is dropped
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  void turn() {
    uv_run(loop.native(), UV_RUN_NOWAIT);
    char buffer[16 * 1024];
    for (ssize_t n; (n = recv(client, buffer, sizeof buffer, MSG_DONTWAIT)) > 0;) {
      if (output.size() < (1u << 20))
        output.append(buffer, static_cast<std::size_t>(n));
      else
        output_complete = false;
    }
  }
};

// What the server wrote must parse as a sequence of HTTP/1.1 answers.
void check_answers(const std::string& output) {
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &settings);
  llhttp_errno_t rc = llhttp_execute(&parser, output.data(), output.size());
  // A handler may answer 101 (the /header route takes its status from the
  // request): the rest is another protocol as far as a client knows.
  if (rc != HPE_OK && rc != HPE_PAUSED_UPGRADE) {
    std::fprintf(stderr, "http fuzz: %s at %zu of:\n%s\n", llhttp_errno_name(rc),
                 static_cast<std::size_t>(llhttp_get_error_pos(&parser) - output.data()), output.c_str());
    broken("the server wrote something that is not HTTP");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  input in{std::string(reinterpret_cast<const char*>(data), size)};
  for (std::size_t at; (at = in.data.find("HEAD")) != std::string::npos;) in.data[at + 3] = 'X';
  std::uint8_t config = in.byte();

  int ends[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) return 0;
  {
    session s;
    s.client = ends[1];
    s.server.emplace(s.routes(), crew::http::server_options{.max_header_bytes = 64u + (config & 7u) * 128u,
                                                             .max_body_bytes = 2048});
    if (s.server->tcp().adopt_connection(ends[0])) broken("adopt_connection failed");
    while (!in.empty()) {
      std::uint8_t op = in.byte();
      switch (op & 7) {
        case 0: s.write(in.bytes((op >> 3) + 1u)); break;
        case 1: s.write(in.bytes(in.byte() + 1u)); break;
        case 2: s.turn(); break;
        case 3: s.answer_later(op); break;
        case 4: shutdown(s.client, SHUT_WR); break;
        case 5: s.close(); break;
        case 6: s.destroy(); break;
        case 7: s.write(in.bytes(in.data.size())); break;
      }
    }
    // The end: the client has said all it will; the loop runs until quiet.
    shutdown(s.client, SHUT_WR);
    for (int i = 0; i < 64; ++i) s.turn();
    s.answer_later(0);
    for (int i = 0; i < 64; ++i) s.turn();
    if (s.output_complete) check_answers(s.output);
    s.destroy();
    for (int i = 0; i < 8; ++i) s.turn();
    if (s.closes_done > 1) broken("close()'s done ran twice");
    if (s.close_called && s.closes_done != 1) broken("close()'s done never ran");
    ::close(s.client);
  }
  return 0;
}
