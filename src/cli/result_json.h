// The JSON forms of evaluation results that `generate --json` and `eval --json` print.
#pragma once
#include <nlohmann/json.hpp>

#include "r1dist/quality/eval_summary.h"

namespace r1dist {

nlohmann::json generation_json(const GenerationResult& g);
nlohmann::json eval_summary_json(const EvalSummary& s);

}  // namespace r1dist
