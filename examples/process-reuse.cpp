// process-reuse: the seeds' ProcessManager ("reuse long-running processes").
// Starting a process per request costs a spawn each time; the manager starts one
// child per command and hands the same one to every later request. Here ten
// requests go to one long-running fork-child, and every answer names the same pid.
//
//   getProcess(command) {
//     if (!this.processes.has(command)) this.processes.set(command, spawn(command, ...));
//     return this.processes.get(command);
//   }
#include <crew/crew.hpp>

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

namespace {

class process_manager {
 public:
  /// The running child for `command`, started on first use.
  crew::child_process& get_process(const std::string& command) {
    auto it = processes_.find(command);
    if (it == processes_.end()) {
      it = processes_.emplace(command, crew::fork(command, {}, {.silent = true})).first;
      std::printf("started %s as pid %d\n", command.c_str(), static_cast<int>(it->second.pid()));
    }
    return it->second;
  }

  /// Lets every child finish: their channels close, and they exit.
  void close_all() {
    for (auto& [command, child] : processes_) child.disconnect();
  }

 private:
  std::map<std::string, crew::child_process> processes_;
};

}  // namespace

int main() {
  std::string worker = (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "fork-child").string();
  process_manager manager;
  constexpr int requests = 10;
  int answered = 0;
  std::set<int> pids;

  for (int i = 1; i <= requests; ++i) {
    crew::child_process& child = manager.get_process(worker);
    pids.insert(child.pid());
    child.send(crew::message::value_type{{"num", i}});
  }
  crew::child_process& child = manager.get_process(worker);
  child.on_message([&](crew::message m) {
    std::printf("answer %d: %s from pid %d\n", ++answered, m.to_string().c_str(), static_cast<int>(child.pid()));
    if (answered == requests) manager.close_all();
  });
  crew::loop::current().run();
  std::printf("%d requests, %zu process started\n", answered, pids.size());
  return answered == requests && pids.size() == 1 ? 0 : 1;
}
