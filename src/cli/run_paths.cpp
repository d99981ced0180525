#include "cli/run_paths.h"

#include <cstring>
#include <fstream>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/formats/checkpoint.h"

namespace r1dist {

bool has_hdf5_signature(const std::string& path) {
  static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::ifstream f(path, std::ios::binary);
  for (std::streamoff at = 0; f && at <= (std::streamoff(1) << 30); at = at == 0 ? 512 : 2 * at) {
    char head[8];
    f.seekg(at);
    if (!f.read(head, sizeof head)) return false;
    if (!std::memcmp(head, kSignature, sizeof head)) return true;
  }
  return false;
}

std::string metrics_arg(const std::string& arg) {
  if (is_dir(arg)) {
    const std::string path = arg + "/metrics.h5";
    if (!is_file(path))
      throw UsageError(arg + " has no metrics.h5 (not a run directory?)\nHINT: give a run's output.dir or its "
                       "metrics.h5");
    return path;
  }
  if (is_file(arg) && !has_hdf5_signature(arg))
    throw UsageError(arg + " is not an HDF5 file\nHINT: give a run's output.dir or its metrics.h5");
  return arg;
}

std::string checkpoint_arg(const std::string& arg) {
  if (!is_dir(arg)) return arg;
  const auto path = find_latest_checkpoint(arg);
  if (path.empty())
    throw UsageError(arg + " is a directory without a valid checkpoint (checkpoints/step_N.h5)\nHINT: give a "
                     "checkpoint file or a run directory that saved one (output.save_every)");
  return path;
}

std::string adapter_arg(const std::string& arg) {
  if (is_dir(arg) && !is_file(arg + "/adapter_config.json") && is_file(arg + "/adapter/adapter_config.json"))
    return arg + "/adapter";
  return arg;
}

}  // namespace r1dist
