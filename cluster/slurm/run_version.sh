#!/usr/bin/env bash
# One version of the sweep inside a Slurm allocation: srun starts one r1dist rank per task
# (per GPU). Called by sweep.sbatch and base.sbatch; usable by hand inside salloc too:
#   R1DIST_MODELS=... R1DIST_DATA=... bash cluster/slurm/run_version.sh v8
set -euo pipefail
V=${1:?usage: run_version.sh VERSION (v1..v8)}
ROOT=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$ROOT"
CFG=configs/$V.toml
[ -f "$CFG" ] || { echo "run_version.sh: no $CFG" >&2; exit 2; }
source launch/env.sh
MODEL=$(sed -n 's/^path = "models\/\(.*\)"/\1/p' "$CFG" | head -1)
SETS=(--set "output.dir=runs/$V")
[ -n "${R1DIST_MODELS:-}" ] && SETS+=(--set "model.path=$R1DIST_MODELS/$MODEL")
[ -n "${R1DIST_DATA:-}" ] && SETS+=(--set "data.path=$R1DIST_DATA")
mkdir -p runs/slurm
# Requeue near the time limit (sbatch --signal=B:USR1@300); the next start resumes.
trap 'echo "time limit near: requeueing $SLURM_JOB_ID"; scontrol requeue "${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}_${SLURM_ARRAY_TASK_ID:-0}"' USR1
LAUNCH=(srun --kill-on-bad-exit=1)
command -v srun >/dev/null 2>&1 || LAUNCH=(mpirun -np "${R1DIST_NP:-1}")
"${LAUNCH[@]}" ./build/r1dist --cfg "$CFG" --resume auto "${SETS[@]}" &
wait $!   # wait (not a foreground child) so the USR1 trap runs while training
