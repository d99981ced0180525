#!/usr/bin/env bash
# Submits the sweep: the fine-tuned versions (sweep.sbatch, an array job), the base models
# (base.sbatch) and, after both have ended, the report (report.sbatch). Checks every
# selected version first (config, model directory, data, build) and submits nothing when one
# cannot run. Run from anywhere; jobs run from the repository root.
#
#   bash cluster/slurm/submit.sh [--configs configs|configs/demo] [--versions v1,v5,...]
#        [--set section.key=value ...] [--sbatch-arg ARG ...] [--no-report] [--dry-run]
#
# Site settings (GPUs, ranks, partition, account, time, modules) come from
# cluster/slurm/site.sh or the environment. R1DIST_MODELS (folder of the HF model
# directories), R1DIST_DATA (the data file) and R1DIST_RUNS (output root) are passed on.
# --dry-run prints the sbatch commands instead of running them. Prints the job ids on stdout
# as `sweep=ID base=ID report=ID` (absent parts left out); everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
source cluster/slurm/site.sh
source cluster/slurm/lib.sh

versions=(v1 v2 v3 v4 v5 v6 v7 v8)
sets=()
extra=()
dry=0
report=1
while [ $# -gt 0 ]; do
  case $1 in
    --configs) R1DIST_CONFIGS=${2%/}; shift 2 ;;
    --versions) IFS=, read -r -a versions <<< "$2"; shift 2 ;;
    --set) sets+=("$2"); shift 2 ;;
    --sbatch-arg) extra+=("$2"); shift 2 ;;
    --dry-run) dry=1; shift ;;
    --no-report) report=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) r1dist_fail "submit.sh: unknown argument '$1' (see --help)" ;;
  esac
done
R1DIST_EXTRA_SETS=$(printf '%s\n' "${sets[@]+"${sets[@]}"}")
export R1DIST_CONFIGS R1DIST_EXTRA_SETS R1DIST_MODELS="${R1DIST_MODELS:-}" R1DIST_DATA="${R1DIST_DATA:-}" \
  R1DIST_RUNS R1DIST_PARTITION R1DIST_ACCOUNT R1DIST_QOS R1DIST_GPUS_PER_NODE R1DIST_RANKS_PER_NODE \
  R1DIST_CPUS_PER_RANK R1DIST_TIME R1DIST_SIGNAL_LEAD R1DIST_MAX_ATTEMPTS R1DIST_MPI R1DIST_MODULES

# Every selected version must be able to run: fail here, before anything is queued.
sweep_idx=() base_idx=()
for v in "${versions[@]}"; do
  r1dist_resolve "$v"
  for i in "${!R1DIST_FINETUNED[@]}"; do [ "${R1DIST_FINETUNED[$i]}" = "$v" ] && sweep_idx+=("$i"); done
  for i in "${!R1DIST_BASE[@]}"; do [ "${R1DIST_BASE[$i]}" = "$v" ] && base_idx+=("$i"); done
  echo "submit: $v ok (model $R1DIST_V_MODEL, output $R1DIST_V_OUT, $R1DIST_V_STEPS steps)" >&2
done

# The log folder must exist before Slurm opens the --output file.
logs=${R1DIST_RUNS:-runs}/slurm
mkdir -p "$logs"
site=(--parsable --export=ALL --chdir="$PWD")
[ -n "$R1DIST_PARTITION" ] && site+=(--partition="$R1DIST_PARTITION")
[ -n "$R1DIST_ACCOUNT" ] && site+=(--account="$R1DIST_ACCOUNT")
[ -n "$R1DIST_QOS" ] && site+=(--qos="$R1DIST_QOS")
site+=("${extra[@]+"${extra[@]}"}")
common=("${site[@]}" --ntasks-per-node="$R1DIST_RANKS_PER_NODE" --cpus-per-task="$R1DIST_CPUS_PER_RANK"
        --time="$R1DIST_TIME" --open-mode=append)
if [ "$R1DIST_GPUS_PER_NODE" -gt 0 ]; then common+=(--gpus-per-node="$R1DIST_GPUS_PER_NODE"); fi

join() { local IFS=$1; shift; echo "$*"; }
submit() {  # prints the job id (dry run: a placeholder)
  if [ "$dry" = 1 ]; then
    printf 'sbatch' >&2; printf ' %q' "$@" >&2; echo >&2
    echo "DRYRUN"
  else
    sbatch "$@"
  fi
}
deps=()
ids=()
if [ ${#sweep_idx[@]} -gt 0 ]; then
  id=$(submit "${common[@]}" --array="$(join , "${sweep_idx[@]}")" \
         --output="$logs/%x-%A_%a.out" cluster/slurm/sweep.sbatch)
  deps+=("$id"); ids+=("sweep=$id"); echo "submit: fine-tuned versions: job $id" >&2
fi
if [ ${#base_idx[@]} -gt 0 ]; then
  id=$(submit "${common[@]}" --array="$(join , "${base_idx[@]}")" --output="$logs/%x-%A_%a.out" \
         cluster/slurm/base.sbatch)
  deps+=("$id"); ids+=("base=$id"); echo "submit: base models: job $id" >&2
fi
if [ "$report" = 1 ]; then
  id=$(submit "${site[@]}" --dependency="afterany:$(join : "${deps[@]}")" --output="$logs/%x-%j.out" \
         cluster/slurm/report.sbatch)
  ids+=("report=$id"); echo "submit: report (after ${deps[*]}): job $id" >&2
fi
echo "${ids[*]}"
