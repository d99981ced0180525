# Shared by the Slurm scripts: the binary, and what a planned sweep's point resolves to.
# Sourced from the repository root.

: "${R1DIST_BIN:=./build/r1dist}"  # the r1dist binary (relative to the repository root)

r1dist_fail() { echo "r1dist slurm: $*" >&2; exit 2; }

# Point INDEX of kind KIND (tuned | base) of the sweep planned in DIR (DIR/points.tsv, written
# by `r1dist sweep plan`). Sets R1DIST_P_NAME, R1DIST_P_CONFIG, R1DIST_P_OUT.
r1dist_point() {
  local dir=$1 kind=$2 index=$3 line
  [ -f "$dir/points.tsv" ] || r1dist_fail "$dir/points.tsv is missing: plan the sweep first (r1dist sweep plan FILE --out $dir)"
  line=$(awk -F'\t' -v k="$kind" -v i="$index" '$1 == i && $2 == k' "$dir/points.tsv")
  [ -n "$line" ] || r1dist_fail "$dir/points.tsv has no $kind point $index"
  IFS=$'\t' read -r _ _ R1DIST_P_NAME R1DIST_P_CONFIG R1DIST_P_OUT <<< "$line"
}

# How many points of kind KIND the plan in DIR holds.
r1dist_point_count() { awk -F'\t' -v k="$2" '$2 == k' "$1/points.tsv" | wc -l; }

# The end of Slurm job $1 (its time limit) in seconds since the epoch; empty without one.
r1dist_job_end() {
  local end
  end=$(squeue -h -j "$1" -o %e 2>/dev/null | head -n 1)
  date -d "$end" +%s 2>/dev/null || true
}

# The step of the newest checkpoint in output dir $1 (0 when there is none).
r1dist_latest_step() {
  local last
  last=$(ls "$1"/checkpoints/step_*.h5 2>/dev/null | sort | tail -n 1)
  [ -n "$last" ] || { echo 0; return; }
  last=${last##*/step_}
  echo $((10#${last%.h5}))
}
