// Gradient communication: the one collective the trainer needs (an in-place sum across
// ranks), over NCCL for CUDA tensors or MPI for host memory, behind one interface. Every
// call is checked (rank, file and line on failure) and runs under the deadline of every
// collective (dist/process_group.h, dist.timeout_s): one that has not finished by then ends
// the job, naming the ranks that did not arrive.
#pragma once
#include <ATen/Tensor.h>

#include <memory>
#include <string>

#include "r1dist/config/config.h"

namespace r1dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  // In-place sum over all ranks. `t` must be contiguous, float32 or float64, on the
  // backend's device (NCCL: the rank's CUDA device; MPI: CPU, or CUDA through a host copy).
  virtual void allreduce_sum(at::Tensor& t) = 0;
  virtual std::string name() const = 0;
  // Seconds spent inside allreduce_sum since the last call (then reset).
  double take_seconds();

 protected:
  double seconds_ = 0;
};

// backend: automatic (nccl for a CUDA device in a CUDA build, else mpi) | nccl | mpi.
// The process group (dist_init) must exist.
std::unique_ptr<Communicator> make_communicator(Backend backend, const at::Device& device);

// True when this build can use NCCL.
bool nccl_available();

}  // namespace r1dist
