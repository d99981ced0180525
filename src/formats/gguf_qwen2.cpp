// Qwen2 in GGUF: tensor names and types, metadata, the embedded tokenizer (formats/gguf_qwen2.h).
#include "r1dist/formats/gguf_qwen2.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/json.h"
#include "r1dist/tokenizer/tokenizer.h"

namespace r1dist {

namespace {

const std::vector<GgufExportType>& export_types() {
  // general.file_type: llama.cpp's LLAMA_FTYPE_ALL_F32, _MOSTLY_F16, _MOSTLY_BF16, _MOSTLY_Q8_0
  static const std::vector<GgufExportType> t = {
      {"bf16", 32, gguf::TensorType::BF16},
      {"f16", 1, gguf::TensorType::F16},
      {"q8_0", 7, gguf::TensorType::Q8_0},
      {"f32", 0, gguf::TensorType::F32},
  };
  return t;
}

// The HF -> GGUF name table: a layer's modules, and the tensors outside the layers.
const std::map<std::string, std::string>& layer_names() {
  static const std::map<std::string, std::string> m = {
      {"input_layernorm", "attn_norm"}, {"q_proj", "attn_q"},    {"k_proj", "attn_k"},
      {"v_proj", "attn_v"},             {"o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
      {"gate_proj", "ffn_gate"},        {"up_proj", "ffn_up"},     {"down_proj", "ffn_down"},
  };
  return m;
}
const std::map<WeightRole, std::string>& outer_names() {
  static const std::map<WeightRole, std::string> m = {
      {WeightRole::embedding, "token_embd"}, {WeightRole::norm, "output_norm"}, {WeightRole::lm_head, "output"}};
  return m;
}

// The token type numbers of llama.cpp's vocabulary (gguf-py TokenType).
enum TokenType : int32_t { kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5 };

// Added tokens that tokenizer.json does not mark special but that are control tokens all the
// same, by their spelling (the converter's rule).
bool looks_special(const std::string& t) {
  auto wrapped = [&](const std::string& open, const std::string& close) {
    return t.size() >= open.size() + close.size() && t.compare(0, open.size(), open) == 0 &&
           t.compare(t.size() - close.size(), close.size(), close) == 0;
  };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" || wrapped("<|", "|>") ||
         wrapped("<\xef\xbd\x9c", "\xef\xbd\x9c>") /* <｜ ｜> */ || wrapped("<unused", ">");
}

// A merge part as GGUF spells it: "a b" splits at the space, so a space inside a part is
// written as U+0120, as the converter writes it.
std::string merge_part(const std::string& s) {
  std::string out;
  for (char ch : s) out += ch == ' ' ? std::string("\xc4\xa0") : std::string(1, ch);
  return out;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
}

void add_tokenizer(gguf::Metadata& m, const Qwen2Config& c, const std::string& dir) {
  const Tokenizer tok = Tokenizer::load(dir);
  const std::string file = tok.path();
  if (tok.vocab_size() > c.vocab_size)
    throw UsageError("export: " + file + " has ids up to " + std::to_string(tok.vocab_size() - 1) +
                     ", beyond the model's vocab_size " + std::to_string(c.vocab_size) +
                     "\nHINT: the model directory's tokenizer must belong to its config.json");
  std::vector<std::string> tokens(size_t(c.vocab_size));
  std::vector<int32_t> types(size_t(c.vocab_size));
  for (int32_t id = 0; id < int32_t(c.vocab_size); ++id) {
    const auto kind = tok.token_kind(id);
    std::string t(tok.id_to_token(id));
    int32_t type = kNormal;
    switch (kind) {
      case Tokenizer::TokenKind::none:
        t = "[PAD" + std::to_string(id) + "]";
        type = kUnused;
        break;
      case Tokenizer::TokenKind::normal: break;
      case Tokenizer::TokenKind::added_special: type = kControl; break;
      case Tokenizer::TokenKind::added:
        if (looks_special(t)) {
          type = kControl;
        } else {
          replace_all(t, "\xe2\x96\x81", " ");  // U+2581 in a user-defined token stands for a space
          type = kUserDefined;
        }
        break;
    }
    tokens[size_t(id)] = std::move(t);
    types[size_t(id)] = type;
  }
  std::vector<std::string> merges;
  for (const auto& [a, b] : tok.merges()) merges.push_back(merge_part(a) + " " + merge_part(b));

  m.set_str("tokenizer.ggml.model", "gpt2");
  // The pre-tokenizer llama.cpp applies: the one of DeepSeek-R1-Distill-Qwen (the Qwen2 split
  // regex; the converter recognises it by the ids of a probe text).
  m.set_str("tokenizer.ggml.pre", "deepseek-r1-qwen");
  m.set_str_array("tokenizer.ggml.tokens", tokens);
  m.set_i32_array("tokenizer.ggml.token_type", types);
  m.set_str_array("tokenizer.ggml.merges", merges);

  // Special tokens: tokenizer_config.json first, then config.json's ids.
  const std::string cfg_path = dir + "/tokenizer_config.json";
  Json cdoc = Json::object();
  if (is_file(cfg_path)) cdoc = read_json_file(cfg_path);
  const JsonView cfg(cdoc, cfg_path);
  auto token_of = [&](const char* key) -> std::optional<int32_t> {
    const auto v = cfg[key];
    if (!v.present()) return std::nullopt;
    const std::string content = v.is_object() ? v["content"].string() : v.string();
    const int32_t id = tok.token_to_id(content);
    if (id < 0) v.fail("'" + content + "' is not a token of " + file);
    return id;
  };
  // Written only when known: llama.cpp reads both as optional.
  auto bos = tok.bos_id(), eos = tok.eos_id();
  if (!bos && c.bos_token_id) bos = int32_t(*c.bos_token_id);
  if (!eos && c.eos_token_ids.size() == 1) eos = int32_t(c.eos_token_ids[0]);
  if (bos) m.set_u32("tokenizer.ggml.bos_token_id", uint32_t(*bos));
  if (eos) m.set_u32("tokenizer.ggml.eos_token_id", uint32_t(*eos));
  if (auto unk = token_of("unk_token")) m.set_u32("tokenizer.ggml.unknown_token_id", uint32_t(*unk));
  if (auto pad = token_of("pad_token")) m.set_u32("tokenizer.ggml.padding_token_id", uint32_t(*pad));
  // add_bos/add_eos: tokenizer_config.json's flags, else what the post-processor adds.
  const auto around = tok.encode("", /*add_special=*/true);
  const bool bos_added = !around.empty() && bos && around.front() == *bos;
  const bool eos_added = !around.empty() && eos && around.back() == *eos && !(around.size() == 1 && bos_added);
  m.set_bool("tokenizer.ggml.add_bos_token", cfg["add_bos_token"].boolean_or(bos_added));
  m.set_bool("tokenizer.ggml.add_eos_token", cfg["add_eos_token"].boolean_or(eos_added));
  if (const auto tpl = cfg["chat_template"]; tpl.present()) {
    if (!tpl.is_string())
      tpl.fail("is " + json_found(tpl.json()) +
               ", not a string (a list of named templates is not exported)\nHINT: keep the default template as the "
               "string value of chat_template");
    m.set_str("tokenizer.chat_template", tpl.string());
  }
}

// qwen2.context_length, which llama.cpp requires: config.json's max_position_embeddings, else
// tokenizer_config.json's model_max_length (transformers writes 1e30 there for "no limit": not
// a length).
uint32_t context_length(const Qwen2Config& c, const std::string& dir) {
  if (c.max_position_embeddings) return uint32_t(std::min<int64_t>(*c.max_position_embeddings, UINT32_MAX));
  const std::string path = dir + "/tokenizer_config.json";
  if (is_file(path)) {
    const Json doc = read_json_file(path);
    const auto n = JsonView(doc, path)["model_max_length"];
    if (n.is_integer() && n.integer() > 0 && n.integer() <= UINT32_MAX) return uint32_t(n.integer());
  }
  throw UsageError("export: " + dir + "/config.json has no max_position_embeddings and " + path +
                   " no model_max_length: llama.cpp needs the context length the model was trained for "
                   "(qwen2.context_length)\nHINT: add \"max_position_embeddings\": N to " +
                   dir + "/config.json");
}

}  // namespace

const GgufExportType& gguf_export_type(const std::string& name) {
  for (const auto& t : export_types())
    if (t.name == name) return t;
  std::string known;
  for (const auto& n : gguf_export_type_names()) known += (known.empty() ? "" : ", ") + n;
  throw UsageError("export: unknown --type '" + name + "' (known: " + known + ")");
}

std::vector<std::string> gguf_export_type_names() {
  std::vector<std::string> out;
  for (const auto& t : export_types()) out.push_back(t.name);
  return out;
}

std::string gguf_tensor_name(const WeightSpec& w) {
  const std::string suffix = w.role == WeightRole::bias ? ".bias" : ".weight";
  if (w.layer < 0) {
    auto it = outer_names().find(w.role);
    check(it != outer_names().end(), "export: no GGUF name for " + w.name);
    return it->second + suffix;
  }
  auto it = layer_names().find(w.module);
  check(it != layer_names().end(), "export: no GGUF name for " + w.name);
  return "blk." + std::to_string(w.layer) + "." + it->second + suffix;
}

std::vector<GgufTensor> qwen2_gguf_tensors(const Qwen2Config& c, const GgufExportType& t) {
  std::vector<GgufTensor> out;
  for (const auto& w : qwen2_weight_table(c)) {
    GgufTensor g{w, {gguf_tensor_name(w), w.shape, t.weights}};
    if (w.shape.size() < 2 || w.role == WeightRole::norm || w.role == WeightRole::bias)
      g.spec.type = gguf::TensorType::F32;
    else if (!gguf::can_store(g.spec.type, w.shape.back()))
      g.spec.type = gguf::TensorType::F16;
    out.push_back(std::move(g));
  }
  return out;
}

gguf::Metadata qwen2_gguf_metadata(const Qwen2Config& c, const std::string& model_dir, const std::string& name,
                                   const GgufExportType& t) {
  gguf::Metadata m;
  m.set_str("general.architecture", "qwen2");
  m.set_str("general.type", "model");
  m.set_str("general.name", name);
  m.set_u32("general.file_type", t.file_type);
  m.set_u32("general.quantization_version", 2);  // ggml's GGML_QNT_VERSION
  m.set_u32("qwen2.block_count", uint32_t(c.num_hidden_layers));
  m.set_u32("qwen2.context_length", context_length(c, model_dir));
  m.set_u32("qwen2.embedding_length", uint32_t(c.hidden_size));
  m.set_u32("qwen2.feed_forward_length", uint32_t(c.intermediate_size));
  m.set_u32("qwen2.attention.head_count", uint32_t(c.num_attention_heads));
  m.set_u32("qwen2.attention.head_count_kv", uint32_t(c.num_key_value_heads));
  m.set_f32("qwen2.rope.freq_base", float(c.rope_theta));
  m.set_f32("qwen2.attention.layer_norm_rms_epsilon", float(c.rms_norm_eps));
  if (c.head_dim != c.hidden_size / c.num_attention_heads) {  // config.json names a head_dim of its own
    m.set_u32("qwen2.attention.key_length", uint32_t(c.head_dim));
    m.set_u32("qwen2.attention.value_length", uint32_t(c.head_dim));
  }
  add_tokenizer(m, c, model_dir);
  return m;
}

}  // namespace r1dist
