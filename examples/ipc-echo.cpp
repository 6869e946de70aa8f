// ipc-echo: an IPC child for any parent that gives it a channel (Node's
// fork(), or spawn(..., {stdio: [..., 'ipc']}), or crew::fork()). Every message
// goes back unchanged, in order; the program exits 0 when the channel closes.
//
//   const child = spawn('build/bin/ipc-echo', [], {stdio: ['inherit', 'inherit', 'inherit', 'ipc']});
//   child.on('message', m => ...); child.send({hello: 'world'});
#include <crew/crew.hpp>

#include <unistd.h>

#include <cstdio>

int main() {
  crew::ipc_channel* parent = crew::parent_channel();
  if (!parent) {
    std::fprintf(stderr, "ipc-echo: no IPC channel (start me from Node's fork/spawn with 'ipc', or crew::fork)\n");
    return 2;
  }
  parent->on_message([parent](crew::message m) {
    // Descriptors received with a message go back with it, then are closed here.
    std::vector<int> fds = m.fds();
    parent->send(std::move(m), [fds](std::error_code) {
      for (int fd : fds) close(fd);
    });
  });
  parent->on_error([](std::error_code ec) { std::fprintf(stderr, "ipc-echo: %s\n", crew::error_name(ec).c_str()); });
  crew::loop::current().run();  // until the parent disconnects
  return 0;
}
