#!/usr/bin/env bash
# Run every CLIENT scenario of one pinned MCP conformance suite version, one at a
# time, against a client command; compare the outcome with
# conformance/expected-failures-<version>.txt and print a summary.
#
# Usage:
#   conformance/run.sh [--version V] [--timeout SECONDS] [--scenario NAME]...
#                      [--out DIR] [--] [CLIENT COMMAND...]
#
#   --version V      suite version, a folder under conformance/versions/ (default 0.1.16,
#                    or $CONFORMANCE_VERSION)
#   --timeout S      per-scenario client timeout in seconds, given to the suite's
#                    --timeout (default 30, or $CONFORMANCE_TIMEOUT); the suite process
#                    itself (with the client's whole process group) is hard-killed S+20 seconds later
#   --scenario NAME  run only this scenario (repeatable); default: all client scenarios
#   --out DIR        where the suite writes checks.json/stdout.txt/stderr.txt per scenario
#                    and where per-scenario suite logs go
#                    (default conformance/results/<version>-<UTC timestamp>, git-ignored)
#   CLIENT COMMAND   the client under test (default: "$CONFORMANCE_CLIENT_CMD" or
#                    "<repo>/.venv/bin/tether probe --conformance"). The suite appends the
#                    scenario's server URL as the last argument and sets
#                    MCP_CONFORMANCE_SCENARIO / MCP_CONFORMANCE_CONTEXT (and, from 0.2.0,
#                    MCP_CONFORMANCE_PROTOCOL_VERSION). It is run through /bin/sh -c from
#                    the repository root.
#
# Per scenario the result is PASS (every check SUCCESS/INFO/SKIPPED and the suite
# said OVERALL: PASSED), WARN (no FAILURE, at least one WARNING), or FAIL (any
# FAILURE, client timeout, client non-zero exit where the scenario does not allow
# it, suite crash, or no scored check at all — a scenario that observed nothing
# proves nothing). Warnings count as failures.
#
# Exit status: 0 only if every FAIL/WARN scenario is listed in the expected-failures
# file and every listed scenario really fails (an expected failure that now passes is
# an error, so the list stays reviewed). Last line: "N passed, N failed, N skipped"
# where passed = PASS and not listed, failed = unexpected FAIL/WARN + listed-but-PASS
# (+ list entries naming no scenario), skipped = listed and still failing.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

VERSION="${CONFORMANCE_VERSION:-0.1.16}"
TIMEOUT_S="${CONFORMANCE_TIMEOUT:-30}"
OUT=""
SCENARIOS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --version) VERSION="$2"; shift 2 ;;
    --timeout) TIMEOUT_S="$2"; shift 2 ;;
    --scenario) SCENARIOS+=("$2"); shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -gt 0 ]; then
  CLIENT_CMD="$*"
else
  CLIENT_CMD="${CONFORMANCE_CLIENT_CMD:-$ROOT/.venv/bin/tether probe --conformance}"
fi
[[ "$TIMEOUT_S" =~ ^[0-9]+$ ]] || { echo "run.sh: --timeout takes whole seconds" >&2; exit 2; }

SUITE="$PEERS/conformance-$VERSION/node_modules/@modelcontextprotocol/conformance/dist/index.js"
EXPECTED="$HERE/expected-failures-$VERSION.txt"
if [ ! -f "$SUITE" ] || ! NODE="$(find_node22)"; then
  echo "run.sh: suite $VERSION or Node 22 missing; running conformance/install.sh $VERSION" >&2
  "$HERE/install.sh" "$VERSION" >/dev/null || exit 1
fi
NODE="$(find_node22)" || { echo "run.sh: no Node >= 22" >&2; exit 1; }
[ -f "$SUITE" ] || { echo "run.sh: $SUITE missing" >&2; exit 1; }

mapfile -t ALL < <(cd "$ROOT" && "$NODE" "$SUITE" list --client | sed -n 's/^  - \([^ ]*\).*/\1/p')
[ "${#ALL[@]}" -gt 0 ] || { echo "run.sh: suite $VERSION lists no client scenarios" >&2; exit 1; }
FULL_RUN=1
if [ "${#SCENARIOS[@]}" -eq 0 ]; then
  SCENARIOS=("${ALL[@]}")
else
  FULL_RUN=0
  for s in "${SCENARIOS[@]}"; do
    printf '%s\n' "${ALL[@]}" | grep -qxF -- "$s" || { echo "run.sh: no client scenario '$s' in $VERSION" >&2; exit 2; }
  done
fi

[ -n "$OUT" ] || OUT="$HERE/results/$VERSION-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
TSV="$OUT/summary.tsv"
: >"$TSV"

echo "conformance $VERSION: ${#SCENARIOS[@]} client scenario(s) against: $CLIENT_CMD"
echo "node $("$NODE" --version), per-scenario timeout ${TIMEOUT_S}s, results in $OUT"

for s in "${SCENARIOS[@]}"; do
  slug="${s//\//__}"
  sdir="$OUT/$slug"
  rm -rf "$sdir"; mkdir -p "$sdir"
  start=$(date +%s)
  (cd "$ROOT" && timeout -k 10 $((TIMEOUT_S + 20)) "$NODE" "$SUITE" client \
      --command "$CLIENT_CMD" --scenario "$s" --timeout $((TIMEOUT_S * 1000)) -o "$sdir") \
      >"$sdir/suite.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  # Classify from checks.json (the suite's own record) plus the suite's log/exit code.
  python3 - "$s" "$sdir" "$rc" "$secs" >>"$TSV" <<'PY'
import glob, json, os, sys
name, sdir, rc, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
log = open(os.path.join(sdir, "suite.log"), errors="replace").read()
files = sorted(glob.glob(os.path.join(sdir, "**", "checks.json"), recursive=True))
checks = []
if files:
    try:
        checks = json.load(open(files[-1]))
    except Exception:
        checks = None
n = {k: 0 for k in ("SUCCESS", "FAILURE", "WARNING", "SKIPPED", "INFO")}
for c in checks or []:
    n[c.get("status", "INFO")] = n.get(c.get("status", "INFO"), 0) + 1
notes = []
if rc in (124, 137):
    notes.append("suite hard-killed: client (or a child of it) outlived the suite timeout holding stdout open")
if checks is None:
    notes.append("checks.json unreadable")
elif not files:
    notes.append("no checks.json")
if "Client timed out" in log:
    notes.append("client timed out")
if "CLIENT EXITED WITH ERROR" in log:
    notes.append("client exit!=0")
if n["SUCCESS"] + n["FAILURE"] + n["WARNING"] == 0:
    notes.append("no scored checks")
bad = [c for c in (checks or []) if c.get("status") in ("FAILURE", "WARNING")]
for c in bad[:3]:
    notes.append("%s %s" % (c.get("status")[0], c.get("id")))
if len(bad) > 3:
    notes.append("+%d more" % (len(bad) - 3))
if n["FAILURE"] or rc != 0 or checks is None or not files or n["SUCCESS"] + n["FAILURE"] + n["WARNING"] == 0:
    result = "FAIL"
elif n["WARNING"]:
    result = "WARN"
else:
    result = "PASS"
print("\t".join([name, result, str(n["SUCCESS"]), str(n["FAILURE"]), str(n["WARNING"]), secs, "; ".join(notes)]))
PY
  printf '  %-48s %s\n' "$s" "$(tail -n1 "$TSV" | cut -f2)"
done

# Compare with the expected-failures list ("scenario-name  # reason" per line).
python3 - "$TSV" "$EXPECTED" "$FULL_RUN" "$VERSION" <<'PY'
import os, sys
tsv, expected_path, full_run, version = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
rows = [l.rstrip("\n").split("\t") for l in open(tsv) if l.strip()]
expected = {}
if os.path.exists(expected_path):
    for raw in open(expected_path):
        line = raw.split("#", 1)[0].strip()
        if line:
            expected[line.split()[0]] = raw.split("#", 1)[1].strip() if "#" in raw else ""
passed = failed = skipped = 0
out = []
for name, result, s, f, w, secs, notes in rows:
    listed = name in expected
    if result == "PASS" and not listed:
        verdict = "ok"; passed += 1
    elif result == "PASS" and listed:
        verdict = "UNEXPECTED PASS (remove from expected-failures)"; failed += 1
    elif listed:
        verdict = "expected failure: " + expected[name]; skipped += 1
    else:
        verdict = "UNEXPECTED " + result; failed += 1
    out.append((name, result, "%s/%s/%s" % (s, f, w), secs + "s", verdict, notes))
ran = {r[0] for r in rows}
stale = [n for n in expected if n not in ran]
if full_run:
    for n in stale:
        out.append((n, "-", "-", "-", "UNKNOWN SCENARIO in expected-failures-%s.txt" % version, ""))
        failed += 1
w0 = max([len(r[0]) for r in out] + [8])
print()
print("%-*s  %-6s  %-8s  %-5s  %s" % (w0, "scenario", "result", "S/F/W", "time", "verdict / notes"))
print("-" * (w0 + 60))
for name, result, cnt, secs, verdict, notes in out:
    print("%-*s  %-6s  %-8s  %-5s  %s%s" % (w0, name, result, cnt, secs, verdict, ("  [" + notes + "]") if notes and result != "PASS" else ""))
print()
print("S/F/W = checks with status SUCCESS/FAILURE/WARNING; details: <out>/<scenario>/suite.log and */checks.json")
print("expected-failures file: %s (%d entr%s)" % (expected_path, len(expected), "y" if len(expected) == 1 else "ies"))
print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
sys.exit(1 if failed else 0)
PY
