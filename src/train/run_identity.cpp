#include "r1dist/train/run_identity.h"

#include <chrono>
#include <cstdio>

#include "r1dist/base/fs.h"
#include "r1dist/base/hash.h"
#include "r1dist/formats/safetensors.h"
#include "r1dist/log/log.h"

namespace r1dist {

std::string model_config_hash(const std::string& model_dir) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx",
                static_cast<unsigned long long>(stable_hash64(read_file(model_dir + "/config.json"))));
  return hex;
}

std::string model_weights_fingerprint(const std::string& model_dir) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto c = st::Checkpoint::open_dir(model_dir);
  const auto fp = st::weights_fingerprint(c);
  char secs[32];
  std::snprintf(secs, sizeof secs, "%.3f", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  log::info("model weights fingerprint ", fp, " (", c.names().size(), " tensors sampled in ", secs, " s)");
  return fp;
}

}  // namespace r1dist
