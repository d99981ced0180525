#!/usr/bin/env bash
# The sweep's report: one section per version (v1..v8) with what its run left behind, into
# REPORT (default: <runs root>/report.md) and on stdout. Until the evaluation commands exist
# this is every version's metrics tables (r1dist metrics) and its outcome.
# Environment as run_version.sh (R1DIST_CONFIGS, R1DIST_RUNS, R1DIST_EXTRA_SETS).
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
source cluster/slurm/site.sh
source cluster/slurm/lib.sh
out_dir_of() {
  if [ -n "${R1DIST_RUNS:-}" ]; then echo "$R1DIST_RUNS/$1"; else r1dist_config_value "$1" output.dir; fi
}
first_out=$(out_dir_of v1)
REPORT=${REPORT:-$(dirname "$first_out")/report.md}
mkdir -p "$(dirname "$REPORT")"
{
  echo "# r1dist sweep report ($R1DIST_CONFIGS, $(date '+%F %T'))"
  for v in v1 v2 v3 v4 v5 v6 v7 v8; do
    out=$(out_dir_of "$v")
    echo
    echo "## $v: $(r1dist_config_value "$v" model.name)"
    echo
    if [ ! -f "$out/metrics.h5" ]; then
      echo "no metrics in $out (the version did not run, or failed before its first step)"
      continue
    fi
    echo "output: $out; newest checkpoint: step $(r1dist_latest_step "$out"); PEFT adapter: $([ -f "$out/adapter/adapter_model.safetensors" ] && echo yes || echo no)"
    echo
    echo '```'
    "$R1DIST_BIN" metrics "$out/metrics.h5" --table evals
    "$R1DIST_BIN" metrics "$out/metrics.h5" --table steps | awk 'NR == 1 { print; next } { last[NR % 3] = $0; n = NR }
      END { for (i = (n > 3 ? n - 2 : 2); i <= n; i++) print last[i % 3] }'
    echo '```'
  done
} | tee "$REPORT"
echo "report: $REPORT" >&2
