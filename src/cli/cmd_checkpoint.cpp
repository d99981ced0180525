// r1dist checkpoint verify PATH...: every checksum of checkpoints (files, or all of a run
// directory's) and of exported adapters (directories with r1dist_manifest.json).
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "cli/args.h"
#include "cli/commands.h"
#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/formats/manifest.h"

namespace r1dist {

namespace {

// One checkpoint file: prints a line, returns whether it is intact.
bool verify_checkpoint_file(const std::string& path) {
  try {
    const auto s = read_checkpoint(path);
    int64_t values = 0;
    for (const auto& a : s.adapters) values += static_cast<int64_t>(a.data.size());
    std::printf("ok       %s: step %lld, %zu adapter tensors (%lld values), optimizer moments, %d RNG states\n",
                path.c_str(), static_cast<long long>(s.step), s.adapters.size(), static_cast<long long>(values),
                s.world_size);
    return true;
  } catch (const std::exception& e) {
    std::printf("DAMAGED  %s\n         %s\n", path.c_str(), e.what());
    return false;
  }
}

bool verify_adapter_dir(const std::string& dir) {
  bool has = false;
  const auto problems = check_manifest(dir, &has);
  if (!has) {
    std::printf("unknown  %s: no %s (an adapter not written by r1dist, or written before manifests)\n", dir.c_str(),
                kManifestFile);
    return true;
  }
  if (problems.empty()) {
    std::printf("ok       %s: every file of %s matches\n", dir.c_str(), kManifestFile);
    return true;
  }
  std::printf("DAMAGED  %s\n", dir.c_str());
  for (const auto& p : problems) std::printf("         %s\n", p.c_str());
  return false;
}

}  // namespace

int cmd_checkpoint(int argc, char** argv) {
  Args a("r1dist checkpoint verify",
         "Check the CRC-32s of checkpoints and exported adapters. PATH: a checkpoint file (step_N.h5), a run "
         "directory (every checkpoint under checkpoints/ and the adapter/ it exported), or an adapter directory "
         "(its r1dist_manifest.json). Prints one line per file; exit 0 when all are intact, 1 otherwise.");
  a.option_str("action", "verify").option_list("paths", "files or directories").positional({"action", "paths"});
  if (!a.parse(argc, argv)) return 0;
  if (a.required("action") != "verify") throw UsageError("checkpoint: unknown action '" + a.str("action") + "' (known: verify)");
  const auto paths = a.list("paths");
  if (paths.empty()) throw UsageError("checkpoint verify: give at least one PATH");
  bool ok = true;
  int checked = 0;
  for (const auto& p : paths) {
    if (!is_dir(p)) {
      if (!is_file(p)) throw UsageError("checkpoint verify: " + p + " does not exist");
      ok = verify_checkpoint_file(p) && ok;
      ++checked;
      continue;
    }
    if (is_dir(p + "/checkpoints")) {
      std::vector<std::string> files;
      for (const auto& e : std::filesystem::directory_iterator(p + "/checkpoints"))
        if (e.path().extension() == ".h5") files.push_back(e.path().string());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        ok = verify_checkpoint_file(f) && ok;
        ++checked;
      }
      if (is_dir(p + "/adapter")) {
        ok = verify_adapter_dir(p + "/adapter") && ok;
        ++checked;
      }
      continue;
    }
    if (std::filesystem::exists(p + "/adapter_config.json") || std::filesystem::exists(p + "/" + kManifestFile)) {
      ok = verify_adapter_dir(p) && ok;
      ++checked;
      continue;
    }
    throw UsageError("checkpoint verify: " + p + " is neither a checkpoint, a run directory nor an adapter directory");
  }
  std::printf("%s: %d checked\n", ok ? "all intact" : "DAMAGE FOUND", checked);
  return ok ? 0 : 1;
}

}  // namespace r1dist
