#!/usr/bin/env bash
# One version of the sweep (v1..v8): checks it can run, starts one r1dist rank per task
# (srun inside a Slurm allocation, mpirun -np $R1DIST_NP outside), and decides what happens
# when the run stopped early. Called by sweep.sbatch, base.sbatch and launch/demo.sh;
# inside salloc by hand too:  R1DIST_MODELS=... bash cluster/slurm/run_version.sh v8
#
# Environment: R1DIST_CONFIGS (configs | configs/demo), R1DIST_MODELS, R1DIST_DATA,
# R1DIST_RUNS, R1DIST_EXTRA_SETS (--set overrides, one per line), the site settings
# (site.sh), R1DIST_NP (ranks outside Slurm, default 2).
#
# Time limit: R1DIST_SIGNAL_LEAD seconds before the job's end this script sends SIGUSR1 to
# the ranks (srun forwards it). Not `sbatch --signal`: on Slurm 22.05 a requeued attempt
# got no signal, and ran into the limit.
#
# Requeue policy (under Slurm): r1dist exits 75 when a signal stopped it with a checkpoint
# (SIGUSR1 before the time limit, SIGTERM from `scancel --signal=TERM`).
# The task then requeues itself, but only when this attempt moved the newest checkpoint
# forward and fewer than R1DIST_MAX_ATTEMPTS attempts ran. When Slurm itself ends the job
# (scontrol requeue, preemption, scancel) the batch shell gets SIGTERM too and leaves the
# decision to Slurm. Each attempt appends to the same log (sbatch --open-mode=append).
set -euo pipefail
V=${1:?usage: run_version.sh VERSION (v1..v8)}
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$ROOT"
source launch/env.sh
source cluster/slurm/site.sh
source cluster/slurm/lib.sh
if [ -n "$R1DIST_MODULES" ] && command -v module >/dev/null 2>&1; then module load $R1DIST_MODULES; fi

attempt=$(( ${SLURM_RESTART_COUNT:-0} + 1 ))
echo "=== r1dist $V: attempt $attempt on $(hostname) at $(date '+%F %T') (job ${SLURM_JOB_ID:-none})"
r1dist_resolve "$V"   # exits 2 with the reason before any rank starts
r1dist_sets "$V"
mkdir -p "$R1DIST_V_OUT"
before=$(r1dist_latest_step "$R1DIST_V_OUT")

if [ -n "${SLURM_JOB_ID:-}" ]; then
  LAUNCH=(srun --mpi="$R1DIST_MPI" --kill-on-bad-exit=1)
else
  LAUNCH=(mpirun -np "${R1DIST_NP:-2}")
fi
ended_by_slurm=0
trap 'ended_by_slurm=1' TERM   # keep waiting: the ranks are writing their checkpoint
"${LAUNCH[@]}" "$R1DIST_BIN" --cfg "$R1DIST_CONFIGS/$V.toml" --resume auto "${R1DIST_V_SETS[@]}" &
child=$!
timer=
if [ -n "${SLURM_JOB_ID:-}" ]; then
  end=$(r1dist_job_end "$SLURM_JOB_ID")
  if [ -n "$end" ]; then
    wait_s=$(( end - $(date +%s) - R1DIST_SIGNAL_LEAD ))
    [ "$wait_s" -gt 0 ] || wait_s=0
    ( sleep "$wait_s"
      echo "=== r1dist $V: ${R1DIST_SIGNAL_LEAD} s before the time limit: SIGUSR1 to the ranks"
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
after=$(r1dist_latest_step "$R1DIST_V_OUT")
echo "=== r1dist $V: attempt $attempt ended with exit code $rc at $(date '+%F %T'); newest checkpoint step $before -> $after"

[ "$rc" = 75 ] || exit "$rc"
if [ -z "${SLURM_JOB_ID:-}" ]; then
  echo "=== r1dist $V: stopped early (resumable); run this script again to continue"
  exit 75
fi
if [ "$ended_by_slurm" = 1 ]; then
  echo "=== r1dist $V: Slurm is ending this attempt (requeue, preemption or cancel); it decides what follows"
  exit 75
fi
if [ "$after" -le "$before" ]; then
  echo "=== r1dist $V: stopped early without progress; not requeued" >&2
  exit 75
fi
if [ "$attempt" -ge "$R1DIST_MAX_ATTEMPTS" ]; then
  echo "=== r1dist $V: stopped early after $attempt attempts (R1DIST_MAX_ATTEMPTS); not requeued" >&2
  exit 75
fi
echo "=== r1dist $V: requeueing (attempt $((attempt + 1)) of at most $R1DIST_MAX_ATTEMPTS resumes at step $after)"
scontrol requeue "$SLURM_JOB_ID"
