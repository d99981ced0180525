# Shared by the Slurm scripts and launch/demo.sh: the sweep's versions, and what a version's
# config resolves to. Sourced from the repository root; runs $R1DIST_BIN.

R1DIST_FINETUNED=(v1 v5 v6 v7 v8)  # sweep.sbatch's array, in index order
R1DIST_BASE=(v2 v3 v4)             # base.sbatch's array

: "${R1DIST_CONFIGS:=configs}"     # the config set: configs (the experiment) or configs/demo
: "${R1DIST_BIN:=./build/r1dist}"  # the r1dist binary (relative to the repository root)

r1dist_fail() { echo "r1dist slurm: $*" >&2; exit 2; }

# The resolved config of version $1 (defaults filled in, with the extra --set overrides of
# R1DIST_EXTRA_SETS, one per line), as `r1dist config` prints it; one r1dist start per version.
r1dist_config_text() {
  local v=$1 line
  local sets=()
  while IFS= read -r line; do
    [ -n "$line" ] && sets+=(--set "$line")
  done <<< "${R1DIST_EXTRA_SETS:-}"
  "$R1DIST_BIN" config --cfg "$R1DIST_CONFIGS/$v.toml" "${sets[@]}"
}

# The value of KEY (e.g. output.dir) in a config text from r1dist_config_text ($2).
r1dist_toml_value() {
  local key=$1
  awk -v sec="[${key%%.*}]" -v k="${key#*.}" '
    /^\[/ { in_sec = ($0 == sec); next }
    in_sec && $1 == k { sub(/^[^=]*= */, ""); gsub(/^"|"$/, ""); print; exit }' <<< "$2"
}

# The value of KEY in the resolved config of version $1.
r1dist_config_value() {
  local text
  text=$(r1dist_config_text "$1") || return
  r1dist_toml_value "$2" "$text"
}

# Checks that version $1 can run here (config, binary, model directory, data file) and
# prints why not. Sets R1DIST_V_MODEL, R1DIST_V_OUT, R1DIST_V_STEPS.
r1dist_resolve() {
  local v=$1
  [ -x "$R1DIST_BIN" ] || r1dist_fail "$R1DIST_BIN is missing; build first (bash tools/build.sh)"
  case " ${R1DIST_FINETUNED[*]} ${R1DIST_BASE[*]} " in
    *" $v "*) ;;
    *) r1dist_fail "unknown version '$v' (the versions are v1..v8)" ;;
  esac
  [ -f "$R1DIST_CONFIGS/$v.toml" ] || r1dist_fail "no config $R1DIST_CONFIGS/$v.toml"
  local text model
  text=$(r1dist_config_text "$v") || r1dist_fail "$R1DIST_CONFIGS/$v.toml does not load"
  model=$(r1dist_toml_value model.path "$text")
  if [ -n "${R1DIST_MODELS:-}" ]; then model=$R1DIST_MODELS/$(basename "$model"); fi
  [ -f "$model/config.json" ] ||
    r1dist_fail "$v: model directory $model has no config.json (set R1DIST_MODELS to the folder holding $(basename "$model"))"
  if [ -n "${R1DIST_DATA:-}" ]; then
    [ -f "$R1DIST_DATA" ] || r1dist_fail "R1DIST_DATA=$R1DIST_DATA does not exist"
  else
    local data
    data=$(r1dist_toml_value data.path "$text")
    [ -f "$data" ] || r1dist_fail "$v: data file $data does not exist (set R1DIST_DATA)"
  fi
  R1DIST_V_MODEL=$model
  if [ -n "${R1DIST_RUNS:-}" ]; then R1DIST_V_OUT=$R1DIST_RUNS/$v; else R1DIST_V_OUT=$(r1dist_toml_value output.dir "$text"); fi
  R1DIST_V_STEPS=$(r1dist_toml_value train.steps "$text")
}

# The --set arguments that point version $1 at its resolved model, data and output.
r1dist_sets() {
  local v=$1
  R1DIST_V_SETS=(--set "model.path=$R1DIST_V_MODEL" --set "output.dir=$R1DIST_V_OUT")
  [ -n "${R1DIST_DATA:-}" ] && R1DIST_V_SETS+=(--set "data.path=$R1DIST_DATA")
  local line
  while IFS= read -r line; do
    [ -n "$line" ] && R1DIST_V_SETS+=(--set "$line")
  done <<< "${R1DIST_EXTRA_SETS:-}"
  return 0
}

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
