#include "cli/result_json.h"

namespace r1dist {

nlohmann::json generation_json(const GenerationResult& g) {
  return {{"prompt", g.prompt},
          {"text", g.text},
          {"tokens", g.tokens},
          {"stopped_at_eos", g.stopped_at_eos},
          {"think_closed", g.think_closed},
          {"answer_tokens", g.answer_tokens},
          {"repeated_4gram_share", g.repetition.repeated_4gram_share},
          {"longest_repeat", g.repetition.longest_repeat},
          {"distinct_2", g.repetition.distinct_2},
          {"collapsed", g.repetition.collapsed}};
}

nlohmann::json eval_summary_json(const EvalSummary& s) {
  nlohmann::json gens = nlohmann::json::array();
  for (const auto& g : s.generations) gens.push_back(generation_json(g));
  nlohmann::json j = {{"model", s.model},
                      {"adapter", s.adapter},
                      {"data", s.data},
                      {"settings", s.settings},
                      {"rows", s.rows},
                      {"loss", s.loss},
                      {"perplexity", s.perplexity},
                      {"loss_tokens", s.loss_tokens},
                      {"collapsed", s.collapsed()},
                      {"generations", gens}};
  if (s.has_drift) j["drift"] = {{"kl", s.kl}, {"top1_agreement", s.top1_agreement}, {"drift_tokens", s.drift_tokens}};
  if (s.has_mcq)
    j["mcq"] = {{"correct", s.mcq.correct},
                {"total", s.mcq.total},
                {"accuracy", s.mcq.value},
                {"ci95_low", s.mcq.low},
                {"ci95_high", s.mcq.high}};
  return j;
}

nlohmann::json time_split_json(const std::vector<TimePart>& split) {
  nlohmann::json parts = nlohmann::json::object();
  for (const auto& p : split) parts[p.name] = {{"seconds", p.seconds}, {"share", p.share}};
  return parts;
}

nlohmann::json train_result_json(const TrainResult& r, const std::vector<TimePart>& split, int exit_code) {
  const char* stopped_by = r.stopped_by_signal != 0 ? "signal"
                           : r.stopped_on_drift     ? "drift"
                           : r.stopped_on_patience  ? "patience"
                           : r.stopped_early        ? "stop_after"
                                                    : "";
  return {{"steps_done", r.steps_done},
          {"steps_total", r.steps_total},
          {"final_loss", r.final_loss},
          {"exit_code", exit_code},
          {"stopped_by", stopped_by},
          {"stop_reason", r.stop_reason},
          {"adapter_dir", r.adapter_dir},
          {"last_checkpoint", r.last_checkpoint},
          {"best_checkpoint", r.best_checkpoint},
          {"metrics_file", r.metrics_file},
          {"time_split", time_split_json(split)}};
}

}  // namespace r1dist
