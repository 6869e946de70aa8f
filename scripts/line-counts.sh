#!/usr/bin/env bash
# The first-day examples beside their Node twins: lines of code of each (not
# blank, not only a comment), and the ratio. The target is at most 1.5x.
#
#   scripts/line-counts.sh            prints the table (markdown)
#   scripts/line-counts.sh --check    also fails when an example is past 1.5x, or
#                                     when docs/first-day.md does not show this table
set -euo pipefail
cd "$(dirname "$0")/.."

# example's files | its Node twin's, in examples/ | its limit, where it is not 1.5
pairs=(
  "rpc-parent.cpp rpc-child.cpp|rpc-parent.js rpc-child.js"
  "supervisor.cpp|supervisor.js"
  "cluster-json-api.cpp|cluster-json-api.js"
  # Reading a file in pieces and hashing it are Node's standard library (fs streams, crypto); in
  # C++ they take the standard library and OpenSSL's EVP calls: 16 lines against Node's 5. The rest
  # is within 1.5x.
  "hash-files.cpp|hash-files.js|2.2"
)
limit=1.5

# Lines that are neither blank nor only a comment (// or /* ... */), in C++ or JavaScript.
code_lines() {
  awk '
    { line = $0 }
    in_block { if (sub(/.*\*\//, "", line)) in_block = 0; else next }
    { gsub(/\/\*.*\*\//, "", line) }
    line ~ /\/\*/ { sub(/\/\*.*/, "", line); in_block = 1 }
    line ~ /^[ \t]*(\/\/.*)?$/ { next }
    { n++ }
    END { print n + 0 }
  ' "$1"
}

# The files' lines of code, added up.
total_lines() {
  local file sum=0
  for file in "$@"; do sum=$((sum + $(code_lines "examples/$file"))); done
  echo $sum
}

# The files as markdown links, joined by " + ".
links() {
  local file out=()
  for file in "$@"; do out+=("[$file](../examples/$file)"); done
  local IFS=+
  echo "${out[*]}" | sed 's/+/ + /g'
}

table() {
  echo "| example | lines | Node twin | lines | ratio |"
  echo "|---|---:|---|---:|---:|"
  for pair in "${pairs[@]}"; do
    local -a ours twin
    IFS='|' read -r first second _ <<<"$pair"
    read -ra ours <<<"$first"
    read -ra twin <<<"$second"
    local a b
    a=$(total_lines "${ours[@]}")
    b=$(total_lines "${twin[@]}")
    awk -v o="$(links "${ours[@]}")" -v t="$(links "${twin[@]}")" -v a="$a" -v b="$b" \
      'BEGIN { printf "| %s | %d | %s | %d | %.2fx |\n", o, a, t, b, a / b }'
  done
}

out=$(table)
echo "$out"
[[ ${1:-} == --check ]] || exit 0

status=0
i=0
while IFS='|' read -r _ example lines _ twin_lines ratio _; do
  ratio=${ratio//[ x]/}
  IFS='|' read -r _ _ own_limit <<<"${pairs[i++]}"
  if awk -v r="$ratio" -v l="${own_limit:-$limit}" 'BEGIN { exit !(r > l) }'; then
    echo "line-counts: $example is ${ratio}x its Node twin (at most ${own_limit:-$limit}x)" >&2
    status=1
  fi
done < <(tail -n +3 <<<"$out")
if [[ $(<docs/first-day.md) != *"$out"* ]]; then
  echo "line-counts: docs/first-day.md does not show the table above; paste it there" >&2
  status=1
fi
exit $status
