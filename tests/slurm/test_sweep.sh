#!/usr/bin/env bash
# The Slurm scripts on a real one-node Slurm (tools/slurm/local-cluster.sh), as a user runs
# them (cluster/slurm/submit.sh --sweep, same scripts, no edits), with the demo grid
# (configs/demo/grid.sweep.toml: 2 models x 3 learning rates + 2 derived base evaluations):
#   1. every script passes `sbatch --test-only` with its defaults; a bad sweep file or a
#      missing model directory fails before anything is queued; a point whose model vanished
#      after planning fails before any rank starts, and `sweep status` gives the reason;
#   2. the grid as one array job (throttled): `scontrol requeue` of one running point and
#      `scancel --signal=TERM` of another each resume from a checkpoint written at the
#      signal and end bitwise equal to an uninterrupted run of the same point; `sweep status`
#      before (not started) and after (done, the attempts); every point leaves a metrics.h5
#      that h5dump reads, the fine-tunes a PEFT adapter; the report job runs after all of
#      them and recommends a run per base model;
#   3. a point whose --time is shorter than its run finishes through requeues, progressing
#      on every attempt, and every attempt's log survives;
#   4. the scaling job (submit.sh --scaling 1,2,4 on the tiny preset, CPU ranks): a job per
#      count, then the report: the JSON lines, scaling.md with one row per count (100% at one
#      rank), scaling.html and the plot. Numbers are not asserted.
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
  for f in "$work"/*/slurm/*.out "$work"/gone/*.out; do
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

# Wait (bounded) until the queue is empty. squeue fails while slurmctld is slow to answer (a
# loaded machine): that prints no job, and is not an empty queue.
drain() {
  local limit=$1 ids
  for _ in $(seq "$limit"); do
    if ids=$(squeue -h -o %i 2>/dev/null) && [ -z "$ids" ]; then return 0; fi
    sleep 1
  done
  squeue
  fail "jobs still queued after $limit s"
}
# Waits (bounded) until file $1 holds a line matching $2: a job can leave the queue before
# its log is complete.
log_has() {
  for _ in $(seq 60); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 1
  done
  return 1
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
export R1DIST_MODELS=$work/models
GRID=configs/demo/grid.sweep.toml
# Shorter points than the demo's: the final evaluation only, short generations, rows of 64
# tokens.
QUICK=(--set eval.every_steps=0 --set eval.max_new_tokens=16 --set data.max_seq_len=64)

# ---- 1. refusals before anything runs -------------------------------------------------
for s in "point.sbatch tuned" "point.sbatch base" "report.sbatch" "scaling.sbatch run none"; do
  # shellcheck disable=SC2086
  R1DIST_SWEEP_DIR=$work/none sbatch --test-only cluster/slurm/$s >/dev/null 2>"$work/testonly.txt" ||
    fail "sbatch --test-only cluster/slurm/$s: $(cat "$work/testonly.txt")"
done
say "sbatch --test-only accepts point.sbatch (tuned, base), report.sbatch and scaling.sbatch"
printf '[sweep]\nconfig = "%s/configs/demo/v1.toml"\n[grid]\ntrain.lrr = [1e-3, 2e-3]\n' "$root" > "$work/bad.sweep.toml"
if bash cluster/slurm/submit.sh --sweep "$work/bad.sweep.toml" --out "$work/bad" >"$work/bad.txt" 2>&1; then
  fail "a sweep with an unknown key was accepted"
fi
grep -q "bad.sweep.toml:4: unknown config key train.lrr (did you mean train.lr?)" "$work/bad.txt" ||
  fail "no reason for the unknown key: $(cat "$work/bad.txt")"
if R1DIST_MODELS=$work/nowhere bash cluster/slurm/submit.sh --sweep $GRID --out "$work/bad" >"$work/bad.txt" 2>&1; then
  fail "a missing model directory was accepted"
fi
grep -q "point 1.5b-lr2e-03.*model.path = \"$work/nowhere/DeepSeek-R1-Distill-Qwen-1.5B\"" "$work/bad.txt" ||
  fail "no point and key for the missing model: $(cat "$work/bad.txt")"
[ -z "$(squeue -h -o %i)" ] || fail "a refused submission queued jobs"
[ ! -e "$work/bad/points.tsv" ] || fail "a refused plan was written"
# A point whose model vanished after planning: the task fails before srun, with the reason,
# and `sweep status` says so.
cp -r "$work/models/DeepSeek-R1-Distill-Qwen-1.5B" "$work/vanishing"
printf '[sweep]\nconfig = "%s/configs/demo/v1.toml"\n[[point]]\nname = "gone"\nmodel.path = "%s"\n' \
  "$root" "$work/vanishing" > "$work/gone.sweep.toml"
"$R" sweep plan "$work/gone.sweep.toml" --out "$work/gone" >/dev/null 2>&1 || fail "the one-point sweep does not plan"
rm -rf "$work/vanishing"
[ -d runs/slurm ] || fail "runs/slurm, the sbatch files' default log folder, is not in the checkout"
id=$(R1DIST_SWEEP_DIR=$work/gone sbatch --parsable --array=0 --output="$work/gone/%A_%a.out" cluster/slurm/point.sbatch tuned)
drain 120
log_has "$work/gone/${id}_0.out" "config.json" || fail "the direct submission's log gives no reason"
"$R" sweep status "$work/gone" > "$work/status.txt" || fail "sweep status failed"
grep -q "^gone .* tuned .* failed .*exit 2: .*config.json" "$work/status.txt" ||
  fail "sweep status does not show the failure with its reason: $(cat "$work/status.txt")"
say "a bad key or a missing model fails before anything is queued; a vanished model fails with the reason in sweep status"

# ---- 2. the grid, with a requeue and a SIGTERM --------------------------------------------
runs=$work/grid
"$R" sweep plan $GRID --out "$runs" --models "$work/models" "${QUICK[@]}" >/dev/null 2>&1 || fail "the grid does not plan"
"$R" sweep status "$runs" > "$work/status0.txt"
[ "$(grep -cE '^\S+ +(tuned|base) +not started' "$work/status0.txt")" -eq 8 ] || fail "before: $(cat "$work/status0.txt")"
# A and B (below) hold after step 3 until their signal arrives (R1DIST_FAULT=hold, a test hook
# of the trainer: include/r1dist/train/fault.h), so the signal lands at that step however fast
# or slow the machine is; the other points do not hold.
A=1.5b-lr2e-03 B=1.5b-lr3e-04
R1DIST_FAULT="hold:step=3:run=$A,$B" bash cluster/slurm/submit.sh --sweep $GRID --out "$runs" --throttle 2 "${QUICK[@]}" \
  > "$work/submit.txt" 2>"$work/submit.err" || fail "submit: $(cat "$work/submit.err")"
tuned=$(sed -n 's/.*tuned=\([0-9]*\).*/\1/p' "$work/submit.txt")
[ -n "$tuned" ] || fail "no array job: $(cat "$work/submit.txt" "$work/submit.err")"
scontrol show job "$tuned" | grep -q "ArrayTaskThrottle=2" || fail "the throttle did not reach Slurm"
# A (index 0): `scontrol requeue` while it runs. B (index 1): `scancel --signal=TERM`. Each by
# the task's own job id. On a throttled array Slurm 22.05 may deliver scancel's signal and
# still exit non-zero ("Job can not be altered now, try again later", or nothing at all), and
# may deliver it again to the attempt that follows: scancel's status decides nothing, and B may
# take more than two attempts. What decides is checked below: a stop at the signal in
# run.log, a resume from that step's checkpoint, a final checkpoint bitwise equal to an
# uninterrupted run's.
task_job() {
  local j
  for _ in $(seq 30); do
    j=$(squeue -h -r -j "$1" -o %A 2>/dev/null | head -n 1)
    [ -n "$j" ] && { echo "$j"; return 0; }
    sleep 1
  done
  fail "task $1 is not in the queue"
}
wait_steps "$runs/$A" 3
ja=$(task_job "${tuned}_0")
scontrol requeue "$ja" || fail "scontrol requeue $ja (${tuned}_0)"
say "requeued $A (job $ja) at step $(steps_done "$runs/$A")"
wait_steps "$runs/$B" 3
jb=$(task_job "${tuned}_1")
scancel --signal=TERM "$jb" 2>"$work/scancel.txt" ||
  say "scancel --signal=TERM $jb (${tuned}_1) exited non-zero: $(cat "$work/scancel.txt")"
say "sent SIGTERM to $B at step $(steps_done "$runs/$B")"
drain 900
say "the grid finished"
"$R" sweep status "$runs" > "$work/status1.txt"
cat "$work/status1.txt"
[ "$(grep -cE '^\S+ +(tuned|base) +done ' "$work/status1.txt")" -eq 8 ] || fail "after: not every point is done"
grep -q "^$A .* done  *2 " "$work/status1.txt" || fail "$A: sweep status does not show 2 attempts"
grep -qE "^$B .* done  *([2-9]|[1-9][0-9]) " "$work/status1.txt" || fail "$B: sweep status does not show 2 or more attempts"
# Uninterrupted runs of A and B (mpirun, no Slurm) to compare with.
"$R" sweep plan $GRID --out "$work/ref" --models "$work/models" "${QUICK[@]}" >/dev/null 2>&1 || fail "the reference plan"
for i in 0 1; do R1DIST_NP=2 bash cluster/slurm/run_point.sh "$work/ref" tuned $i >/dev/null 2>&1 || fail "reference run $i"; done
final=$(printf %08d "$(sed -n 's/^steps = //p' "$runs/configs/$A.toml")")
for p in $A $B; do
  out=$runs/$p
  stopped=$(sed -n 's/.*stop signal: stopped after step \([0-9]*\) .*/\1/p' "$out/run.log" | head -n 1)
  [ -n "$stopped" ] || fail "$p: no stop at the signal in run.log"
  grep -q "resumed from .*step_$(printf %08d "$stopped").h5" "$out/run.log" ||
    fail "$p: did not resume from the checkpoint written at the signal (step $stopped)"
  log=$(grep -l "=== r1dist $p: attempt" "$runs"/slurm/r1dist-tuned-*.out | head -n 1)
  [ "$(grep -c "^=== r1dist $p: attempt [0-9]* on" "$log")" -ge 2 ] || fail "$p: the first attempt's log is gone"
  "$R" checkpoint-diff "$out/checkpoints/step_$final.h5" "$work/ref/$p/checkpoints/step_$final.h5" \
    > "$work/diff.txt" || fail "$p: checkpoint-diff failed"
  grep -q "bitwise identical" "$work/diff.txt" || fail "$p: not bitwise equal to the uninterrupted run: $(cat "$work/diff.txt")"
  say "$p: stopped at step $stopped by the signal, resumed there, bitwise equal to the uninterrupted run"
done
while IFS=$'\t' read -r index kind name config out; do
  case $index in '#'*) continue ;; esac
  h5dump -H "$out/metrics.h5" >/dev/null || fail "$name: h5dump cannot read metrics.h5"
  if [ "$kind" = tuned ]; then
    [ -f "$out/adapter/adapter_model.safetensors" ] && [ -f "$out/adapter/adapter_config.json" ] || fail "$name: no PEFT adapter"
  else
    [ "$("$R" metrics "$out/metrics.h5" --table evals | tail -n +2 | wc -l)" -ge 1 ] || fail "$name: no evaluation"
  fi
  grep -q "$name" "$runs/report.md" || fail "the report lacks $name"
  [ "$runs/report.md" -nt "$out/metrics.h5" ] || fail "the report is older than $name's metrics"
done < "$runs/points.tsv"
[ "$(grep -ci "recommended" "$runs/report.md")" -ge 2 ] || fail "the report recommends no run per base model"
[ -f "$runs/report.html" ] || fail "no report.html"
say "grid: 8 points done, metrics readable by h5dump, adapters, report after all with a recommendation per model"

# ---- 3. a time limit shorter than the run ------------------------------------------------------
# A one-minute limit with SIGUSR1 40 s before it (20 s after the start, several times what
# a loaded machine needs to reach step 4); the point holds after step 4 until that signal
# (R1DIST_FAULT=hold), so its first attempt is cut on any machine.
C_STEPS=12
printf '[sweep]\nconfig = "%s/configs/demo/v6.toml"\n[[point]]\nname = "limit"\ntrain.steps = %d\ndata.max_seq_len = 64\n' \
  "$root" "$C_STEPS" > "$work/limit.sweep.toml"
c=$(R1DIST_FAULT=hold:step=4:run=limit R1DIST_TIME=1 R1DIST_SIGNAL_LEAD=40 \
      bash cluster/slurm/submit.sh --sweep "$work/limit.sweep.toml" --out "$work/limit" \
      --no-report 2>/dev/null | sed -n 's/.*tuned=\([0-9]*\).*/\1/p')
[ -n "$c" ] || fail "the time-limit sweep was not submitted"
drain 900
out=$work/limit/limit
log=$work/limit/slurm/r1dist-tuned-${c}_0.out
log_has "$log" "attempt [0-9]* ended with exit code 0 " || fail "limit: no attempt ended with exit code 0"
attempts=$(grep -c '^=== r1dist limit: attempt [0-9]* on' "$log")
[ "$attempts" -ge 2 ] || fail "limit: finished in one attempt; the time limit did not cut it"
[ -f "$out/checkpoints/step_$(printf %08d "$C_STEPS").h5" ] || fail "limit: did not reach step $C_STEPS"
while read -r from to; do
  [ "$to" -gt "$from" ] || fail "limit: an attempt made no progress ($from -> $to)"
done < <(sed -n 's/.*newest checkpoint step \([0-9]*\) -> \([0-9]*\)$/\1 \2/p' "$log")
# Every attempt but the last stopped at the signal before the limit, with a checkpoint.
[ "$(grep -c 'attempt [0-9]* ended with exit code 75' "$log")" -eq $((attempts - 1)) ] ||
  fail "limit: not every cut attempt ended with a checkpoint at the signal (exit 75): $(grep 'ended with' "$log")"
[ "$(grep -c 'stop signal: stopped after step' "$out/run.log")" -eq $((attempts - 1)) ] ||
  fail "limit: run.log lacks a stop at the signal for some attempt"
[ "$(grep -c "r1dist [0-9.]*: $work/limit/configs/limit.toml" "$out/run.log")" -eq "$attempts" ] ||
  fail "limit: run.log does not hold every attempt"
"$R" sweep status "$work/limit" | grep -q "^limit .* done  *$attempts " || fail "limit: sweep status does not count $attempts attempts"
say "limit: one-minute limit, $attempts attempts, progress on each, every attempt's log kept"
# ---- 4. the scaling job: 1, 2 and 4 ranks of the tiny preset ----------------------------------
# One job per count on the one node (4 ranks per node, overcommitting its cores), then the
# report. Only the files, the table's shape and the one-rank row are checked, never a speed.
sc=$work/scaling
[ "$(bash cluster/slurm/submit.sh --scaling 1,2,4 --out "$sc" --dry-run 2>&1 | grep -c '^sbatch .*scaling.sbatch')" -eq 4 ] ||
  fail "submit.sh --scaling 1,2,4 --dry-run does not print 3 runs and a report"
B=(--preset tiny --seq 32 --steps 2)
for f in --warmup 1 --dtype fp32 --device cpu; do B+=(--bench-arg "$f"); done
R1DIST_RANKS_PER_NODE=4 bash cluster/slurm/submit.sh --scaling 1,2,4 --out "$sc" "${B[@]}" --sbatch-arg --overcommit \
  > "$work/scaling.txt" 2> "$work/scaling.err" || fail "submit.sh --scaling: $(cat "$work/scaling.err")"
grep -q "^scaling=[0-9]*,[0-9]*,[0-9]* report=[0-9]*$" "$work/scaling.txt" || fail "submit.sh --scaling: $(cat "$work/scaling.txt")"
drain 600
for n in 1 2 4; do
  grep -q "^{\"bench\":\"allreduce\",.*\"ranks\":$n," "$sc/allreduce_$n.jsonl" || fail "no allreduce line at $n ranks"
  grep -q "^{\"bench\":\"train\",.*\"ranks\":$n," "$sc/train_$n.jsonl" || fail "no train line at $n ranks"
done
grep -q '"efficiency":' "$sc/train_4.jsonl" || fail "train at 4 ranks has no efficiency against train_1.jsonl"
[ -f "$sc/scaling.html" ] && [ -s "$sc/scaling.png" ] || fail "no scaling.html or scaling.png"
# The measured table: the rows between its header and the first blank line.
table=$(awk '/^\| GPUs \(ranks\)/ { t = 1; next } t && /^$/ { exit } t && /^\| [0-9]/' "$sc/scaling.md")
[ "$(wc -l <<< "$table")" -eq 3 ] || fail "scaling.md: not one row per count: $table"
[ "$(cut -d'|' -f2 <<< "$table" | tr -d ' ' | paste -sd,)" = "1,2,4" ] || fail "scaling.md: rows are not 1, 2, 4: $table"
[ "$(head -n 1 <<< "$table" | cut -d'|' -f6 | tr -d ' ')" = "100.0%" ] || fail "scaling.md: one rank is not 100%: $table"
grep -q "scaling.png" "$sc/scaling.md" || fail "scaling.md does not show the plot"
say "scaling: 1, 2 and 4 ranks, one job each, report with a row per count, 100% at one rank, plot"
say "passed"
