// The process group: MPI setup, rank-aware helpers and the host-memory collectives that
// the core needs. All MPI calls of the project live in src/dist/. Commands that never talk
// to other ranks (tokenize, metrics, --version) do not initialise MPI: their group comes
// from the launcher's environment, so that under mpirun only rank 0 prints.
//
// Every collective runs under one deadline, dist.timeout_s (dist_set_timeout): it is posted
// non-blocking and polled, and each rank checks in with rank 0 as it arrives. A collective
// that has not finished by the deadline ends the job (MPI_Abort, exit code 1) with a
// message naming the collective, what the job was doing (dist_set_phase) and the ranks that
// did not arrive: a stopped, hung or dead rank never leaves the others waiting for ever.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace r1dist {

struct ProcessGroup {
  int rank = 0, world = 1;              // in MPI_COMM_WORLD (or the launcher's numbers)
  int local_rank = 0, local_world = 1;  // on this node (shared-memory split)
  bool initialized = false;             // MPI is up (dist_init was called)
};

// MPI_Init_thread once per process; later calls return the same group.
const ProcessGroup& dist_init(int* argc, char*** argv);
// The group: MPI's after dist_init, else the launcher's (OMPI_COMM_WORLD_*, PMIX_RANK,
// PMI_RANK; rank 0 of 1 when started alone).
const ProcessGroup& dist_group();
void dist_finalize();
// Ends every rank: MPI_Abort when MPI is up and the world has more than one rank (so the
// others do not hang in a collective), else std::exit.
[[noreturn]] void dist_abort(int code);

// The deadline of every collective in seconds (<= 0: none; the default until set).
void dist_set_timeout(int64_t seconds);
int64_t dist_timeout();
// What the job is doing, for the deadline's message: "start-up", "step 12", ...
void dist_set_phase(const std::string& phase);

// The collectives. `what` names the collective's purpose in the deadline's message.
void dist_barrier(const char* what = "barrier");
// Every rank's string, in rank order, on `root` (empty vector elsewhere).
std::vector<std::string> dist_gather_strings(const std::string& mine, int root = 0, const char* what = "gather");
// In-place sum over all ranks of a host buffer (any length: sent in pieces below INT_MAX).
void dist_allreduce_sum(float* data, int64_t n, const char* what = "all-reduce");
void dist_allreduce_sum(double* data, int64_t n, const char* what = "all-reduce");
// `bytes` bytes at `data` from `root` to every rank.
void dist_broadcast(void* data, int64_t bytes, int root = 0, const char* what = "broadcast");

// A collective of another library (NCCL) under the same deadline and check-in: call it after
// the collective was started; `done` polls it. `abort` (may be empty) runs before the job
// ends on the deadline (ncclCommAbort).
void dist_wait_collective(const char* what, const std::function<bool()>& done,
                          const std::function<void()>& abort = {});
// The deadline's message for a blocking call that cannot be polled (ncclCommInitRank): the
// watchdog thread (dist/watchdog.h) prints it before it ends the process.
std::string dist_deadline_message(const char* what, const std::string& missing);

}  // namespace r1dist
