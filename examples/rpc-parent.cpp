// rpc-parent [SCRIPT]: request/response over Node's IPC, with ids. Forks
// rpc-child (next to this program), or `node SCRIPT` (rpc-child.js), sends it
// three {op: "add", a, b} requests one after the other and prints each result.
// request() gives each message an id and awaits the reply that carries it back:
//
//   const child = fork('rpc-child.js');
//   for (let i = 1; i <= 3; i++) console.log(`${i} + ${10 * i} =`, (await request(child, {op: 'add', a: i, b: 10 * i})).result);
#include <crew/crew.hpp>

#include <cstdio>
#include <filesystem>

using json = crew::message::value_type;
using namespace std::chrono_literals;

crew::task<> ask(crew::child_process& child, int& failures) {
  for (int i = 1; i <= 3; ++i) {
    json question = {{"op", "add"}, {"a", i}, {"b", 10 * i}};
    crew::result<crew::message> reply = co_await child.request(question, {.timeout = 5s});
    failures += !reply;
    if (reply)
      std::printf("%d + %d = %s\n", i, 10 * i, reply->value()["result"].dump().c_str());
    else
      std::printf("request %d: %s\n", i, crew::error_name(reply.error()).c_str());
  }
  child.disconnect();  // the child exits once its channel closes
}

int main(int argc, char** argv) {
  std::string here = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  crew::process_options with_node{.exec_path = "node"};
  crew::child_process child = argc > 1 ? crew::fork(argv[1], {}, with_node) : crew::fork(here + "/rpc-child");
  int failures = 0;
  crew::task<> session = ask(child, failures);
  crew::loop::current().run();
  return failures == 0 && session.done() ? 0 : 1;
}
