#!/usr/bin/env bash
# Runs a sweep file (docs/SWEEPS.md): plans it (`r1dist sweep plan`: one config per point,
# every point checked; nothing is queued when one cannot run), then submits the fine-tunes
# as one array job (point.sbatch tuned), the base evaluations as another (point.sbatch
# base) and, after both have ended, the report (report.sbatch). Run from anywhere; jobs run
# from the repository root.
#
#   bash cluster/slurm/submit.sh --sweep FILE [--out DIR] [--throttle K] [--set section.key=value ...]
#        [--sbatch-arg ARG ...] [--nodes K] [--no-report] [--dry-run] [--local]
#
# --nodes K      each fine-tune on K nodes of R1DIST_RANKS_PER_NODE ranks (default 1)
# --out DIR      the sweep's output root (default: the file's [sweep] out)
# --throttle K   at most K fine-tunes run at once (sbatch --array=...%K)
# --set          a config key for every point (r1dist sweep plan --set)
# --local        no Slurm: run the points here one after another (mpirun -np $R1DIST_NP,
#                default 2), then the report; launch/demo.sh runs the demo this way
# --dry-run      plan, then print the sbatch commands instead of running them
#
# The scaling job instead (docs/PERFORMANCE.md, "Scaling"; cluster/slurm/scaling.sbatch):
#
#   bash cluster/slurm/submit.sh --scaling 1,2,4,8 [--nodes K] [--gpus-per-node G] [--preset P]
#        [--seq S] [--steps N] [--bench-arg ARG ...] [--out DIR] [--sbatch-arg ARG ...] [--dry-run]
#
# one job per rank count (`bench allreduce` + `bench train`), the smallest first (its
# tokens/s is the others' baseline), then `r1dist report --scaling` into DIR (default
# runs/scaling). A count of N ranks takes ceil(N / G) nodes with min(N, G) ranks each (G:
# --gpus-per-node, else R1DIST_GPUS_PER_NODE, else R1DIST_RANKS_PER_NODE on a CPU cluster),
# at most --nodes K (default: as many as the largest count needs).
# Site settings (GPUs, ranks, partition, account, time, modules) come from
# cluster/slurm/site.sh or the environment; R1DIST_MODELS (folder of the HF model
# directories) and R1DIST_DATA (the data file) go to the plan. Prints the job ids on stdout
# as `tuned=ID base=ID report=ID` (absent parts left out); everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
source cluster/slurm/site.sh
source cluster/slurm/lib.sh

sweep= out= throttle= dry=0 report=1 local=0
sets=() extra=()
scaling= max_nodes= per_node= bench=()
while [ $# -gt 0 ]; do
  case $1 in
    --sweep) sweep=$2; shift 2 ;;
    --out) out=${2%/}; shift 2 ;;
    --throttle) throttle=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    --sbatch-arg) extra+=("$2"); shift 2 ;;
    --dry-run) dry=1; shift ;;
    --no-report) report=0; shift ;;
    --local) local=1; shift ;;
    --scaling) scaling=$2; shift 2 ;;
    --nodes) max_nodes=$2; shift 2 ;;
    --gpus-per-node) per_node=$2; shift 2 ;;
    --preset|--seq|--steps) bench+=("$1" "$2"); shift 2 ;;
    --bench-arg) bench+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) r1dist_fail "submit.sh: unknown argument '$1' (see --help)" ;;
  esac
done
if [ -n "$scaling" ]; then
  [ -n "$sweep" ] && r1dist_fail "submit.sh: --sweep and --scaling are separate jobs; give one"
  [[ "$scaling" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
    r1dist_fail "submit.sh: --scaling takes rank counts like 1,2,4,8, not '$scaling'"
  [ -z "$max_nodes" ] || [[ "$max_nodes" =~ ^[1-9][0-9]*$ ]] || r1dist_fail "submit.sh: --nodes takes a number >= 1, not '$max_nodes'"
  gpus=${per_node:-$R1DIST_GPUS_PER_NODE}   # GPUs per node (0: a CPU cluster)
  : "${per_node:=$R1DIST_GPUS_PER_NODE}"
  [ "$per_node" -gt 0 ] || per_node=$R1DIST_RANKS_PER_NODE
  [ "$dry" = 1 ] || [ -x "$R1DIST_BIN" ] || r1dist_fail "$R1DIST_BIN is missing; build first (bash tools/build.sh)"
  out=${out:-runs/scaling}
  mkdir -p "$out/slurm"
  out=$(cd "$out" && pwd)
  site=(--parsable --chdir="$PWD" --cpus-per-task="$R1DIST_CPUS_PER_RANK" --time="$R1DIST_TIME")
  [ -n "$R1DIST_PARTITION" ] && site+=(--partition="$R1DIST_PARTITION")
  [ -n "$R1DIST_ACCOUNT" ] && site+=(--account="$R1DIST_ACCOUNT")
  [ -n "$R1DIST_QOS" ] && site+=(--qos="$R1DIST_QOS")
  site+=("${extra[@]+"${extra[@]}"}")
  submit() {
    if [ "$dry" = 1 ]; then
      printf 'sbatch' >&2; printf ' %q' "$@" >&2; echo >&2
      echo "DRYRUN"
    else
      sbatch "$@"
    fi
  }
  IFS=, read -ra counts <<< "$scaling"
  mapfile -t counts < <(printf '%s\n' "${counts[@]}" | sort -n -u)
  first= ids=()
  for n in "${counts[@]}"; do
    nodes=$(( (n + per_node - 1) / per_node ))
    tasks=$(( n < per_node ? n : per_node ))
    [ $((nodes * tasks)) -eq "$n" ] ||
      r1dist_fail "submit.sh: $n ranks do not fill ceil($n / $per_node) = $nodes nodes evenly; give counts that are a multiple of $per_node above it"
    [ -z "$max_nodes" ] || [ "$nodes" -le "$max_nodes" ] ||
      r1dist_fail "submit.sh: $n ranks need $nodes nodes of $per_node ranks, more than --nodes $max_nodes"
    job=("${site[@]}" --job-name="r1dist-scaling-$n" --nodes="$nodes" --ntasks="$n" --output="$out/slurm/%x-%j.out")
    [ "$nodes" -gt 1 ] && job+=(--ntasks-per-node="$tasks")   # one node: --ntasks alone (--overcommit then works)
    [ "$gpus" -gt 0 ] && job+=(--gpus-per-node="$tasks")
    [ -n "$first" ] && job+=(--dependency="afterany:$first")
    id=$(submit "${job[@]}" cluster/slurm/scaling.sbatch run "$out" "${bench[@]+"${bench[@]}"}")
    [ -n "$first" ] || first=$id
    ids+=("$id"); echo "submit: scaling at $n ranks ($nodes node(s) x $tasks): job $id" >&2
  done
  join() { local IFS=$1; shift; echo "$*"; }
  id=$(submit "${site[@]}" --job-name=r1dist-scaling-report --nodes=1 --ntasks=1 --dependency="afterany:$(join : "${ids[@]}")" \
         --output="$out/slurm/%x-%j.out" cluster/slurm/scaling.sbatch report "$out")
  echo "submit: scaling report (after ${ids[*]}): job $id -> $out/scaling.md" >&2
  echo "scaling=$(join , "${ids[@]}") report=$id"
  exit 0
fi
[ -n "$sweep" ] || r1dist_fail "submit.sh: --sweep FILE is required (see --help; configs/seed.sweep.toml is the seed experiment)"
[ -z "$throttle" ] || [[ "$throttle" =~ ^[1-9][0-9]*$ ]] || r1dist_fail "submit.sh: --throttle takes a number >= 1, not '$throttle'"
[ -x "$R1DIST_BIN" ] || r1dist_fail "$R1DIST_BIN is missing; build first (bash tools/build.sh)"
source launch/env.sh

# The plan: every point must be able to run, before anything is queued.
plan=("$R1DIST_BIN" sweep plan "$sweep" "${sets[@]+"${sets[@]}"}")
[ -n "$out" ] && plan+=(--out "$out")
[ -n "${R1DIST_MODELS:-}" ] && plan+=(--models "$R1DIST_MODELS")
[ -n "${R1DIST_DATA:-}" ] && plan+=(--data "$R1DIST_DATA")
if [ "$local" = 1 ]; then plan+=(--ranks "${R1DIST_NP:-2}"); else plan+=(--ranks $(( ${max_nodes:-1} * R1DIST_RANKS_PER_NODE ))); fi
table=$("${plan[@]}") || r1dist_fail "the sweep $sweep cannot run as planned (above); nothing was submitted"
echo "$table" >&2
out=$(sed -n 's/^plan: //p' <<< "$table")   # the output root the plan was written to
n_tuned=$(r1dist_point_count "$out" tuned)
n_base=$(r1dist_point_count "$out" base)

if [ "$local" = 1 ]; then
  status=0
  for kind in tuned base; do
    n=$([ $kind = tuned ] && echo "$n_tuned" || echo "$n_base")
    for ((i = 0; i < n; i++)); do
      bash cluster/slurm/run_point.sh "$out" "$kind" "$i" || status=$?
    done
  done
  [ "$report" = 1 ] && bash cluster/slurm/report.sh "$out"
  "$R1DIST_BIN" sweep status "$out" >&2
  exit $status
fi

# The log folder must exist before Slurm opens the --output file.
logs=$out/slurm
mkdir -p "$logs"
site=(--parsable --export=ALL,R1DIST_SWEEP_DIR="$out" --chdir="$PWD")
[ -n "$R1DIST_PARTITION" ] && site+=(--partition="$R1DIST_PARTITION")
[ -n "$R1DIST_ACCOUNT" ] && site+=(--account="$R1DIST_ACCOUNT")
[ -n "$R1DIST_QOS" ] && site+=(--qos="$R1DIST_QOS")
site+=("${extra[@]+"${extra[@]}"}")
common=("${site[@]}" --ntasks-per-node="$R1DIST_RANKS_PER_NODE" --cpus-per-task="$R1DIST_CPUS_PER_RANK"
        --time="$R1DIST_TIME" --open-mode=append)
if [ "$R1DIST_GPUS_PER_NODE" -gt 0 ]; then common+=(--gpus-per-node="$R1DIST_GPUS_PER_NODE"); fi
[ -n "$max_nodes" ] && common+=(--nodes="$max_nodes")   # each point on K nodes: K x ranks per node

join() { local IFS=$1; shift; echo "$*"; }
submit() {  # prints the job id (dry run: a placeholder)
  if [ "$dry" = 1 ]; then
    printf 'sbatch' >&2; printf ' %q' "$@" >&2; echo >&2
    echo "DRYRUN"
  else
    sbatch "$@"
  fi
}
deps=() ids=()
if [ "$n_tuned" -gt 0 ]; then
  id=$(submit "${common[@]}" --job-name=r1dist-tuned --array="0-$((n_tuned - 1))${throttle:+%$throttle}" \
         --output="$logs/%x-%A_%a.out" cluster/slurm/point.sbatch tuned)
  deps+=("$id"); ids+=("tuned=$id"); echo "submit: $n_tuned fine-tunes: job $id" >&2
fi
if [ "$n_base" -gt 0 ]; then
  id=$(submit "${common[@]}" --job-name=r1dist-base --array="0-$((n_base - 1))" --output="$logs/%x-%A_%a.out" \
         cluster/slurm/point.sbatch base)
  deps+=("$id"); ids+=("base=$id"); echo "submit: $n_base base evaluations: job $id" >&2
fi
if [ "$report" = 1 ]; then
  id=$(submit "${site[@]}" --dependency="afterany:$(join : "${deps[@]}")" --output="$logs/%x-%j.out" \
         cluster/slurm/report.sbatch)
  ids+=("report=$id"); echo "submit: report (after ${deps[*]}): job $id" >&2
fi
echo "submit: follow it with: $R1DIST_BIN sweep status $out" >&2
echo "${ids[*]}"
