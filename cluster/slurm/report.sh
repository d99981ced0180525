#!/usr/bin/env bash
# The sweep's report: `r1dist report` over every version that ran (v1..v8) into
# <runs root>/report.md, report.html and the plots; versions without a run are listed at the
# end of report.md. Environment as run_version.sh (R1DIST_CONFIGS, R1DIST_RUNS,
# R1DIST_EXTRA_SETS, R1DIST_BIN).
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
source cluster/slurm/site.sh
source cluster/slurm/lib.sh
out_dir_of() {
  if [ -n "${R1DIST_RUNS:-}" ]; then echo "$R1DIST_RUNS/$1"; else r1dist_config_value "$1" output.dir; fi
}
root=$(dirname "$(out_dir_of v1)")
dirs=() missing=()
for v in v1 v2 v3 v4 v5 v6 v7 v8; do
  out=$(out_dir_of "$v")
  if [ -f "$out/run.json" ] && [ -f "$out/metrics.h5" ]; then dirs+=("$out"); else missing+=("$v ($out)"); fi
done
[ ${#dirs[@]} -gt 0 ] || r1dist_fail "no version has a run to report on under $root"
"$R1DIST_BIN" report "${dirs[@]}" --out "$root" --title "r1dist sweep: $R1DIST_CONFIGS"
if [ ${#missing[@]} -gt 0 ]; then
  { echo; echo "## Versions without a run"; echo; printf -- '- %s\n' "${missing[@]}"; } >> "$root/report.md"
fi
echo "report: $root/report.md, $root/report.html" >&2
