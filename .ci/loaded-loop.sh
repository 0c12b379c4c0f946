#!/usr/bin/env bash
# Issue 8 item 15: N consecutive `.ci/run` passes, each on a fresh clone of COMMIT, while a
# CPU-heavy job (one process hashing flat out) runs the whole time. Stops at the first
# failure. One line per run (exit code, seconds, load averages before/after, pytest
# summary) goes to OUT/results.txt, each run's console to OUT/run-K.log.
# usage: .ci/loaded-loop.sh [COMMIT (default HEAD)] [RUNS (default 5)] [OUT (default /tmp/ci-loaded)]
set -u
repo="$(cd "$(dirname "$0")/.." && pwd)"
commit="$(git -C "$repo" rev-parse "${1:-HEAD}")"; runs="${2:-5}"; out="${3:-/tmp/ci-loaded}"
mkdir -p "$out"; results="$out/results.txt"
echo "commit $commit start $(date -u +%FT%TZ)" >> "$results"
python3 -c 'import hashlib
b = b"x" * 65536
while True: hashlib.sha256(b).digest()' &
burner=$!
trap 'kill $burner 2>/dev/null' EXIT
for i in $(seq 1 "$runs"); do
  dir="$out/clone-$i"; rm -rf "$dir"
  git clone -q "$repo" "$dir" && git -C "$dir" checkout -q "$commit"
  s=$(date +%s); l0=$(cut -d' ' -f1-3 /proc/loadavg)
  (cd "$dir" && CI=true bash .ci/run) > "$out/run-$i.log" 2>&1; rc=$?
  l1=$(cut -d' ' -f1-3 /proc/loadavg)
  summary=$(grep -E "^[0-9]+ (passed|failed)|^=+ .*(passed|failed)" "$out/run-$i.log" | tail -4 | tr '\n' ' ')
  echo "run $i rc=$rc $(( $(date +%s) - s ))s load-before=[$l0] load-after=[$l1] $summary" >> "$results"
  rm -rf "$dir"
  [ "$rc" -eq 0 ] || break
done
echo "end $(date -u +%FT%TZ)" >> "$results"
