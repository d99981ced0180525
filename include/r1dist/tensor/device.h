// Where a rank computes and in what precision: the config's (or a flag's) choice resolved
// to a libtorch device and dtype, and the device's peak memory.
#pragma once
#include <ATen/ATen.h>

#include <exception>
#include <string>
#include <thread>

#include "r1dist/config/config.h"

namespace r1dist {

at::ScalarType to_scalar_type(ComputeDtype d);

// "auto" -> CUDA when available, "cpu", "cuda", "cuda:N". Ranks beyond the GPU count share
// GPUs round-robin by local rank.
at::Device parse_device(const std::string& s, int local_rank = 0);
at::Device resolve_device(DeviceChoice d, int local_rank = 0);
// How many of a node's local_world ranks resolve `choice` to the device that local_rank
// resolves it to (itself included): the ranks that share that device's memory (every rank
// of the node on the CPU, every k-th rank on k GPUs when ranks outnumber them).
int ranks_sharing_device(const std::string& choice, int local_rank, int local_world);
// Makes `d` the current CUDA device of this thread (no-op on the CPU).
void select_device(const at::Device& d);
// The memory a rank on `d` may use, in bytes: the GPU's total memory, or the machine's
// physical memory on the CPU.
double device_memory_bytes(const at::Device& d);
// Starts a new peak for peak_memory_gb (no-op on the CPU).
void reset_peak_memory(const at::Device& d);
// Peak bytes allocated on `d` since the process started (or the last reset), in GB (0 on the CPU).
double peak_memory_gb(const at::Device& d);

// Starts a GPU's runtime on a thread of its own: the context, the device and page-locked host
// memory pools and the BLAS handle, which take a second or two that a command would otherwise
// spend after reading its tokenizer and data. wait() (or the destructor) joins; an error there
// is left for the same call on the command's own path to raise with its context. Nothing on
// the CPU.
class DeviceStart {
 public:
  explicit DeviceStart(const at::Device& d);
  ~DeviceStart() { wait(); }
  DeviceStart(const DeviceStart&) = delete;
  DeviceStart& operator=(const DeviceStart&) = delete;
  void wait() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::thread thread_;
};

}  // namespace r1dist
