// fork-parent: the seeds' fork() examples. Forks fork-child (a C++ program,
// found next to this one), sends it {num: 21}, {message: "Hello from parent"}
// and {hello: "world"}, prints each answer, then disconnects.
//
//   const child = fork('child.js');
//   child.send({ num: 21 });
//   child.on('message', (msg) => console.log('Result from child:', msg.result));
#include <crew/crew.hpp>

#include <cstdio>
#include <filesystem>

int main() {
  std::string child_program = (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "fork-child").string();
  crew::child_process child = crew::fork(child_program);
  int answers = 0;
  child.on_message([&](crew::message msg) {
    const auto& v = msg.value();
    if (v.contains("result"))
      std::printf("Result from child: %s\n", v["result"].dump().c_str());
    else if (v.contains("response"))
      std::printf("Response from child: %s\n", msg.to_string().c_str());
    else
      std::printf("Message from child: %s\n", msg.to_string().c_str());
    std::fflush(stdout);
    if (++answers == 3) child.disconnect();  // the child exits when its channel closes
  });
  child.on_error([](std::error_code ec) { std::fprintf(stderr, "fork-parent: %s\n", crew::error_name(ec).c_str()); });
  int code = 1;
  child.on_exit([&](crew::exit_status s) { code = s.code; });

  using json = crew::message::value_type;
  child.send(json{{"num", 21}});
  child.send(json{{"message", "Hello from parent"}});
  child.send(json{{"hello", "world"}});
  crew::loop::current().run();
  return answers == 3 && code == 0 ? 0 : 1;
}
