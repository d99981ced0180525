#!/usr/bin/env bash
# The report of a planned sweep: `r1dist report` over every point that ran, into
# DIR/report.md, report.html and the plots; points without results are listed at the end with
# their state from `r1dist sweep status DIR`.   Usage: report.sh DIR
set -euo pipefail
DIR=${1:?usage: report.sh DIR (a planned sweep)}
cd "${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
source cluster/slurm/site.sh
source cluster/slurm/lib.sh
[ -f "$DIR/points.tsv" ] || r1dist_fail "$DIR/points.tsv is missing: not a planned sweep"
dirs=() missing=()
while IFS=$'\t' read -r index kind name config out; do
  case $index in '#'*) continue ;; esac
  if [ -f "$out/run.json" ] && [ -f "$out/metrics.h5" ]; then
    dirs+=("$out")
  else
    state=$("$R1DIST_BIN" sweep status "$DIR" | awk -v n="$name" '$1 == n { $1 = ""; $2 = ""; sub(/^ +/, ""); print }')
    missing+=(--not-run "$name ($out): ${state:-no run}")
  fi
done < "$DIR/points.tsv"
[ ${#dirs[@]} -gt 0 ] || r1dist_fail "no point of $DIR has a run to report on"
title=$(sed -n 's/^ "sweep_file": "\(.*\)",$/\1/p' "$DIR/sweep.json")
"$R1DIST_BIN" report "${dirs[@]}" --out "$DIR" --title "r1dist sweep: ${title:-$DIR}" "${missing[@]+"${missing[@]}"}"
echo "report: $DIR/report.md, $DIR/report.html" >&2
