// NCCL gradient all-reduce on the rank's CUDA device, on PyTorch's current stream. The
// communicator comes from a unique id that rank 0 creates and broadcasts over MPI.
#include "comm/nccl_communicator.h"

#include "r1dist/base/error.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/dist/watchdog.h"

#if defined(R1DIST_WITH_NCCL)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#endif

namespace r1dist {

#if defined(R1DIST_WITH_NCCL)

#define R1DIST_NCCL_CHECK(call)                                                             \
  do {                                                                                      \
    ncclResult_t rc_ = (call);                                                              \
    if (rc_ != ncclSuccess)                                                                 \
      throw ::r1dist::Error(std::string(#call) + " failed on rank " +                       \
                            std::to_string(::r1dist::dist_group().rank) + " at " + __FILE__ + \
                            ":" + std::to_string(__LINE__) + ": " + ncclGetErrorString(rc_)); \
  } while (0)

#define R1DIST_CUDA_OK(call)                                                                  \
  do {                                                                                        \
    const cudaError_t rc_ = (call);                                                           \
    if (rc_ != cudaSuccess) throw ::r1dist::Error(std::string(#call) + ": " + cudaGetErrorString(rc_)); \
  } while (0)

bool nccl_available() { return true; }

namespace {

class NcclCommunicator : public Communicator {
 public:
  explicit NcclCommunicator(const at::Device& device) : device_(device), dog_(dist_timeout()) {
    const auto& pg = dist_group();
    ncclUniqueId id;
    if (pg.rank == 0) R1DIST_NCCL_CHECK(ncclGetUniqueId(&id));
    dist_broadcast(&id, sizeof(id), 0, "MPI_Bcast of the NCCL unique id");
    c10::cuda::CUDAGuard guard(device_);
    // Blocking: every rank is known to be alive (the broadcast above just finished), and
    // the watchdog thread holds this one call to the same deadline.
    Watchdog::Watch w(&dog_, "ncclCommInitRank");
    R1DIST_NCCL_CHECK(ncclCommInitRank(&comm_, pg.world, id, pg.rank));
    R1DIST_CUDA_OK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  ~NcclCommunicator() override {
    if (done_) cudaEventDestroy(done_);
    if (comm_) ncclCommDestroy(comm_);
  }
  void allreduce_sum(at::Tensor& t) override {
    check(t.is_cuda() && t.is_contiguous(), "NCCL allreduce_sum: needs a contiguous CUDA tensor");
    ncclDataType_t type;
    if (t.scalar_type() == at::kFloat)
      type = ncclFloat32;
    else if (t.scalar_type() == at::kDouble)
      type = ncclFloat64;
    else
      throw Error("NCCL allreduce_sum: only float32/float64 tensors");
    const auto t0 = std::chrono::steady_clock::now();
    c10::cuda::CUDAGuard guard(device_);
    auto stream = c10::cuda::getCurrentCUDAStream(device_.index());
    R1DIST_NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), type,
                                    ncclSum, comm_, stream.stream()));
    R1DIST_CUDA_OK(cudaEventRecord(done_, stream.stream()));
    // Waiting here keeps the timing honest and holds the collective to the deadline.
    cudaError_t rc = cudaSuccess;
    dist_wait_collective(
        "ncclAllReduce of the gradients",
        [&] {
          rc = cudaEventQuery(done_);
          return rc != cudaErrorNotReady;
        },
        [&] { ncclCommAbort(comm_), comm_ = nullptr; });
    if (rc != cudaSuccess) throw Error(std::string("ncclAllReduce: ") + cudaGetErrorString(rc));
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  std::string name() const override { return "nccl"; }

 private:
  at::Device device_;
  Watchdog dog_;
  ncclComm_t comm_ = nullptr;
  cudaEvent_t done_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> detail::make_nccl_communicator(const at::Device& device) {
  return std::make_unique<NcclCommunicator>(device);
}

#else

bool nccl_available() { return false; }

std::unique_ptr<Communicator> detail::make_nccl_communicator(const at::Device&) {
  throw Error("this build has no NCCL");
}

#endif

}  // namespace r1dist
