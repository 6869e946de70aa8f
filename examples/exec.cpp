// exec: the seeds' exec examples. `exec("ls -lh /usr")` and `exec("node -v")`,
// each reporting its error, stderr and stdout in its callback.
//
//   exec("ls -lh /usr", (error, stdout, stderr) => { ... })
//   exec('node -v', (error, stdout, stderr) => { ... })
#include <crew/crew.hpp>

#include <cstdio>

namespace {

int failures = 0;

void report(const crew::exec_result& r) {
  if (r.error || !r.ok()) {
    ++failures;
    if (r.error)
      std::fprintf(stderr, "Error: %s: %s (%s)\n", r.command.c_str(), r.error.message().c_str(),
                   crew::error_name(r.error).c_str());
    else
      std::fprintf(stderr, "Error: Command failed: %s (exit code %d)\n%s", r.command.c_str(), r.status.code,
                   r.err.c_str());
    return;
  }
  if (!r.err.empty()) std::fprintf(stderr, "Stderr: %s", r.err.c_str());
  std::printf("Stdout: %s", r.out.c_str());
}

}  // namespace

int main() {
  crew::exec("ls -lh /usr", {}, report);
  crew::exec("node -v", {}, report);
  crew::loop::current().run();
  return failures == 0 ? 0 : 1;
}
