// Where a rank computes and in what precision: the config's (or a flag's) choice resolved
// to a libtorch device and dtype, and the device's peak memory.
#pragma once
#include <ATen/ATen.h>

#include <string>

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

}  // namespace r1dist
