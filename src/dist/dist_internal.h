// Shared by the files of src/dist: the checked-call macro, the watchdog and the NCCL factory.
#pragma once
#include <mpi.h>

#include <memory>
#include <string>

#include "r1dist/comm.h"
#include "r1dist/dist.h"
#include "r1dist/error.h"

// Names the MPI call, rank, file and line of a failure, with MPI's own text.
#define R1DIST_MPI_CHECK(call)                                                              \
  do {                                                                                      \
    int rc_ = (call);                                                                       \
    if (rc_ != MPI_SUCCESS) {                                                               \
      char buf_[MPI_MAX_ERROR_STRING];                                                      \
      int len_ = 0;                                                                         \
      MPI_Error_string(rc_, buf_, &len_);                                                   \
      throw ::r1dist::Error(std::string(#call) + " failed on rank " +                       \
                            std::to_string(::r1dist::dist_group().rank) + " at " + __FILE__ + \
                            ":" + std::to_string(__LINE__) + ": " + std::string(buf_, len_)); \
    }                                                                                       \
  } while (0)

namespace r1dist::detail {

class Watchdog;
std::shared_ptr<Watchdog> make_watchdog(int64_t timeout_s);
// Marks a collective as in progress for the watchdog (no-op with a null watchdog).
class Watch {
 public:
  Watch(Watchdog* w, const char* what);
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

 private:
  Watchdog* w_;
};

std::unique_ptr<Communicator> make_nccl_communicator(const at::Device& device, int64_t timeout_s);

}  // namespace r1dist::detail
