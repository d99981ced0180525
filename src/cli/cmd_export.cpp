// r1dist export: a model (with its adapter folded in, as merge does) as one GGUF file for
// llama.cpp and Ollama. docs/EXPORT.md has the types, sizes and how to run the result.
#include <ATen/ATen.h>

#include <cstring>
#include <map>

#include "cli/commands.h"
#include "cli/model_flags.h"
#include "r1dist/base/error.h"
#include "r1dist/formats/gguf.h"
#include "r1dist/formats/gguf_qwen2.h"
#include "r1dist/log/log.h"
#include "r1dist/model/saved_adapter.h"

namespace r1dist {

namespace {

std::string basename_of(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

int cmd_export(int argc, char** argv) {
  std::string types;
  for (const auto& t : gguf_export_type_names()) types += (types.empty() ? "" : ", ") + t;
  Args a("r1dist export",
         "Write a model, with its adapter folded in first (W + scaling * B A in fp32, as merge does), as one GGUF "
         "file that llama.cpp and Ollama load: Qwen2 tensors under llama.cpp's names, the model's config and its "
         "tokenizer (tokenizer.json, tokenizer_config.json, chat template) as metadata. GGUF is the only format "
         "for now. docs/EXPORT.md has the types and how to run the file.");
  declare_model_flags(a);
  a.option_str("format", "output format: gguf (the only one for now)", "gguf")
      .option_str("type", "type of the 2-D weights: " + types + " (norms and biases stay f32)", "bf16")
      .option_str("name", "general.name in the file (default: the model directory's name)")
      .option_str("out", "the GGUF file to write");
  if (!a.parse(argc, argv)) return 0;
  if (a.str("format") != "gguf")
    throw UsageError("export: unknown --format '" + a.str("format") + "' (gguf is the only format for now)");
  const auto& type = gguf_export_type(a.str("type"));
  const auto out = a.required("out");
  Config cfg = config_from_flags(a, QuantMode::none);
  if (cfg.quant.mode != QuantMode::none)
    log::warn("export: the base is loaded unquantised (quant none): the GGUF types are computed from the full "
              "weights, not from NF4-rounded ones");
  cfg.quant.mode = QuantMode::none;
  cfg.model.dtype = ComputeDtype::fp32;
  const std::string name = a.has("name") ? a.str("name") : basename_of(cfg.model.path);

  auto lm = load_model_from_flags(a, cfg);
  const Qwen2Config& c = lm.model.config();
  // The metadata first: a tokenizer that does not fit fails before minutes of conversion.
  const auto meta = qwen2_gguf_metadata(c, cfg.model.path, name, type);
  const auto tensors = qwen2_gguf_tensors(c, type);
  MergedWeights weights(lm.model);
  check(weights.size() == tensors.size(), "export: the model has " + std::to_string(weights.size()) +
                                              " weights, the GGUF layout " + std::to_string(tensors.size()));
  std::vector<gguf::TensorSpec> specs;
  std::map<std::string, int> count;
  for (size_t i = 0; i < tensors.size(); ++i) {
    check(weights.name(i) == tensors[i].hf.name && weights.shape(i) == tensors[i].hf.shape,
          "export: weight " + weights.name(i) + " does not match the layout's " + tensors[i].hf.name);
    specs.push_back(tensors[i].spec);
    ++count[gguf::type_name(tensors[i].spec.type)];
    if (type.weights == gguf::TensorType::Q8_0 && tensors[i].spec.type == gguf::TensorType::F16)
      log::warn("export: ", tensors[i].spec.name, " has rows of ", tensors[i].hf.shape.back(),
                " values, not whole Q8_0 blocks of 32: written as F16 (as llama.cpp's converter does)");
  }
  log::info("export: ", specs.size(), " tensors, type ", type.name, ", to ", out);
  const uint64_t bytes = gguf::write_file(out, meta, specs, [&](size_t i, std::vector<float>& values) {
    const at::Tensor w = weights.fp32(i);
    check(size_t(w.numel()) == values.size(), "export: size mismatch for " + weights.name(i));
    std::memcpy(values.data(), w.data_ptr<float>(), values.size() * sizeof(float));
  });
  std::string mix;
  for (const auto& [t, n] : count) mix += (mix.empty() ? "" : ", ") + std::to_string(n) + " " + t;
  log::info("export: wrote ", out, " (", bytes, " bytes, ", mix, "; ", weights.merged(),
            " adapters folded in; general.name ", name, ")");
  return 0;
}

}  // namespace r1dist
