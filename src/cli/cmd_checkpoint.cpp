// r1dist checkpoint verify PATH...: every checksum of checkpoints (files, or all of a run
// directory's) and of exported adapters (directories with r1dist_manifest.json).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli/args.h"
#include "cli/commands.h"
#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/formats/eval_file.h"
#include "r1dist/formats/manifest.h"
#include "r1dist/config/config.h"

namespace r1dist {

namespace {

// One checkpoint file: prints a line, returns whether it is intact.
bool verify_checkpoint_file(const std::string& path, CheckpointState* out = nullptr) {
  try {
    auto s = read_checkpoint(path);
    int64_t values = 0;
    for (const auto& a : s.adapters) values += static_cast<int64_t>(a.data.size());
    std::printf("ok       %s: step %lld, %zu adapter tensors (%lld values), optimizer moments, %d RNG states\n",
                path.c_str(), static_cast<long long>(s.step), s.adapters.size(), static_cast<long long>(values),
                s.world_size);
    if (out) *out = std::move(s);
    return true;
  } catch (const NotACheckpoint& e) {
    std::printf("NOT A CHECKPOINT  %s\n         %s\n", path.c_str(), e.what());
    return false;
  } catch (const std::exception& e) {
    std::printf("DAMAGED  %s\n         %s\n", path.c_str(), e.what());
    return false;
  }
}

// in_run: the adapter/ of a run directory, which r1dist always exports with a manifest.
bool verify_adapter_dir(const std::string& dir, bool in_run) {
  bool has = false;
  const auto problems = check_manifest(dir, &has);
  if (!has && in_run) {
    std::printf("INCOMPLETE %s: no %s: the export was cut short\n         HINT: r1dist train --cfg CONFIG --resume auto "
                "exports it again from the final checkpoint\n",
                dir.c_str(), kManifestFile);
    return false;
  }
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

// A run directory: every checkpoint, and the adapter its final checkpoint must have exported.
bool verify_run_dir(const std::string& dir, int* checked) {
  std::vector<std::string> files;
  if (is_dir(dir + "/checkpoints"))
    for (const auto& e : std::filesystem::directory_iterator(dir + "/checkpoints"))
      if (e.path().extension() == ".h5") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  bool ok = true;
  CheckpointState newest;
  for (const auto& f : files) {
    CheckpointState s;
    const bool good = verify_checkpoint_file(f, &s);
    if (good && s.step >= newest.step) newest = std::move(s);
    ok = good && ok;
    ++*checked;
  }
  const std::string adapter = dir + "/adapter";
  // Whether the newest checkpoint is the run's end: its last step (with train.epochs the final
  // step depends on the data; only train.steps names it here) or an early stop recorded in it.
  bool ended = false;
  std::optional<Config> cfg;
  if (!newest.config_toml.empty()) {
    cfg = parse_config_string(newest.config_toml, dir + " (its newest checkpoint's config)");
    ended = (cfg->train.epochs == 0 && newest.step >= cfg->train.steps) || newest.extra.count("stop_reason") > 0;
  }
  const auto step = static_cast<long long>(newest.step);
  if (is_dir(adapter)) {
    const bool intact = verify_adapter_dir(adapter, true);
    ok = intact && ok;
    ++*checked;
    const int64_t at = adapter_exported_at(adapter);
    if (intact && ended && at != newest.step) {
      std::printf("STALE    %s: exported at step %s, but the run ended at step %lld\n"
                  "         HINT: r1dist train --cfg CONFIG --resume auto exports it from the final checkpoint\n",
                  adapter.c_str(), at < 0 ? "(not recorded)" : std::to_string(at).c_str(), step);
      ok = false;
    }
  } else if (ended) {
    std::printf("MISSING  %s: the run reached its final step %lld but its adapter was never exported\n"
                "         HINT: r1dist train --cfg CONFIG --resume auto exports it from the final checkpoint\n",
                adapter.c_str(), step);
    ok = false;
    ++*checked;
  }
  if (ended && cfg->eval.suite && is_file(dir + "/metrics.h5") && !read_eval_group(dir + "/metrics.h5")) {
    std::printf("MISSING  %s/metrics.h5 /eval: the run ended at step %lld without its final evaluation (eval.suite)\n"
                "         HINT: r1dist train --cfg CONFIG --resume auto evaluates it\n",
                dir.c_str(), step);
    ok = false;
  }
  if (files.empty() && !is_dir(adapter)) {
    std::printf("NONE     no checkpoints in %s (no checkpoints/step_N.h5, no adapter/)\n", dir.c_str());
    return false;
  }
  return ok;
}

}  // namespace

int cmd_checkpoint(int argc, char** argv) {
  Args a("r1dist checkpoint",
         "Check the CRC-32s of checkpoints and exported adapters. PATH: a checkpoint file (step_N.h5), a run "
         "directory (every checkpoint under checkpoints/ and the adapter/ it exported: a run whose final "
         "checkpoint has no complete adapter/ is reported), or an adapter directory (its r1dist_manifest.json). "
         "Prints one line per file; exit 0 when all are intact, 1 otherwise (damaged, missing, incomplete, no "
         "checkpoints, or not a checkpoint).");
  a.option_str("action", "verify")
      .option_list("paths", "files or directories")
      .positional({{"action", "verify"}, {"paths", "PATH..."}});
  if (!a.parse(argc, argv)) return 0;
  if (a.required("action") != "verify")
    throw UsageError("checkpoint: unknown action '" + a.str("action") + "' (usage: " + a.usage() + ")");
  const auto paths = a.required_list("paths");
  bool ok = true;
  int checked = 0;
  for (const auto& p : paths) {
    if (!is_dir(p)) {
      if (!is_file(p)) throw UsageError("checkpoint verify: " + p + " does not exist");
      ok = verify_checkpoint_file(p) && ok;
      ++checked;
      continue;
    }
    if (is_dir(p + "/checkpoints") || is_file(p + "/run.json")) {
      ok = verify_run_dir(p, &checked) && ok;
      continue;
    }
    if (std::filesystem::exists(p + "/adapter_config.json") || std::filesystem::exists(p + "/" + kManifestFile)) {
      ok = verify_adapter_dir(p, false) && ok;
      ++checked;
      continue;
    }
    throw UsageError("checkpoint verify: " + p + " is neither a checkpoint, a run directory nor an adapter directory");
  }
  if (checked == 0) ok = false;  // nothing to verify is not "all intact"
  std::printf("%s: %d checked\n", ok ? "all intact" : "PROBLEMS FOUND", checked);
  return ok ? 0 : 1;
}

}  // namespace r1dist
