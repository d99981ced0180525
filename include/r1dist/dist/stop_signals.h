// The signals a scheduler sends to end a job early (Slurm: SIGTERM at preemption, requeue
// and the time limit; SIGUSR1 from `sbatch --signal=USR1@T`; SIGINT from Ctrl-C). The first
// one asks the run to stop at the next step boundary, with a checkpoint (the trainer agrees
// on the step across ranks); a second one ends the process at once with 128 + signal.
// Copies of the first signal within kDuplicateSignalWindowMs count as one: Slurm delivers
// SIGTERM to a task both from its slurmstepd and through srun, which forwards its own.
#pragma once
#include <cstdint>

namespace r1dist {

// Exit code of a run that stopped early because of such a signal, with a checkpoint it can
// be resumed from (EX_TEMPFAIL of sysexits.h: try again). The Slurm scripts requeue on it.
constexpr int kExitResumable = 75;
constexpr int64_t kDuplicateSignalWindowMs = 1000;

// Installs the handlers (idempotent). Until then the signals keep their default action.
void install_stop_signals();
// The first stop signal received (0: none yet). Async-signal-safe to read.
int stop_signal();
// For tests: forget a received signal.
void reset_stop_signal();

}  // namespace r1dist
