// MPI process group. Nothing here runs before dist_init except the launcher-environment
// fallback of dist_group().
#include "r1dist/dist/process_group.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "dist/mpi_check.h"

namespace r1dist {

namespace {

ProcessGroup g_group;

int env_int(std::initializer_list<const char*> names, int fallback) {
  for (const char* n : names)
    if (const char* v = std::getenv(n); v && *v) return std::atoi(v);
  return fallback;
}

// What mpirun / srun tell a process that has not called MPI_Init (yet).
ProcessGroup launcher_group() {
  ProcessGroup g;
  g.rank = env_int({"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}, 0);
  g.world = env_int({"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}, 1);
  g.local_rank = env_int({"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"}, 0);
  g.local_world = env_int({"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"}, 1);
  return g;
}

template <class T>
void allreduce_sum(T* data, int64_t n, MPI_Datatype type) {
  if (!g_group.initialized || g_group.world == 1) return;
  const int64_t piece = int64_t(1) << 30;  // MPI counts are int
  for (int64_t off = 0; off < n; off += piece) {
    const int count = static_cast<int>(std::min(piece, n - off));
    R1DIST_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data + off, count, type, MPI_SUM, MPI_COMM_WORLD));
  }
}

}  // namespace

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

const ProcessGroup& dist_group() {
  if (!g_group.initialized) {
    static const ProcessGroup launcher = launcher_group();
    return launcher;
  }
  return g_group;
}

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

void dist_allreduce_sum(float* data, int64_t n) { allreduce_sum(data, n, MPI_FLOAT); }
void dist_allreduce_sum(double* data, int64_t n) { allreduce_sum(data, n, MPI_DOUBLE); }

void dist_broadcast(void* data, int64_t bytes, int root) {
  if (!g_group.initialized || g_group.world == 1) return;
  check(bytes <= INT_MAX, "dist_broadcast: " + std::to_string(bytes) + " bytes is more than one call sends");
  R1DIST_MPI_CHECK(MPI_Bcast(data, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD));
}

}  // namespace r1dist
