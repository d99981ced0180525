// The process group: MPI setup, rank-aware helpers and the few collectives the CLI needs.
// All MPI (and, with the trainer, NCCL) calls live in src/dist/comm.cpp.
#pragma once
#include <string>
#include <vector>

namespace r1dist {

struct ProcessGroup {
  int rank = 0, world = 1;            // in MPI_COMM_WORLD
  int local_rank = 0, local_world = 1;  // on this node (shared-memory split)
  bool initialized = false;
};

// MPI_Init_thread once per process; later calls return the same group.
const ProcessGroup& dist_init(int* argc, char*** argv);
const ProcessGroup& dist_group();
void dist_finalize();
// Ends every rank: MPI_Abort when MPI is up and the world has more than one rank (so the
// others do not hang in a collective), else std::exit.
[[noreturn]] void dist_abort(int code);
void dist_barrier();
// Every rank's string, in rank order, on `root` (empty vector elsewhere).
std::vector<std::string> dist_gather_strings(const std::string& mine, int root = 0);

}  // namespace r1dist
