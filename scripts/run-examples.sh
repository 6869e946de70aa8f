#!/usr/bin/env bash
# make run: starts crew-server when it exists; until then, runs each example in
# turn and says what it shows.
set -uo pipefail
bin=${1:-build/bin}

if [[ -x $bin/crew-server ]]; then
  exec "$bin/crew-server"
fi

# example | what it shows
examples=(
  "thread-pool|blocking file reads and hashing on libuv's thread pool while the main loop keeps ticking"
  "spawn-ls|spawn('ls', ['-lh', '/usr']): the child's output streamed as it arrives, then its exit code"
  "exec|exec('ls -lh /usr') and exec('node -v'): buffered output handed to a callback"
  "spawn-ping|spawn('ping', ['-c', '3', '127.0.0.1']): a long-running child streamed line by line"
  "fork-parent|fork('child'): messages both ways with a C++ child over Node's IPC protocol"
  "process-reuse|the seeds' ProcessManager: one long-running child serves ten requests"
  "worker-sum|a worker thread sums to 1e9 while the main loop stays free"
  "worker-fib|three workers compute fibonacci of their worker data in parallel"
  "worker-same-file|one function is both the main thread and the worker (is_main_thread)"
  "worker-timeout|a worker stopped cooperatively when its deadline passes"
  "shared-buffer|workers add to one shared counter with atomics after a wait/notify starting gun"
  "shared-counter|four processes add to one counter in shared memory (a memfd sent over IPC)"
)

status=0
for entry in "${examples[@]}"; do
  IFS='|' read -r name what <<<"$entry"
  echo "=== $name: $what"
  "$bin/$name" || { echo "=== $name exited with $?"; status=1; }
  echo
done
exit $status
