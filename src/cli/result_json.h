// The JSON forms of the results that `generate --json`, `eval --json` and `train --json` print.
#pragma once
#include <nlohmann/json.hpp>

#include <vector>

#include "r1dist/log/time_split.h"
#include "r1dist/quality/eval_summary.h"
#include "r1dist/train/trainer.h"

namespace r1dist {

nlohmann::json generation_json(const GenerationResult& g);
// A command's time split (log/time_split.h): one object {"seconds", "share"} per part, under
// the part's name.
nlohmann::json time_split_json(const std::vector<TimePart>& split);
nlohmann::json eval_summary_json(const EvalSummary& s);
// `train --json`: steps, how the run ended (exit_code, stopped_by: "" when it ran to its
// end, else signal, drift, patience or stop_after), its files, and time_split (time_split_json).
nlohmann::json train_result_json(const TrainResult& r, const std::vector<TimePart>& split, int exit_code);

}  // namespace r1dist
