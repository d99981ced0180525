// MPI gradient all-reduce and the collective watchdog. NCCL lives in nccl.cpp.
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "dist_internal.h"
#include "r1dist/comm.h"
#include "r1dist/dist.h"
#include "r1dist/error.h"

namespace r1dist {

double Communicator::take_seconds() {
  const double s = seconds_;
  seconds_ = 0;
  return s;
}

namespace detail {

// One thread per process that ends it when a watched collective outlives the timeout.
// A dead peer (SIGKILL, OOM) otherwise leaves NCCL or MPI waiting forever.
class Watchdog {
 public:
  explicit Watchdog(int64_t timeout_s) : timeout_s_(timeout_s) {
    if (timeout_s_ > 0) thread_ = std::thread([this] { loop(); });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void begin(const char* what) {
    std::lock_guard<std::mutex> g(mu_);
    what_ = what;
    since_ = std::chrono::steady_clock::now();
    active_ = true;
  }
  void end() {
    std::lock_guard<std::mutex> g(mu_);
    active_ = false;
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lk(mu_);
    while (!stop_) {
      cv_.wait_for(lk, std::chrono::milliseconds(500));
      if (!active_) continue;
      const double waited =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - since_).count();
      if (waited > double(timeout_s_)) {
        std::fprintf(stderr,
                     "[r1dist] rank %d: %s did not finish within dist.timeout_s = %lld s (a peer "
                     "rank probably died); ending this rank so the job does not hang\n",
                     dist_group().rank, what_, static_cast<long long>(timeout_s_));
        std::fflush(stderr);
        std::_Exit(3);
      }
    }
  }
  int64_t timeout_s_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, active_ = false;
  const char* what_ = "";
  std::chrono::steady_clock::time_point since_;
};

Watch::Watch(Watchdog* w, const char* what) : w_(w) {
  if (w_) w_->begin(what);
}
Watch::~Watch() {
  if (w_) w_->end();
}

std::shared_ptr<Watchdog> make_watchdog(int64_t timeout_s) {
  return std::make_shared<Watchdog>(timeout_s);
}

}  // namespace detail

namespace {

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(int64_t timeout_s) : dog_(detail::make_watchdog(timeout_s)) {}
  void allreduce_sum(at::Tensor& t) override {
    check(t.is_contiguous(), "allreduce_sum: tensor must be contiguous");
    const auto t0 = std::chrono::steady_clock::now();
    if (dist_group().world > 1) {
      at::Tensor host = t.is_cpu() ? t : t.to(at::kCPU);
      MPI_Datatype type;
      if (host.scalar_type() == at::kFloat)
        type = MPI_FLOAT;
      else if (host.scalar_type() == at::kDouble)
        type = MPI_DOUBLE;
      else
        throw Error("allreduce_sum: only float32/float64 tensors, got " +
                    std::string(c10::toString(host.scalar_type())));
      detail::Watch w(dog_.get(), "MPI_Allreduce");
      // Large buffers go in pieces below INT_MAX elements (MPI counts are int).
      const int64_t n = host.numel();
      const int64_t piece = int64_t(1) << 30;
      char* base = static_cast<char*>(host.data_ptr());
      for (int64_t off = 0; off < n; off += piece) {
        const int count = static_cast<int>(std::min(piece, n - off));
        R1DIST_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, base + off * host.element_size(), count, type,
                                       MPI_SUM, MPI_COMM_WORLD));
      }
      if (!t.is_cpu()) t.copy_(host);
    }
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  std::string name() const override { return "mpi"; }

 private:
  std::shared_ptr<detail::Watchdog> dog_;
};

}  // namespace

std::unique_ptr<Communicator> make_communicator(const std::string& backend, const at::Device& device,
                                                int64_t timeout_s) {
  check(dist_group().initialized, "make_communicator: the process group is not initialised");
  std::string b = backend;
  if (b == "auto") b = (device.is_cuda() && nccl_available()) ? "nccl" : "mpi";
  if (b == "nccl") {
    if (!nccl_available())
      throw UsageError("dist.backend = \"nccl\" but this build has no NCCL (a CPU libtorch)\n"
                       "HINT: use dist.backend = \"mpi\" or \"auto\"");
    if (!device.is_cuda())
      throw UsageError("dist.backend = \"nccl\" needs a CUDA device, but model.device resolved to " +
                       device.str());
    return detail::make_nccl_communicator(device, timeout_s);
  }
  if (b == "mpi") return std::make_unique<MpiCommunicator>(timeout_s);
  throw UsageError("dist.backend must be auto, nccl or mpi, got '" + backend + "'");
}

}  // namespace r1dist
