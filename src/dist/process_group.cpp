// MPI process group. Nothing here runs before dist_init except the launcher-environment
// fallback of dist_group().
//
// The deadline (process_group.h): each collective is posted non-blocking and polled, and
// every rank checks in with rank 0 on a duplicate of MPI_COMM_WORLD: rank 0 posts a receive
// from each other rank, the others a synchronous send (MPI_Issend) to rank 0. On the
// deadline rank 0 knows which ranks never arrived (their receive is still open), and every
// other rank knows whether rank 0 did (its send completes only once rank 0 arrived).
#include "r1dist/dist/process_group.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "dist/mpi_check.h"
#include "r1dist/log/log.h"

namespace r1dist {

namespace {

ProcessGroup g_group;
int64_t g_timeout_s = 0;
std::string g_phase = "start-up";
MPI_Comm g_checkin = MPI_COMM_NULL;
int64_t g_seq = 0;  // collectives so far: the same count on every rank
constexpr int kCheckinTag = 0x7131;

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

std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size() && i < 16; ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  if (ranks.size() > 16) out += " and " + std::to_string(ranks.size() - 16) + " more";
  return out;
}

// This rank's arrival at one collective, and (on rank 0) the other ranks'.
class CheckIn {
 public:
  CheckIn() {
    seq_ = ++g_seq;
    const int world = g_group.world;
    if (g_group.rank == 0) {
      got_.assign(size_t(world), 0);
      reqs_.assign(size_t(world), MPI_REQUEST_NULL);
      for (int r = 1; r < world; ++r)
        R1DIST_MPI_CHECK(MPI_Irecv(&got_[size_t(r)], 1, MPI_INT64_T, r, kCheckinTag, g_checkin, &reqs_[size_t(r)]));
    } else {
      reqs_.assign(1, MPI_REQUEST_NULL);
      R1DIST_MPI_CHECK(MPI_Issend(&seq_, 1, MPI_INT64_T, 0, kCheckinTag, g_checkin, &reqs_[0]));
    }
  }
  bool test() {
    int flag = 0;
    R1DIST_MPI_CHECK(MPI_Testall(int(reqs_.size()), reqs_.data(), &flag, MPI_STATUSES_IGNORE));
    return flag != 0;
  }
  // Rank 0: the ranks whose check-in never came. Elsewhere: {0} when rank 0 never came.
  std::vector<int> missing() const {
    std::vector<int> out;
    if (g_group.rank == 0) {
      for (size_t r = 1; r < reqs_.size(); ++r)
        if (reqs_[r] != MPI_REQUEST_NULL) out.push_back(int(r));
    } else if (reqs_[0] != MPI_REQUEST_NULL) {
      out.push_back(0);
    }
    return out;
  }

 private:
  int64_t seq_ = 0;
  std::vector<int64_t> got_;
  std::vector<MPI_Request> reqs_;
};

[[noreturn]] void deadline_passed(const char* what, const CheckIn& ci) {
  const auto missing = ci.missing();
  std::string who;
  if (g_group.rank == 0)
    who = missing.empty() ? "every rank arrived, but the collective never completed"
                          : "rank(s) " + rank_list(missing) + " did not arrive (stopped, hung or dead)";
  else
    who = missing.empty() ? "rank 0 arrived; rank 0's message names the rank(s) that did not"
                          : "rank 0 did not arrive (stopped, hung or dead?)";
  log::error(dist_deadline_message(what, who));
  log::flush();
  dist_abort(1);
}

// Polls `done` and the check-in until both complete, or ends the job on the deadline.
void wait_under_deadline(const char* what, const std::function<bool()>& done, CheckIn& ci,
                         const std::function<void()>& abort = {}) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  bool finished = false, arrived = false;
  for (int64_t polls = 0;; ++polls) {
    if (!finished) finished = done();
    if (!arrived) arrived = ci.test();
    if (finished && arrived) return;
    // Spin briefly (a collective of a healthy job completes in microseconds to
    // milliseconds), then sleep between polls so that waiting ranks leave the CPU to
    // ranks that still compute (oversubscribed CPU runs).
    if (polls < 200) continue;
    const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
    if (g_timeout_s > 0 && waited > double(g_timeout_s)) {
      if (abort) abort();
      deadline_passed(what, ci);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(waited < 1.0 ? 50 : 1000));
  }
}

// One non-blocking MPI collective, posted by `post`, under the deadline.
template <class Post>
void collective(const char* what, Post post) {
  if (!g_group.initialized || g_group.world == 1) return;
  CheckIn ci;
  MPI_Request req = MPI_REQUEST_NULL;
  post(&req);
  wait_under_deadline(what, [&] {
    int flag = 0;
    R1DIST_MPI_CHECK(MPI_Test(&req, &flag, MPI_STATUS_IGNORE));
    return flag != 0;
  }, ci);
}

template <class T>
void allreduce_sum(T* data, int64_t n, MPI_Datatype type, const char* what) {
  const int64_t piece = int64_t(1) << 30;  // MPI counts are int
  for (int64_t off = 0; off < n; off += piece) {
    const int count = static_cast<int>(std::min(piece, n - off));
    collective(what, [&](MPI_Request* r) {
      R1DIST_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data + off, count, type, MPI_SUM, MPI_COMM_WORLD, r));
    });
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
  R1DIST_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &g_checkin));
  R1DIST_MPI_CHECK(MPI_Comm_set_errhandler(g_checkin, MPI_ERRORS_RETURN));
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
  if (init && !fin) {
    if (g_checkin != MPI_COMM_NULL) MPI_Comm_free(&g_checkin);
    MPI_Finalize();
  }
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

void dist_set_timeout(int64_t seconds) { g_timeout_s = seconds; }
int64_t dist_timeout() { return g_timeout_s; }
void dist_set_phase(const std::string& phase) { g_phase = phase; }

std::string dist_deadline_message(const char* what, const std::string& missing) {
  return "rank " + std::to_string(dist_group().rank) + ": " + what + " (" + g_phase +
         ") did not finish within dist.timeout_s = " + std::to_string(g_timeout_s) + " s: " + missing +
         "; ending the job so that no rank waits for ever (exit code 1)\nHINT: --resume auto continues from the "
         "last checkpoint; raise dist.timeout_s if rank 0 legitimately works alone for longer (tokenizing a large "
         "data file, writing a large checkpoint)";
}

void dist_barrier(const char* what) {
  collective(what, [&](MPI_Request* r) { R1DIST_MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, r)); });
}

std::vector<std::string> dist_gather_strings(const std::string& mine, int root, const char* what) {
  if (!g_group.initialized || g_group.world == 1) return {mine};
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(g_group.world), displs(g_group.world);
  collective(what, [&](MPI_Request* r) {
    R1DIST_MPI_CHECK(MPI_Igather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, root, MPI_COMM_WORLD, r));
  });
  std::vector<char> all;
  if (g_group.rank == root) {
    int total = 0;
    for (int r = 0; r < g_group.world; ++r) {
      displs[r] = total;
      total += lens[r];
    }
    all.resize(std::max(total, 1));
  }
  collective(what, [&](MPI_Request* r) {
    R1DIST_MPI_CHECK(MPI_Igatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR,
                                  root, MPI_COMM_WORLD, r));
  });
  std::vector<std::string> out;
  if (g_group.rank == root)
    for (int r = 0; r < g_group.world; ++r) out.emplace_back(all.data() + displs[r], lens[r]);
  return out;
}

void dist_allreduce_sum(float* data, int64_t n, const char* what) {
  if (!g_group.initialized || g_group.world == 1) return;
  allreduce_sum(data, n, MPI_FLOAT, what);
}
void dist_allreduce_sum(double* data, int64_t n, const char* what) {
  if (!g_group.initialized || g_group.world == 1) return;
  allreduce_sum(data, n, MPI_DOUBLE, what);
}

void dist_broadcast(void* data, int64_t bytes, int root, const char* what) {
  if (!g_group.initialized || g_group.world == 1) return;
  check(bytes <= INT_MAX, "dist_broadcast: " + std::to_string(bytes) + " bytes is more than one call sends");
  collective(what, [&](MPI_Request* r) {
    R1DIST_MPI_CHECK(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD, r));
  });
}

void dist_wait_collective(const char* what, const std::function<bool()>& done, const std::function<void()>& abort) {
  if (!g_group.initialized || g_group.world == 1) {
    while (!done()) std::this_thread::sleep_for(std::chrono::microseconds(20));
    return;
  }
  CheckIn ci;
  wait_under_deadline(what, done, ci, abort);
}

}  // namespace r1dist
