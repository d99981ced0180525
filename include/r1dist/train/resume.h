// Which checkpoint a run continues from, and whether it may (docs/RELIABILITY.md): every
// difference of settings, model, data or global batch between a checkpoint and this run is
// named, and refuses the resume unless --resume-anyway accepts it.
#pragma once
#include <string>
#include <vector>

#include "r1dist/config/config.h"
#include "r1dist/config/config_diff.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/train/run_identity.h"

namespace r1dist {

// What makes a checkpoint another run's, as changes "key: was -> now": every config key
// that changes the math (config/config_diff.h), "model" (the hash of the model's
// config.json, or the fingerprint of its weights), "data" (the fingerprint of the tokenized
// rows) and "global batch" (rows per step; the batch plan depends on it, so it cannot be
// overridden).
std::vector<ConfigChange> resume_differences(const CheckpointState& s, const Config& cfg, const RunIdentity& id);

struct ResumeChoice {
  std::string path;                     // "" = start at step 0
  CheckpointState state;                // as read (checksums verified)
  std::vector<ConfigChange> overridden; // differences accepted by --resume-anyway
};

// The checkpoint a run continues from. resume: "auto" (the newest checkpoint in output.dir
// that is intact and of this run: damaged ones and other runs' are skipped with a warning
// naming why) or a path (which must be both). anyway: "" (differences refuse the resume,
// listing each), "all", or comma-separated keys that may differ (recorded by the caller).
// Refuses (UsageError) when checkpoints exist but none is intact, or none matches. Rank 0
// reads and checks the candidates; the other ranks learn its choice (or its refusal) and read
// only the chosen checkpoint.
ResumeChoice choose_checkpoint(const Config& cfg, const RunIdentity& id, const std::string& resume,
                               const std::string& anyway);

// The differences, one "\n  key: was -> now" line each.
std::string describe_changes(const std::vector<ConfigChange>& changes);

}  // namespace r1dist
