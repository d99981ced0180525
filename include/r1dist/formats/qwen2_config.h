// Qwen2Config: the shape of a Qwen2ForCausalLM, read from a Hugging Face config.json or
// taken from a preset (the three R1-distill sizes and a tiny test model), and the
// weight table that maps every HF tensor name to its shape and role.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace r1dist {

class Tokenizer;

struct Qwen2Config {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless config.json says otherwise
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  std::string torch_dtype = "bfloat16";
  // Unset (nullopt, empty) where config.json does not say: a writer leaves them out then, so
  // that no R1 value reaches another model's files. The presets set the R1 values.
  std::optional<int64_t> max_position_embeddings;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // config.json eos_token_id: one id or a list

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  // Throws UsageError naming `origin` when the numbers cannot describe a Qwen2 model.
  void validate(const std::string& origin) const;
};

// Reads DIR/config.json. Every missing field is reported at once; features r1dist does not
// implement (other architectures, sliding window, rope scaling, other activations) are
// refused by name.
Qwen2Config read_qwen2_config(const std::string& model_dir);
// The config.json text for `c` (transformers 5 layout, readable by 4.x too); the unset
// fields above are left out.
std::string qwen2_config_json(const Qwen2Config& c);
// DIR/config.json for the same model with its weights written again in `torch_dtype`
// ("bfloat16", "float32"; r1dist merge): the file as it is but for its dtype keys (torch_dtype,
// and dtype where the file has it) and without a quantization_config (the weights are written
// unquantised). A key the file lacks stays absent, so transformers' defaults apply to the
// result as they did to the source.
std::string rewritten_config_json(const std::string& model_dir, const std::string& torch_dtype);

// Refuses (UsageError) tokenized input that holds an id the model has no embedding row for
// (id >= config.json's vocab_size): a tokenizer that does not belong to the model, or a token
// it adds beyond vocab_size. `top` is the input's largest id, `input` says where it came from
// ("training row 3 of data.jsonl", "prompt 2"), `tok` produced it. Train, eval and generate
// check with it before any forward pass (where an embedding lookup would fail, on CUDA as a
// device-side assert).
void check_token_id(int64_t top, const std::string& input, const std::string& model_dir, int64_t vocab_size,
                    const Tokenizer& tok);

// The ids that end a generation from the model in `model_dir`, gathered as transformers
// gathers them: the tokenizer's EOS, config.json's eos_token_id and, when the file exists,
// generation_config.json's (each one id or a list), in that order without repeats. An id
// the model cannot emit (>= vocab_size) is left out. Empty, with a warning, when none names
// one: generation then runs to its token limit.
std::vector<int64_t> generation_stop_ids(const std::string& model_dir, const Tokenizer& tok);

// Warns (log::warn) when `positions` (what `what` names, e.g. "the longest row (4096 tokens;
// data.max_seq_len = 4096)") go past config.json's max_position_embeddings: RoPE beyond the
// length the model was trained for gives unreliable output. Silent when config.json does not
// say. `hint` ends the warning as its HINT line.
void warn_past_max_positions(const Qwen2Config& c, const std::string& model_dir, int64_t positions,
                             const std::string& what, const std::string& hint);

// "tiny", "r1-distill-qwen-1.5b", "r1-distill-qwen-7b", "r1-distill-qwen-14b".
Qwen2Config qwen2_preset(const std::string& name);
std::vector<std::string> qwen2_preset_names();

// The seven projections LoRA can target, in HF order within a layer.
const std::vector<std::string>& projection_names();

enum class WeightRole { embedding, norm, projection, bias, lm_head };

struct WeightSpec {
  std::string name;            // HF tensor name, e.g. model.layers.3.mlp.up_proj.weight
  std::vector<int64_t> shape;  // (out, in) for projections
  WeightRole role;
  int layer = -1;              // -1 for embeddings, final norm, lm_head
  std::string module;          // "q_proj" ... for projections and biases; "input_layernorm" or
                               // "post_attention_layernorm" for a layer's norms; else ""
};

// Every tensor of the checkpoint, in HF order. The one table that loading, init-model and
// parameter counting share.
std::vector<WeightSpec> qwen2_weight_table(const Qwen2Config& c);

// Parameters of the model: every tensor of the weight table.
int64_t base_param_count(const Qwen2Config& c);
// Trainable parameters of LoRA rank r on the given projections: sum of r * (in + out).
int64_t lora_param_count(const Qwen2Config& c, int64_t r, const std::vector<std::string>& targets);

}  // namespace r1dist
