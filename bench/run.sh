#!/usr/bin/env bash
# make bench: every workload in crew and in Node, side by side; prints a table of
# ratios and rewrites BENCHMARKS.md with the date and the machine.
#
# ONLY=text runs the workloads whose name contains it, and only prints their table.
# Each side runs RUNS times (default 3), the sides taking turns, and keeps the median of each figure: the
# machines are shared and noisy, so ratios from one run matter more than absolutes.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/bin}
runs=${RUNS:-3}

# The Node peers that are npm packages (piscina, pngjs), from bench/node/package-lock.json.
if [[ ! -d bench/node/node_modules/piscina || ! -d bench/node/node_modules/pngjs ]]; then
  echo "bench: installing the Node peers (npm ci in bench/node)" >&2
  npm ci --prefix bench/node --no-audit --no-fund --loglevel=error >&2
fi

# workload | crew-bench arguments | node script arguments | a third peer's command, if any: nginx
# (bench/nginx/http.sh) for HTTP, the pool a C++ user writes by hand for pools
http="--workers 2 --connections 64 --seconds 5"
nginx="bench/nginx/http.sh $http"
pool="--tasks 1000000 --workers 2"
image="--workers 2 --connections 16 --seconds 5 --size 512"
workloads=(
  "post|post --count 1000000|bench/node/post.js --count 1000000"
  "queue_work|queue_work --count 200000 --in-flight 64|bench/node/queue_work.js --count 200000 --in-flight 64"
  "spawn|spawn --count 2000|bench/node/spawn.js --count 2000"
  "spawn (2 GiB parent)|spawn --count 500 --hold-mib 2048|bench/node/spawn.js --count 50 --hold-mib 2048"
  "spawn (libuv's uv_spawn)|spawn --count 2000 --path libuv|bench/node/spawn.js --count 2000"
  "pipe|pipe --mib 1024|bench/node/pipe.js --mib 1024"
  "fork-ipc|fork-ipc --count 20000|bench/node/fork-ipc.js --count 20000"
  "worker|worker --count 100000|bench/node/worker.js --count 100000"
  "pool (threads; Node: piscina)|pool $pool|bench/node/pool.js $pool|$bin/crew-bench pool $pool --kind hand"
  "http, round_robin|cluster-http --policy round_robin $http|bench/node/cluster-http.js --policy rr $http|$nginx"
  "http, shared|cluster-http --policy shared $http|bench/node/cluster-http.js --policy shared $http|$nginx"
  "http, reuseport|cluster-http --policy reuseport $http|-|$nginx --reuseport yes"
  "http, rolling reload under load, round_robin|cluster-http --policy round_robin --reload yes $http|-|"
  "http, no keep-alive, round_robin|cluster-http --policy round_robin --keep-alive no $http|bench/node/cluster-http.js --policy rr --keep-alive no $http|$nginx --keep-alive no"
  "crew-server /process-image (Node: pngjs on piscina)|process-image $image|bench/node/process-image.js $image|"
)

# The lines of several runs, `name value unit`; prints `name median unit` per figure.
medians() {
  # Number each figure by first appearance, sort each figure's values, keep the middle one.
  awk 'NF == 3 && !($1 in order) { order[$1] = ++n } NF == 3 { print order[$1], $1, $2, $3 }' |
    sort -k1,1n -k3,3g |
    awk '{ name[$1] = $2; unit[$1] = $4; v[$1, ++c[$1]] = $3 }
         END { for (i = 1; i in c; i++) print name[i], v[i, int((c[i] + 1) / 2)], unit[i] }'
}

# Higher is better for rates; lower is better for times.
better_when_higher() { [[ $1 == *per_s ]]; }

# How far crew is ahead of a peer's value: crew/peer for rates, peer/crew for times.
advantage() {
  local crew_value=$1 peer_value=$2 unit=$3
  if [[ -z $peer_value || $peer_value == - ]] || awk -v c="$crew_value" -v p="$peer_value" 'BEGIN { exit !(c == 0 || p == 0) }'; then
    echo "-"
  elif better_when_higher "$unit"; then
    awk -v c="$crew_value" -v p="$peer_value" 'BEGIN { printf "%.2fx", c / p }'
  else
    awk -v c="$crew_value" -v p="$peer_value" 'BEGIN { printf "%.2fx", p / c }'
  fi
}

value_of() { awk -v f="$1" '$1 == f { print $2 }' <<<"$2"; }

rows=()
for entry in "${workloads[@]}"; do
  IFS='|' read -r name crew_args node_args third_command <<<"$entry"
  [[ -n ${ONLY:-} && $name != *"$ONLY"* ]] && continue
  echo "bench: $name" >&2
  # The sides take turns, run by run, so that a slow spell of this shared machine
  # falls on each of them alike rather than on one side's runs.
  crew_runs="" node_runs="" third_runs=""
  for ((i = 0; i < runs; i++)); do
    # shellcheck disable=SC2086
    crew_runs+=$("$bin/crew-bench" $crew_args)$'\n' || exit 1
    # shellcheck disable=SC2086
    if [[ $node_args != - ]]; then node_runs+=$(node $node_args)$'\n' || exit 1; fi
    # shellcheck disable=SC2086
    if [[ -n $third_command ]]; then third_runs+=$($third_command)$'\n' || exit 1; fi
  done
  crew_out=$(medians <<<"$crew_runs")
  node_out=$(medians <<<"$node_runs")
  third_out=$(medians <<<"$third_runs")
  while read -r figure crew_value unit; do
    node_value=$(value_of "$figure" "$node_out")
    third_value=$(value_of "$figure" "$third_out")
    rows+=("$name|$figure|$unit|$crew_value|${node_value:--}|$(advantage "$crew_value" "$node_value" "$unit")|${third_value:--}|$(advantage "$crew_value" "$third_value" "$unit")")
  done <<<"$crew_out"
done

table() {
  echo "| workload | figure | unit | crew | node | crew vs node | nginx or by hand | crew vs it |"
  echo "|---|---|---|---:|---:|---:|---:|---:|"
  for row in "${rows[@]}"; do echo "| ${row//|/ | } |"; done
}

if [[ -n ${ONLY:-} ]]; then  # a partial run leaves BENCHMARKS.md alone
  table
  exit 0
fi

cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
machine="$(nproc) cores ($cpu), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (bench/run.sh) on $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo
  echo "- machine: $machine"
  echo "- libuv: $(pkg-config --modversion libuv); median of $runs runs per side"
  echo "- node: $(node --version); nginx: $(nginx -v 2>&1 | sed 's/.*nginx\///'); wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }')"
  echo "- crew vs a peer: crew/peer for rates (per_s), peer/crew for times (us, ms); above 1x, crew is ahead."
  echo
  table
  echo
  echo "What each workload measures, in crew and in Node:"
  echo
  echo "- **post**: \`post_one_way\`, a producer thread posts 1,000,000 small closures to a loop (Node: a worker"
  echo "  posts 1,000,000 numbers to the main thread); \`post_roundtrip\`, a post to another thread's loop and"
  echo "  back, 100,000 times in sequence (Node: main to worker and back with postMessage)."
  echo "- **queue_work**: 200,000 tiny jobs through libuv's thread pool, 64 in flight (Node has no public"
  echo "  queue_work; its smallest pool-backed call is \`crypto.pbkdf2\` with one iteration)."
  echo "- **spawn**: sequential spawn and exit of /bin/true, stdio ignored. *2 GiB parent*: each side first makes"
  echo "  2 GiB resident (Node runs only 50 spawns there, it is that slow). *libuv's uv_spawn*: the same loop through"
  echo "  libuv 1.44's fork-based spawn, which crew replaces with clone(CLONE_VM|CLONE_VFORK) and a pidfd."
  echo "- **pipe**: a child (\`head -c\`) writes 1 GiB of zeros to its stdout; the parent reads it all."
  echo "- **fork-ipc**: a forked child of the same kind (crew-bench, or the Node script) over Node's json IPC"
  echo "  protocol: \`ipc_roundtrip\`, one small message there and back, 20,000 times in sequence;"
  echo "  \`ipc_one_way\`, 200,000 small objects parent to child until the child has counted them all;"
  echo "  \`ipc_roundtrip_nospin\`, crew's round trip with its default 50 us spin turned off on both sides."
  echo "- **worker**: worker threads (Node: worker_threads). \`worker_startup\`, from constructing a worker to its"
  echo "  online event, mean of 20; \`worker_roundtrip\`, a small object to a worker and back, 100,000 times in"
  echo "  sequence (\`_nospin\`: crew with its default 50 us spin off); \`worker_one_way\`, 1,000,000 small"
  echo "  objects ({i}) main to worker until the worker has counted them all."
  echo "- **pool**: 1,000,000 tiny tasks (an integer in, the next out) on a pool of 2 threads, results back on the"
  echo "  loop: \`pool_tasks_per_s\` with 1,024 in flight, \`pool_serial_latency_us\` one at a time (100,000). Node:"
  echo "  piscina 4 with 2 threads. By hand: a mutex and a condition variable over a deque of std::function,"
  echo "  2 threads, std::packaged_task futures (bench/crew-bench/hand_pool.hpp). \`process_pool_*\`: the same on"
  echo "  crew's process pool of 2 workers (crew-bench itself), 64 tasks in flight per worker, 100,000 tasks"
  echo "  (10,000 one at a time); piscina has no pool of processes, so its thread figures stand beside them."
  echo "- **http**: an HTTP server of 2 worker processes answering every GET with a short text, under wrk (2 threads,"
  echo "  64 connections, 5 s, keep-alive unless said otherwise; bench/wrk/figures.lua reports for every side)."
  echo "  crew: \`crew-bench cluster-http\` (crew's cluster and http); Node: the seeds' cluster server on node:http"
  echo "  (Node 20 has no reuseport); nginx: \`return 200\` with worker_processes 2 (bench/nginx/http.sh)."
  echo "  \`failed\` counts wrk's errors. \`worker_replace\`: one worker killed with SIGKILL, until its"
  echo "  replacement listens (crew: restart policy without backoff; Node: \`cluster.fork()\` in 'exit')."
  echo "  *no keep-alive*: a new connection per request, so round_robin measures the primary's hand-off rate."
  echo "  *rolling reload under load*: crew's primary reloads both workers halfway through wrk's run (\`failed\`"
  echo "  is what the reload cost)."
  echo "- **crew-server /process-image**: \`POST /process-image?grayscale\` of a 512 x 512 PNG (FFmpeg's testsrc2),"
  echo "  under wrk (2 threads, 16 connections, 5 s, bench/wrk/post-file.lua). crew: crew-server with 2 workers,"
  echo "  each decoding and encoding with libspng on its pool of 2 threads. Node: the same service on node:http,"
  echo "  2 cluster workers, each with a piscina pool of 2 threads running pngjs (bench/node/process-image.js)."
} > BENCHMARKS.md

table
