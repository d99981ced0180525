#!/usr/bin/env bash
# One point of a planned sweep: starts one r1dist rank per task on the point's config (srun
# inside a Slurm allocation, mpirun -np $R1DIST_NP outside), records the attempt, and
# decides what happens when the run stopped early. Called by point.sbatch and by
# `submit.sh --local`; by hand too:  bash cluster/slurm/run_point.sh runs/seed tuned 0
#
#   run_point.sh DIR KIND INDEX    DIR: the plan (r1dist sweep plan), KIND: tuned | base,
#                                  INDEX: the point's index within its kind (points.tsv)
#
# Each attempt appends to OUTPUT_DIR/attempts.tsv a `start` line (attempt, time, host, job)
# and an `end` line (attempt, time, exit code, newest checkpoint step before and after, the
# first error line), and its stderr to OUTPUT_DIR/attempts.log: `r1dist sweep status` reads
# them.
#
# Time limit: R1DIST_SIGNAL_LEAD seconds before the job's end this script sends SIGUSR1 to
# the ranks (srun forwards it). Not `sbatch --signal`: on Slurm 22.05 a requeued attempt
# got no signal, and ran into the limit.
#
# Requeue policy (under Slurm): r1dist exits 75 when a signal stopped it with a checkpoint
# (SIGUSR1 before the time limit, SIGTERM from `scancel --signal=TERM`); a rank ended by
# SIGTERM before it could act (143) counts the same. The task then requeues itself, but only
# when this attempt moved the newest checkpoint forward (or the attempt before it did: one
# attempt without progress is forgiven) and fewer than R1DIST_MAX_ATTEMPTS attempts ran.
# When Slurm itself ends the job (scontrol requeue, preemption, scancel) the batch shell gets
# SIGTERM too and leaves the decision to Slurm. Each attempt appends to the same log (sbatch --open-mode=append).
set -euo pipefail
DIR=${1:?usage: run_point.sh DIR KIND INDEX}
KIND=${2:?usage: run_point.sh DIR KIND INDEX}
INDEX=${3:?usage: run_point.sh DIR KIND INDEX}
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$ROOT"
source launch/env.sh
source cluster/slurm/site.sh
source cluster/slurm/lib.sh
if [ -n "$R1DIST_MODULES" ] && command -v module >/dev/null 2>&1; then module load $R1DIST_MODULES; fi

r1dist_point "$DIR" "$KIND" "$INDEX"   # exits 2 with the reason before any rank starts
P=$R1DIST_P_NAME
[ -x "$R1DIST_BIN" ] || r1dist_fail "$R1DIST_BIN is missing; build first (bash tools/build.sh)"
[ -f "$R1DIST_P_CONFIG" ] || r1dist_fail "$P: no config $R1DIST_P_CONFIG (plan the sweep again)"
out=$R1DIST_P_OUT
mkdir -p "$out"
attempt=$(( $(grep -c '^start' "$out/attempts.tsv" 2>/dev/null || true) + 1 ))
echo "=== r1dist $P: attempt $attempt on $(hostname) at $(date '+%F %T') (job ${SLURM_JOB_ID:-none})"
printf 'start\t%d\t%s\t%s\t%s\n' "$attempt" "$(date '+%F %T')" "$(hostname)" "${SLURM_JOB_ID:-none}" >> "$out/attempts.tsv"
before=$(r1dist_latest_step "$out")
log_at=$(stat -c %s "$out/attempts.log" 2>/dev/null || echo 0)

if [ -n "${SLURM_JOB_ID:-}" ]; then
  LAUNCH=(srun --mpi="$R1DIST_MPI" --kill-on-bad-exit=1)
else
  LAUNCH=(mpirun -np "${R1DIST_NP:-2}")
fi
ended_by_slurm=0
trap 'ended_by_slurm=1' TERM   # keep waiting: the ranks are writing their checkpoint
"${LAUNCH[@]}" "$R1DIST_BIN" --cfg "$R1DIST_P_CONFIG" --resume auto 2> >(tee -a "$out/attempts.log" >&2) &
child=$!
timer=
if [ -n "${SLURM_JOB_ID:-}" ]; then
  end=$(r1dist_job_end "$SLURM_JOB_ID")
  if [ -n "$end" ]; then
    wait_s=$(( end - $(date +%s) - R1DIST_SIGNAL_LEAD ))
    [ "$wait_s" -gt 0 ] || wait_s=0
    ( sleep "$wait_s"
      echo "=== r1dist $P: ${R1DIST_SIGNAL_LEAD} s before the time limit: SIGUSR1 to the ranks"
      kill -USR1 "$child" 2>/dev/null || true ) &
    timer=$!
  fi
fi
rc=0
while :; do
  wait "$child" && rc=0 || rc=$?
  kill -0 "$child" 2>/dev/null || break   # a trapped signal interrupted wait; the run goes on
done
if [ -n "$timer" ]; then pkill -P "$timer" 2>/dev/null || true; kill "$timer" 2>/dev/null || true; fi
after=$(r1dist_latest_step "$out")
reason=
if [ "$rc" != 0 ] && [ "$rc" != 75 ]; then
  reason=$(tail -c +$((log_at + 1)) "$out/attempts.log" 2>/dev/null | grep -m 1 '\] error ' |
           sed 's/^.*\] error //' | tr '\t' ' ' || true)
fi
printf 'end\t%d\t%s\t%d\t%d\t%d\t%s\n' "$attempt" "$(date '+%F %T')" "$rc" "$before" "$after" "$reason" >> "$out/attempts.tsv"
echo "=== r1dist $P: attempt $attempt ended with exit code $rc at $(date '+%F %T'); newest checkpoint step $before -> $after"

# Under Slurm a rank ended by SIGTERM before r1dist could act (143: a signal that arrived while
# the process started) is an early stop like 75, for the policy below.
if [ "$rc" = 143 ] && [ -n "${SLURM_JOB_ID:-}" ] && [ "$ended_by_slurm" = 0 ]; then rc=75; fi
[ "$rc" = 75 ] || exit "$rc"
if [ -z "${SLURM_JOB_ID:-}" ]; then
  echo "=== r1dist $P: stopped early (resumable); run this script again to continue"
  exit 75
fi
if [ "$ended_by_slurm" = 1 ]; then
  echo "=== r1dist $P: Slurm is ending this attempt (requeue, preemption or cancel); it decides what follows"
  exit 75
fi
if [ "$after" -le "$before" ]; then
  # One attempt without progress right after one with progress is requeued once more: Slurm
  # 22.05 may deliver a signal meant for the attempt before (scancel retries while the job is
  # being requeued) to the next one as it starts. Two in a row stop the point.
  prev=$(grep '^end' "$out/attempts.tsv" | tail -n 2 | head -n 1)
  if [ "$(grep -c '^end' "$out/attempts.tsv")" -lt 2 ] ||
     [ "$(cut -f6 <<< "$prev")" -le "$(cut -f5 <<< "$prev")" ]; then
    echo "=== r1dist $P: stopped early without progress; not requeued" >&2
    exit 75
  fi
  echo "=== r1dist $P: stopped early without progress after an attempt with progress; requeued once more"
fi
job_attempt=$(( ${SLURM_RESTART_COUNT:-0} + 1 ))   # attempts of this job (attempt counts every submission)
if [ "$job_attempt" -ge "$R1DIST_MAX_ATTEMPTS" ]; then
  echo "=== r1dist $P: stopped early after $job_attempt attempts of this job (R1DIST_MAX_ATTEMPTS); not requeued" >&2
  exit 75
fi
echo "=== r1dist $P: requeueing (attempt $((job_attempt + 1)) of at most $R1DIST_MAX_ATTEMPTS resumes at step $after)"
scontrol requeue "$SLURM_JOB_ID"
