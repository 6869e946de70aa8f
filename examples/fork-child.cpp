// fork-child: the child of fork-parent, the seeds' child.js in C++. It finds
// its IPC channel by itself (NODE_CHANNEL_FD, as a Node child would) and answers:
//   {num: n}          -> {result: n * 2}
//   {message: text}   -> {response: TEXT}          (upper-cased)
//   anything else     -> {received: true}
// It exits when the parent disconnects.
#include <crew/crew.hpp>

#include <cctype>
#include <cstdio>
#include <unistd.h>

int main() {
  crew::ipc_channel* parent = crew::parent_channel();
  if (!parent) {
    std::fprintf(stderr, "fork-child: start me with fork-parent (or any parent with an IPC channel)\n");
    return 2;
  }
  using json = crew::message::value_type;
  parent->on_message([parent](crew::message m) {
    std::printf("[child %d] Message from parent: %s\n", static_cast<int>(getpid()), m.to_string().c_str());
    std::fflush(stdout);
    const json& v = m.value();
    if (v.contains("num") && v["num"].is_number_integer()) {
      parent->send(json{{"result", v["num"].get<long long>() * 2}});
    } else if (v.contains("num") && v["num"].is_number()) {
      parent->send(json{{"result", v["num"].get<double>() * 2}});
    } else if (v.contains("message") && v["message"].is_string()) {
      std::string text = v["message"];
      for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      parent->send(json{{"response", text}});
    } else {
      parent->send(json{{"received", true}});
    }
  });
  crew::loop::current().run();
  return 0;
}
