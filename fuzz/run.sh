#!/usr/bin/env bash
# Runs every libFuzzer target built in $1 (fuzz-<name>) for $2 seconds each,
# from its seed corpus fuzz/corpus/<name>/ (and dictionary fuzz/<name>.dict).
# New inputs go to build-fuzz/corpus/<name>/ (the seeds stay as they are);
# crashes, leaks and timeouts to build-fuzz/artifacts/<name>/, and the run fails.
set -uo pipefail
bin=${1:?usage: run.sh BIN_DIR SECONDS}
seconds=${2:?usage: run.sh BIN_DIR SECONDS}
here=$(cd "$(dirname "$0")" && pwd)
work=$(cd "$bin/.." && pwd)

status=0
targets=("$bin"/fuzz-*)
[[ -e ${targets[0]} ]] || { echo "fuzz: no fuzz-* program in $bin"; exit 1; }
for target in "${targets[@]}"; do
  name=${target##*/fuzz-}
  corpus=$work/corpus/$name
  artifacts=$work/artifacts/$name
  mkdir -p "$corpus" "$artifacts"
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
           -artifact_prefix="$artifacts/")
  [[ -f $here/$name.dict ]] && options+=(-dict="$here/$name.dict")
  echo "=== fuzz-$name: $seconds s"
  if "$target" "${options[@]}" "$corpus" "$here/corpus/$name" >"$work/fuzz-$name.log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^#[0-9]+ +DONE' "$work/fuzz-$name.log" | tail -2
  else
    tail -60 "$work/fuzz-$name.log"
    echo "=== fuzz-$name FAILED: the input is in $artifacts/ (docs/fuzzing.md: turn it into a test)"
    status=1
  fi
done
[[ $status -eq 0 ]] && echo "fuzz: ${#targets[@]} targets ran, none crashed" || echo "fuzz: a target crashed, leaked or hung"
exit $status
