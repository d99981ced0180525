#!/usr/bin/env bash
# The Slurm scripts on a real one-node Slurm (tools/slurm/local-cluster.sh), as a user runs
# them (cluster/slurm/submit.sh, same scripts, no edits), with the demo configs:
#   1. every script passes `sbatch --test-only` with its defaults; a wrong version name or a
#      missing model directory fails before anything is queued, or before any rank starts;
#   2. the sweep: every version leaves a metrics.h5 that h5dump reads, the fine-tuned ones
#      checkpoints and a PEFT adapter, and the report job runs after all of them;
#   3. preemption: `scontrol requeue` of a running task and `scancel --signal=TERM` of another
#      each resume from a checkpoint written at the signal and end bitwise equal to the
#      uninterrupted sweep's run; a task whose --time is shorter than its run finishes
#      through requeues, progressing on every attempt, and every attempt's log survives.
# Exit 77 (CTest: skipped) without root or without Slurm. Usage: test_sweep.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
[ "$(id -u)" = 0 ] || { echo "SKIP: slurmd needs root"; exit 77; }
command -v slurmctld >/dev/null && command -v munged >/dev/null ||
  { echo "SKIP: slurm-wlm and munge are not installed (tools/install-deps.sh installs them)"; exit 77; }
export R1DIST_BIN=$(readlink -f "${1:-build}")/r1dist   # what the scripts run
[ -x "$R1DIST_BIN" ] || { echo "no $R1DIST_BIN" >&2; exit 2; }
R=$R1DIST_BIN
source launch/env.sh
source cluster/slurm/site.sh
source cluster/slurm/lib.sh

work=$(mktemp -d /tmp/r1dist_slurm_XXXXXX)
fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/runs/slurm/*.out "$work"/preempt/slurm/*.out; do
    [ -f "$f" ] && { echo "---- $f" >&2; tail -n 40 "$f" >&2; }
  done
  exit 1
}
cleanup() {
  bash tools/slurm/local-cluster.sh stop "$work/cluster" || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
eval "$(bash tools/slurm/local-cluster.sh start "$work/cluster")"
t0=$SECONDS
say() { echo "[slurm test +$((SECONDS - t0)) s] $*"; }

# Wait (bounded) until the queue is empty.
drain() {
  local limit=$1
  for _ in $(seq "$limit"); do
    [ -z "$(squeue -h -o %i)" ] && return 0
    sleep 1
  done
  squeue
  fail "jobs still queued after $limit s"
}
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1; }
steps_done() { "$R" metrics "$1/metrics.h5" --table steps 2>/dev/null | tail -n +2 | wc -l; }
# Waits until the run in output dir $1 has logged at least $2 steps.
wait_steps() {
  for _ in $(seq 300); do
    [ "$(steps_done "$1")" -ge "$2" ] && return 0
    sleep 0.5
  done
  fail "$1 did not reach step $2"
}

# The three tiny models the demo configs stand for, as launch/demo.sh writes them.
seed=3407
for size in 1.5B 7B 14B; do
  "$R" init-model --preset tiny --dtype fp32 --seed $seed --out "$work/models/DeepSeek-R1-Distill-Qwen-$size" \
    --tokenizer .deps/tokenizer-r1 >/dev/null 2>&1
  seed=$((seed + 1))
done
export R1DIST_MODELS=$work/models R1DIST_RUNS=$work/runs
C_STEPS=${C_STEPS:-90}    # ~60 s of steps on 2 cores (about 30 per attempt): more than one attempt of a
                          # one-minute limit (SIGUSR1 30 s before it) can do

# ---- 1. refusals before anything runs -------------------------------------------------
for s in sweep base report; do
  sbatch --test-only "cluster/slurm/$s.sbatch" >/dev/null 2>"$work/testonly.txt" ||
    fail "sbatch --test-only cluster/slurm/$s.sbatch: $(cat "$work/testonly.txt")"
done
say "sbatch --test-only accepts sweep, base and report"
if bash cluster/slurm/submit.sh --configs configs/demo --versions v1,v9 >"$work/bad.txt" 2>&1; then fail "v9 was accepted"; fi
grep -q "unknown version 'v9'" "$work/bad.txt" || fail "no reason for v9: $(cat "$work/bad.txt")"
if R1DIST_MODELS=$work/nowhere bash cluster/slurm/submit.sh --configs configs/demo >"$work/bad.txt" 2>&1; then
  fail "a missing model directory was accepted"
fi
grep -q "has no config.json" "$work/bad.txt" || fail "no reason for the missing model: $(cat "$work/bad.txt")"
[ -z "$(squeue -h -o %i)" ] || fail "a refused submission queued jobs"
# Submitted around the checks (plain sbatch): the task fails before srun, with the reason.
[ -d runs/slurm ] || fail "runs/slurm, the sbatch files' default log folder, is not in the checkout"
id=$(R1DIST_CONFIGS=configs/demo R1DIST_MODELS=$work/nowhere sbatch --parsable --array=0 \
       --output="$work/direct-%A_%a.out" cluster/slurm/sweep.sbatch)
drain 120
grep -q "has no config.json" "$work/direct-${id}_0.out" || fail "the direct submission's log gives no reason"
grep -q "r1dist $("$R" --version | cut -d' ' -f2)" "$work/direct-${id}_0.out" &&
  fail "a rank started despite the missing model"
say "a wrong version or a missing model fails before anything runs, with the reason"

# ---- 2. the sweep -----------------------------------------------------------------------
bash cluster/slurm/submit.sh --configs configs/demo > "$work/submit.txt" 2>&1 || fail "submit: $(cat "$work/submit.txt")"
drain 900
for v in v1 v2 v3 v4 v5 v6 v7 v8; do
  out=$R1DIST_RUNS/$v
  [ -f "$out/metrics.h5" ] || fail "$v: no metrics.h5"
  h5dump -H "$out/metrics.h5" >/dev/null || fail "$v: h5dump cannot read metrics.h5"
  case $v in
    v2|v3|v4) [ "$("$R" metrics "$out/metrics.h5" --table evals | tail -n +2 | wc -l)" -ge 1 ] ||
                fail "$v: no evaluation" ;;
    *) ls "$out"/checkpoints/step_*.h5 >/dev/null 2>&1 || fail "$v: no checkpoint"
       [ -f "$out/adapter/adapter_model.safetensors" ] && [ -f "$out/adapter/adapter_config.json" ] ||
         fail "$v: no PEFT adapter" ;;
  esac
done
report=$R1DIST_RUNS/report.md
[ -f "$report" ] || fail "no report"
for v in v1 v2 v3 v4 v5 v6 v7 v8; do
  grep -q "^| $v " "$report" || fail "the report lacks a row for $v"
  [ "$report" -nt "$R1DIST_RUNS/$v/metrics.h5" ] || fail "the report is older than $v's metrics"
done
say "sweep: eight versions, metrics readable by h5dump, checkpoints + adapters, report after all"

# ---- 3. preemption ------------------------------------------------------------------------
export R1DIST_RUNS=$work/preempt
# A (v1): `scontrol requeue` while it runs. B (v5): `scancel --signal=TERM` while it runs.
# C (v6, more and shorter steps): a one-minute time limit with SIGUSR1 30 s before it.
job_of() { sed -n 's/.*sweep=\([0-9]*\).*/\1/p'; }
a=$(bash cluster/slurm/submit.sh --configs configs/demo --versions v1 --no-report 2>/dev/null | job_of)
b=$(bash cluster/slurm/submit.sh --configs configs/demo --versions v5 --no-report 2>/dev/null | job_of)
c=$(R1DIST_TIME=1 R1DIST_SIGNAL_LEAD=30 bash cluster/slurm/submit.sh --configs configs/demo --versions v6 --no-report \
      --set train.steps=$C_STEPS --set data.max_seq_len=64 2>/dev/null | job_of)
[ -n "$a" ] && [ -n "$b" ] && [ -n "$c" ] || fail "preemption jobs were not submitted"
wait_steps "$R1DIST_RUNS/v1" 3
scontrol requeue "${a}_0" || fail "scontrol requeue ${a}_0"
say "requeued $a (v1) at step $(steps_done "$R1DIST_RUNS/v1")"
wait_steps "$R1DIST_RUNS/v5" 3
scancel --signal=TERM "${b}_1" || fail "scancel --signal=TERM ${b}_1"
say "sent SIGTERM to $b (v5) at step $(steps_done "$R1DIST_RUNS/v5")"
drain 900
say "preempted runs finished"
# Array task ids: the index of the version in sweep.sbatch (v1 v5 v6 v7 v8).
for pair in "v1:${a}_0" "v5:${b}_1"; do
  v=${pair%%:*}; j=${pair#*:}
  out=$R1DIST_RUNS/$v
  log=$R1DIST_RUNS/slurm/r1dist-sweep-$j.out
  stopped=$(sed -n 's/.*stop signal: stopped after step \([0-9]*\) .*/\1/p' "$out/run.log" | head -n 1)
  [ -n "$stopped" ] || fail "$v: no stop at the signal in run.log"
  grep -q "resumed from .*step_$(printf %08d "$stopped").h5" "$out/run.log" ||
    fail "$v: did not resume from the checkpoint written at the signal (step $stopped)"
  [ "$(grep -c '^=== r1dist .*: attempt [0-9]* on' "$log")" -ge 2 ] || fail "$v: the first attempt's log is gone"
  final=$(printf %08d "$(R1DIST_CONFIGS=configs/demo R1DIST_EXTRA_SETS= r1dist_config_value "$v" train.steps)")
  "$R" checkpoint-diff "$out/checkpoints/step_$final.h5" "$work/runs/$v/checkpoints/step_$final.h5" \
    > "$work/diff.txt" || fail "$v: checkpoint-diff failed"
  grep -q "bitwise identical" "$work/diff.txt" || fail "$v: not bitwise equal to the uninterrupted run: $(cat "$work/diff.txt")"
  say "$v: stopped at step $stopped by the signal, resumed there, bitwise equal to the uninterrupted run"
done
out=$R1DIST_RUNS/v6
log=$R1DIST_RUNS/slurm/r1dist-sweep-${c}_2.out
attempts=$(grep -c '^=== r1dist v6: attempt [0-9]* on' "$log")
[ "$attempts" -ge 2 ] || fail "v6: finished in one attempt; the time limit did not cut it (raise C_STEPS)"
[ -f "$out/checkpoints/step_$(printf %08d "$C_STEPS").h5" ] || fail "v6: did not reach step $C_STEPS"
while read -r from to; do
  [ "$to" -gt "$from" ] || fail "v6: an attempt made no progress ($from -> $to)"
done < <(sed -n 's/.*newest checkpoint step \([0-9]*\) -> \([0-9]*\)$/\1 \2/p' "$log")
# Every attempt but the last stopped at the signal before the limit, with a checkpoint.
[ "$(grep -c 'attempt [0-9]* ended with exit code 75' "$log")" -eq $((attempts - 1)) ] ||
  fail "v6: not every cut attempt ended with a checkpoint at the signal (exit 75): $(grep 'ended with' "$log")"
[ "$(grep -c 'stop signal: stopped after step' "$out/run.log")" -eq $((attempts - 1)) ] ||
  fail "v6: run.log lacks a stop at the signal for some attempt"
[ "$(grep -c 'r1dist [0-9.]*: configs/demo/v6.toml' "$out/run.log")" -eq "$attempts" ] ||
  fail "v6: run.log does not hold every attempt"
say "v6: one-minute limit, $attempts attempts, progress on each, every attempt's log kept"
say "passed"
