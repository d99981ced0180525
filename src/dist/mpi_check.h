// The checked-call macro of src/dist: names the MPI call, rank, file and line of a
// failure, with MPI's own text.
#pragma once
#include <mpi.h>

#include <string>

#include "r1dist/base/error.h"
#include "r1dist/dist/process_group.h"

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
