// What a checkpoint must match to be resumed by a run: the model (its config.json and its
// weights), the tokenized data, the global batch and the gradient backend.
#pragma once
#include <cstdint>
#include <string>

namespace r1dist {

struct RunIdentity {
  std::string model_hash;        // model_config_hash of the model directory
  std::string weights;           // model_weights_fingerprint of the model directory
  std::string data_fingerprint;  // the data file and its settings (Dataset::fingerprint)
  int64_t global_batch = 0;      // rows per step: micro_batch x grad_accum x world
  std::string comm_backend;
  std::string rows_fingerprint;  // the tokenized rows (Dataset::rows_fingerprint): what a resume compares
};

// A stable hash of DIR/config.json (16 hex digits).
std::string model_config_hash(const std::string& model_dir);
// The fingerprint of DIR's safetensors weights (formats/safetensors.h weights_fingerprint),
// logged with the time it took.
std::string model_weights_fingerprint(const std::string& model_dir);

}  // namespace r1dist
