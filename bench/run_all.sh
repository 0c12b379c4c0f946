#!/usr/bin/env bash
# Run every issue-9 benchmark one after another (never in parallel: they would skew each
# other) and keep the console output. Usage, from the repository root:
#   bash bench/run_all.sh [log file]
set -euo pipefail
log=${1:-bench/results/run-$(date -u +%Y-%m-%dT%H%M).log}
py=.venv/bin/python
{
  echo "# $(date -u +%FT%TZ)  $(uname -sr)  $(nproc) CPUs  load: $(cut -d' ' -f1-3 /proc/loadavg)"
  for script in toolset_call cold_connect concurrent_callers list_connections toolset_wide memory_servers agent_glue; do
    echo; echo "## bench/$script.py"
    "$py" "bench/$script.py"
  done
} 2>&1 | tee "$log"
