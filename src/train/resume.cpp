#include "r1dist/train/resume.h"

#include <algorithm>
#include <sstream>

#include "r1dist/base/error.h"
#include "r1dist/dist/process_group.h"
#include "r1dist/log/log.h"

namespace r1dist {

std::vector<ConfigChange> resume_differences(const CheckpointState& s, const Config& cfg, const RunIdentity& id) {
  auto out = math_config_changes(s.config_toml, cfg.to_toml());
  const auto wf = s.extra.find("weights_fingerprint");
  const std::string was_weights = wf == s.extra.end() ? "(none recorded)" : wf->second;
  if (s.model_hash != id.model_hash)
    out.push_back({"model", s.model_path + " (config.json hash " + s.model_hash + ")",
                   cfg.model.path + " (config.json hash " + id.model_hash + ")"});
  else if (was_weights != id.weights)
    out.push_back({"model", s.model_path + " (weights fingerprint " + was_weights + ")",
                   cfg.model.path + " (weights fingerprint " + id.weights + ")"});
  // The tokenized rows; a checkpoint that predates their fingerprint: the file and settings.
  const bool has_rows = s.extra.count("rows_fingerprint") > 0;
  const auto fp = s.extra.find(has_rows ? "rows_fingerprint" : "dataset_fingerprint");
  const std::string was_fp = fp == s.extra.end() ? "" : fp->second;
  const std::string& now_fp = has_rows ? id.rows_fingerprint : id.data_fingerprint;
  if (was_fp != now_fp)
    out.push_back({"data", std::string(has_rows ? "rows " : "") + "fingerprint " +
                               (was_fp.empty() ? std::string("(none recorded)") : was_fp),
                   std::string(has_rows ? "rows " : "") + "fingerprint " + now_fp + " (" + cfg.data.path + ")"});
  if (s.global_batch != id.global_batch)
    out.push_back({"global batch", std::to_string(s.global_batch) + " rows", std::to_string(id.global_batch) +
                   " rows (micro_batch x grad_accum x ranks)"});
  return out;
}

namespace {

std::vector<std::string> split_keys(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string k; std::getline(ss, k, ',');)
    if (!k.empty()) out.push_back(k);
  return out;
}

}  // namespace

std::string describe_changes(const std::vector<ConfigChange>& changes) {
  std::string out;
  for (const auto& c : changes)
    out += "\n  " + c.key + ": " + (c.was.empty() ? "(absent)" : c.was) + " -> " + (c.now.empty() ? "(absent)" : c.now);
  return out;
}

namespace {

// Splits `all` into the differences --resume-anyway accepts and those that still refuse.
std::vector<ConfigChange> refusing(const std::vector<ConfigChange>& all, const std::string& anyway,
                                   std::vector<ConfigChange>* accepted) {
  const auto keys = split_keys(anyway);
  const bool every = anyway == "all";
  std::vector<ConfigChange> out;
  for (const auto& c : all) {
    const bool ok = c.key != "global batch" &&
                    (every || std::find(keys.begin(), keys.end(), c.key) != keys.end());
    (ok ? *accepted : out).push_back(c);
  }
  return out;
}

const char* kAnywayHint =
    "\nHINT: continue with these settings anyway: --resume-anyway (every key) or --resume-anyway KEY,KEY "
    "(recorded in metrics.h5); or go back to the checkpoint's settings; or start the new settings in a new "
    "output.dir";

}  // namespace

namespace {

// choose_checkpoint's search, on one rank.
ResumeChoice choose_here(const Config& cfg, const RunIdentity& id, const std::string& resume,
                         const std::string& anyway) {
  ResumeChoice choice;
  if (resume.empty()) return choice;
  if (resume != "auto") {
    choice.path = resume;
    try {
      choice.state = read_checkpoint(resume);
    } catch (const std::exception& e) {  // the file the flag names: an input error
      throw UsageError("--resume " + resume + ": " + e.what() + "\nHINT: r1dist checkpoint verify " + resume +
                       " checks it; --resume auto takes the newest intact checkpoint of output.dir");
    }
    const auto left = refusing(resume_differences(choice.state, cfg, id), anyway, &choice.overridden);
    if (!left.empty())
      throw UsageError("cannot resume from " + resume + ": it was written with other settings:" + describe_changes(left) +
                       kAnywayHint);
    return choice;
  }
  const auto paths = checkpoints_newest_first(cfg.output.dir);
  std::vector<std::string> skipped;
  std::string first_foreign;
  std::vector<ConfigChange> first_left;
  for (const auto& path : paths) {
    CheckpointState s;
    try {
      s = read_checkpoint(path);
    } catch (const std::exception& e) {
      log::warn("resume auto: skipping ", path, ": ", e.what());
      skipped.push_back(path + " (damaged)");
      continue;
    }
    std::vector<ConfigChange> accepted;
    const auto left = refusing(resume_differences(s, cfg, id), anyway, &accepted);
    if (left.empty()) {
      if (!skipped.empty()) {
        std::string list;
        for (const auto& k : skipped) list += "\n  " + k;
        log::warn("resume auto: continuing from ", path, ", the newest intact checkpoint of this run; skipped:", list);
      }
      choice.path = path;
      choice.state = std::move(s);
      choice.overridden = std::move(accepted);
      return choice;
    }
    log::warn("resume auto: skipping ", path, ": written with other settings:", describe_changes(left));
    skipped.push_back(path + " (other settings)");
    if (first_foreign.empty()) {
      first_foreign = path;
      first_left = left;
    }
  }
  if (!first_foreign.empty())
    throw UsageError("cannot resume in " + cfg.output.dir + ": no checkpoint matches this run's settings; the "
                     "newest intact one, " + first_foreign + ", differs in:" + describe_changes(first_left) + kAnywayHint);
  if (!paths.empty())
    throw UsageError("cannot resume in " + cfg.output.dir + ": every checkpoint is damaged (" +
                     std::to_string(paths.size()) + " tried; warnings above)\nHINT: r1dist checkpoint verify " +
                     cfg.output.dir + " lists them; move them away to start again at step 0");
  log::info("resume auto: no checkpoint in ", cfg.output.dir, "; starting at step 0");
  return choice;
}

// Rank 0's text to every rank: its length, then its bytes.
std::string broadcast_text(std::string text) {
  int64_t n = int64_t(text.size());
  dist_broadcast(&n, sizeof n, 0, "MPI_Bcast of rank 0's resume decision");
  text.resize(size_t(n));
  if (n > 0) dist_broadcast(&text[0], n, 0, "MPI_Bcast of rank 0's resume decision");
  return text;
}

}  // namespace

ResumeChoice choose_checkpoint(const Config& cfg, const RunIdentity& id, const std::string& resume,
                               const std::string& anyway) {
  const auto& pg = dist_group();
  if (pg.world == 1 || resume.empty()) return choose_here(cfg, id, resume, anyway);
  // Rank 0 reads and checks every candidate; the others learn its verdict and read only the
  // chosen file (8 ranks do not read a run's checkpoints 8 times). A refusal reaches every
  // rank, so none waits for the others.
  ResumeChoice choice;
  // "ok:PATH", "usage:MESSAGE" or "error:MESSAGE": every rank raises the same kind of error,
  // so the exit code does not depend on which rank ends the job first.
  std::string verdict;
  if (pg.rank == 0) {
    try {
      choice = choose_here(cfg, id, resume, anyway);
      verdict = "ok:" + choice.path;
    } catch (const UsageError& e) {
      verdict = std::string("usage:") + e.what();
    } catch (const std::exception& e) {
      verdict = std::string("error:") + e.what();
    }
  }
  verdict = broadcast_text(verdict);
  if (verdict.rfind("usage:", 0) == 0) throw UsageError(verdict.substr(6));
  if (verdict.rfind("error:", 0) == 0) throw Error(verdict.substr(6));
  if (pg.rank == 0) return choice;
  choice.path = verdict.substr(3);
  if (choice.path.empty()) return choice;
  choice.state = read_checkpoint(choice.path);
  const auto left = refusing(resume_differences(choice.state, cfg, id), anyway, &choice.overridden);
  if (!left.empty())
    throw Error("rank " + std::to_string(pg.rank) + " reads " + choice.path + " as written with other settings:" +
                describe_changes(left) + " (rank 0 accepted it)");
  return choice;
}

}  // namespace r1dist
