// r1dist generate: text from a base model, a base plus an adapter, or a merged model.
#include <ATen/ATen.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/model_flags.h"
#include "cli/result_json.h"
#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/json.h"
#include "r1dist/data/prompt_template.h"
#include "r1dist/eval/generate.h"
#include "r1dist/eval/suite.h"
#include "r1dist/formats/qwen2_config.h"
#include "r1dist/log/log.h"
#include "r1dist/log/meter.h"
#include "r1dist/tensor/device.h"
#include "r1dist/tokenizer/tokenizer.h"

namespace r1dist {

namespace {

std::vector<std::string> read_prompt_file(const std::string& path) {
  std::string text, why;
  if (!try_read_file(path, &text, &why)) throw UsageError("generate: cannot open --prompts file " + path + ": " + why);
  std::istringstream f(text);
  std::vector<std::string> out;
  std::string line;
  for (int n = 1; std::getline(f, line); ++n) {
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(n);
    const Json j = parse_json(line, where);
    out.push_back(JsonView(j, where).string());
  }
  if (out.empty()) throw UsageError("generate: " + path + " holds no prompts");
  return out;
}

// Prints the new text of one streamed row as it grows: decodes everything so far and
// writes what was not written yet, holding back an incomplete UTF-8 character.
struct Streamer {
  const Tokenizer& tok;
  std::vector<int64_t> ids;
  size_t written = 0;
  void add(int64_t id) {
    ids.push_back(id);
    const auto text = decode_generated(tok, ids);
    if (text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0) return;  // U+FFFD: wait
    if (text.size() > written) {
      std::cout << text.substr(written) << std::flush;
      written = text.size();
    }
  }
};

}  // namespace

int cmd_generate(int argc, char** argv) {
  Args a("r1dist generate",
         "Generate from a model, with the KV cache: greedy or sampled (defaults from the R1-distill generation "
         "config: temperature 0.6, top-p 0.95), stopping at an end-of-sequence id (the tokenizer's EOS and the "
         "eos_token_id of config.json and generation_config.json) or --max-new-tokens. One prompt streams to the "
         "terminal; several are generated as one batch.");
  declare_model_flags(a);
  a.option_list("prompt", "a prompt (repeatable)")
      .option_str("prompts", "a file of prompts, one JSON string per line")
      .option_str("format", "prompt format: chat (the R1 chat template) or template (the config's data template)",
                  "chat")
      .option_int("max-new-tokens", "token limit per prompt", 512)
      .flag("greedy", "argmax decoding (deterministic; the same as --temperature 0)")
      .option_real("temperature", "sampling temperature; 0 = greedy", 0.6)
      .option_real("top-p", "nucleus sampling mass (1 = off)", 0.95)
      .option_int("top-k", "keep the k most likely tokens (0 = off)", 0)
      .option_real("repetition-penalty", "> 1 discourages repeated tokens (1 = off)", 1.0)
      .option_uint("seed", "sampling seed", 0)
      .flag("json", "print one JSON object per prompt instead of the text");
  if (!a.parse(argc, argv)) return 0;
  auto prompts = a.list("prompt");
  if (a.has("prompts")) {
    const auto more = read_prompt_file(a.str("prompts"));
    prompts.insert(prompts.end(), more.begin(), more.end());
  }
  if (prompts.empty()) throw UsageError("generate: give --prompt TEXT or --prompts FILE");
  Config cfg = config_from_flags(a, QuantMode::none);
  // The GPU starts while the tokenizer, the data and the prompts are read.
  DeviceStart device_start(device_from_flags(a, cfg));
  const auto tok = Tokenizer::load(cfg.model.path);
  const auto tmpl = PromptTemplate::for_format(cfg.data.template_text, cfg.data.format);

  GenerateOptions opt;
  opt.max_new_tokens = a.i64("max-new-tokens");
  opt.sampling.greedy = a.has("greedy");
  opt.sampling.temperature = a.real("temperature");
  opt.sampling.top_p = a.real("top-p");
  opt.sampling.top_k = a.i64("top-k");
  opt.sampling.repetition_penalty = a.real("repetition-penalty");
  opt.sampling.seed = a.u64("seed");
  opt.stop_ids = generation_stop_ids(cfg.model.path, tok);
  if (!opt.stop_ids.empty()) opt.pad_id = opt.stop_ids.front();
  std::vector<std::vector<int64_t>> ids;
  Config as_set;  // --format is eval.prompt_format, read by that key's parser
  set_config_value(as_set, "eval.prompt_format", a.str("format"), "--format");
  // The prompts against the model before it loads: every id must have an embedding row, and
  // the longest prompt with --max-new-tokens should stay within max_position_embeddings.
  const auto mc = read_qwen2_config(cfg.model.path);
  size_t longest = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ids.push_back(encode_prompt(tok, tmpl, as_set.eval.prompt_format, prompts[i]));
    const auto& p = ids.back();
    check_token_id(p.empty() ? -1 : *std::max_element(p.begin(), p.end()), "prompt " + std::to_string(i + 1),
                   cfg.model.path, mc.vocab_size, tok);
    longest = std::max(longest, p.size());
  }
  warn_past_max_positions(mc, cfg.model.path, int64_t(longest) + opt.max_new_tokens,
                          "the longest prompt (" + std::to_string(longest) + " tokens) with --max-new-tokens " +
                              std::to_string(opt.max_new_tokens),
                          "lower --max-new-tokens");
  device_start.wait();
  auto lm = load_model_from_flags(a, cfg);
  const bool json = a.has("json");
  const bool stream = !json && prompts.size() == 1 && isatty(STDOUT_FILENO);
  Streamer streamer{tok, {}, 0};
  // Streamed text shows its own progress; otherwise the progress line counts the tokens.
  log::Meter meter("generate", opt.max_new_tokens * int64_t(ids.size()), "tokens (at most)");
  if (stream)
    opt.on_token = [&](int64_t, int64_t id) { streamer.add(id); };
  else
    opt.on_token = [&](int64_t, int64_t) { meter.advance(); };
  const auto gens = generate(lm.model, ids, opt);
  if (!stream) meter.done();
  for (size_t i = 0; i < gens.size(); ++i) {
    const auto r = describe_generation(tok, prompts[i], gens[i]);
    if (json) {
      const auto j = generation_json(r);
      std::cout << j.dump() << "\n";
    } else if (stream) {
      std::cout << "\n";
    } else {
      std::cout << (prompts.size() > 1 ? "### " + r.prompt + "\n" : "") << r.text << "\n";
    }
    log::info("generated ", r.tokens, " tokens", r.stopped_at_eos ? " (EOS)" : " (token limit)",
              r.repetition.collapsed ? "; COLLAPSED: repetitive output" : "");
  }
  return 0;
}

}  // namespace r1dist
