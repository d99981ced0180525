// The process group: MPI setup, rank-aware helpers and the host-memory collectives that
// the core needs. All MPI calls of the project live in src/dist/. Commands that never talk
// to other ranks (tokenize, metrics, --version) do not initialise MPI: their group comes
// from the launcher's environment, so that under mpirun only rank 0 prints.
#pragma once
#include <cstdint>
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
void dist_barrier();
// Every rank's string, in rank order, on `root` (empty vector elsewhere).
std::vector<std::string> dist_gather_strings(const std::string& mine, int root = 0);
// In-place sum over all ranks of a host buffer (any length: sent in pieces below INT_MAX).
void dist_allreduce_sum(float* data, int64_t n);
void dist_allreduce_sum(double* data, int64_t n);
// `bytes` bytes at `data` from `root` to every rank.
void dist_broadcast(void* data, int64_t bytes, int root = 0);

}  // namespace r1dist
