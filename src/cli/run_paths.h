// What a command's path argument stands for: a run directory is accepted wherever one of its
// files is meant (its metrics.h5, its exported adapter, its newest checkpoint).
#pragma once
#include <string>

namespace r1dist {

// A metrics file: ARG, or ARG/metrics.h5 when ARG is a directory. UsageError for a directory
// without one and for a file that is not HDF5.
std::string metrics_arg(const std::string& arg);
// A checkpoint file: ARG, or the newest valid checkpoint of the run directory ARG.
std::string checkpoint_arg(const std::string& arg);
// An adapter: ARG, or ARG/adapter when ARG is a run directory (no adapter_config.json of its own).
std::string adapter_arg(const std::string& arg);
// Whether the file starts with HDF5's signature (at 0, or after a user block of 512 * 2^k bytes).
bool has_hdf5_signature(const std::string& path);

}  // namespace r1dist
