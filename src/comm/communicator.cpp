// The communicator factory and the MPI communicator (host buffers; CUDA tensors go through
// a host copy). NCCL lives in nccl_communicator.cpp.
#include "r1dist/comm/communicator.h"

#include <ATen/ATen.h>

#include <chrono>

#include "comm/nccl_communicator.h"
#include "r1dist/base/error.h"
#include "r1dist/dist/process_group.h"

namespace r1dist {

double Communicator::take_seconds() {
  const double s = seconds_;
  seconds_ = 0;
  return s;
}

namespace {

class MpiCommunicator : public Communicator {
 public:
  void allreduce_sum(at::Tensor& t) override {
    check(t.is_contiguous(), "allreduce_sum: tensor must be contiguous");
    const auto t0 = std::chrono::steady_clock::now();
    if (dist_group().world > 1) {
      at::Tensor host = t.is_cpu() ? t : t.to(at::kCPU);
      if (host.scalar_type() == at::kFloat)
        dist_allreduce_sum(host.data_ptr<float>(), host.numel(), "MPI_Allreduce of the gradients");
      else if (host.scalar_type() == at::kDouble)
        dist_allreduce_sum(host.data_ptr<double>(), host.numel(), "MPI_Allreduce of the evaluation sums");
      else
        throw Error("allreduce_sum: only float32/float64 tensors, got " +
                    std::string(c10::toString(host.scalar_type())));
      if (!t.is_cpu()) t.copy_(host);
    }
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  std::string name() const override { return "mpi"; }
};

}  // namespace

std::unique_ptr<Communicator> make_communicator(Backend backend, const at::Device& device) {
  check(dist_group().initialized, "make_communicator: the process group is not initialised");
  if (backend == Backend::automatic) backend = (device.is_cuda() && nccl_available()) ? Backend::nccl : Backend::mpi;
  if (backend == Backend::nccl) {
    if (!nccl_available())
      throw UsageError("dist.backend = \"nccl\" but this build has no NCCL (a CPU libtorch)\n"
                       "HINT: use dist.backend = \"mpi\" or \"auto\"");
    if (!device.is_cuda())
      throw UsageError("dist.backend = \"nccl\" needs a CUDA device, but model.device resolved to " + device.str());
    return detail::make_nccl_communicator(device);
  }
  return std::make_unique<MpiCommunicator>();
}

}  // namespace r1dist
