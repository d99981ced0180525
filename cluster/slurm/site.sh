# Site settings of the Slurm scripts: the one place to edit for a cluster. Each can also be
# exported before `cluster/slurm/submit.sh` (the environment wins). The defaults run on a
# CPU-only cluster; for the seed experiment on GPU nodes set, e.g.,
#   R1DIST_GPUS_PER_NODE=8 R1DIST_RANKS_PER_NODE=8 R1DIST_CPUS_PER_RANK=8 R1DIST_TIME=04:00:00
# Sourced by submit.sh and run_point.sh.

: "${R1DIST_PARTITION:=}"          # sbatch --partition ("" = the cluster's default)
: "${R1DIST_ACCOUNT:=}"            # sbatch --account ("" = none)
: "${R1DIST_QOS:=}"                # sbatch --qos ("" = none)
: "${R1DIST_GPUS_PER_NODE:=0}"     # GPUs per node; 0 = a CPU-only cluster
: "${R1DIST_RANKS_PER_NODE:=2}"    # MPI ranks (srun tasks) per point: one per GPU on GPU nodes
: "${R1DIST_CPUS_PER_RANK:=1}"     # --cpus-per-task
: "${R1DIST_TIME:=04:00:00}"       # time limit of one attempt; a longer run requeues itself
: "${R1DIST_SIGNAL_LEAD:=300}"     # seconds before the limit that run_point.sh sends SIGUSR1:
                                   # r1dist checkpoints the step and exits 75, the task requeues
: "${R1DIST_MAX_ATTEMPTS:=20}"     # requeues at most this often (each must make progress)
: "${R1DIST_MPI:=pmix}"            # srun --mpi plugin that matches the cluster's Open MPI
: "${R1DIST_MODULES:=}"            # environment modules to load first ("" = none), e.g. "openmpi cuda"

