#include <mpi.h>

#include <cstdlib>

#include "dist_internal.h"
#include "r1dist/dist.h"
#include "r1dist/error.h"

namespace r1dist {

namespace {
ProcessGroup g_group;
}

const ProcessGroup& dist_init(int* argc, char*** argv) {
  if (g_group.initialized) return g_group;
  int already = 0;
  R1DIST_MPI_CHECK(MPI_Initialized(&already));
  if (!already) {
    int provided = 0;
    R1DIST_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  }
  // Errors come back as codes so R1DIST_MPI_CHECK can report them with context.
  R1DIST_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  R1DIST_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &g_group.rank));
  R1DIST_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &g_group.world));
  MPI_Comm local;
  R1DIST_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_group.rank,
                                       MPI_INFO_NULL, &local));
  R1DIST_MPI_CHECK(MPI_Comm_rank(local, &g_group.local_rank));
  R1DIST_MPI_CHECK(MPI_Comm_size(local, &g_group.local_world));
  R1DIST_MPI_CHECK(MPI_Comm_free(&local));
  g_group.initialized = true;
  return g_group;
}

const ProcessGroup& dist_group() { return g_group; }

void dist_finalize() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Finalize();
  g_group.initialized = false;
}

void dist_abort(int code) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin && g_group.world > 1) MPI_Abort(MPI_COMM_WORLD, code);
  if (init && !fin) MPI_Finalize();
  std::exit(code);
}

void dist_barrier() {
  if (g_group.initialized) R1DIST_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

std::vector<std::string> dist_gather_strings(const std::string& mine, int root) {
  if (!g_group.initialized || g_group.world == 1) return {mine};
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(g_group.world), displs(g_group.world);
  R1DIST_MPI_CHECK(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, root, MPI_COMM_WORLD));
  std::vector<char> all;
  if (g_group.rank == root) {
    int total = 0;
    for (int r = 0; r < g_group.world; ++r) {
      displs[r] = total;
      total += lens[r];
    }
    all.resize(std::max(total, 1));
  }
  R1DIST_MPI_CHECK(MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(),
                               displs.data(), MPI_CHAR, root, MPI_COMM_WORLD));
  std::vector<std::string> out;
  if (g_group.rank == root)
    for (int r = 0; r < g_group.world; ++r) out.emplace_back(all.data() + displs[r], lens[r]);
  return out;
}

}  // namespace r1dist
