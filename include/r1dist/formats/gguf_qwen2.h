// A Qwen2 model as llama.cpp reads it from GGUF: the one HF -> GGUF tensor name table, the
// tensor types of an export type, and the metadata (architecture keys and the embedded
// tokenizer), following llama.cpp's converter (convert_hf_to_gguf.py, Qwen2Model) so that
// llama.cpp and Ollama load the file as they load a converted one. Torch-free; the values of
// the tensors come from the caller (r1dist export: the model with its adapter merged).
// docs/EXPORT.md describes the result.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "r1dist/formats/gguf.h"
#include "r1dist/formats/qwen2_config.h"

namespace r1dist {

// An export type (--type): its name, general.file_type (llama.cpp's LLAMA_FTYPE_*) and the
// type of the 2-D weights. 1-D tensors and norms stay F32 whatever the type.
struct GgufExportType {
  std::string name;  // "f32", "f16", "bf16", "q8_0"
  uint32_t file_type;
  gguf::TensorType weights;
};
// UsageError naming the known types for any other name.
const GgufExportType& gguf_export_type(const std::string& name);
std::vector<std::string> gguf_export_type_names();

// The GGUF name of an HF tensor of the weight table (blk.N.attn_q.weight, token_embd.weight, ...).
std::string gguf_tensor_name(const WeightSpec& w);

struct GgufTensor {
  WeightSpec hf;          // the HF tensor it holds
  gguf::TensorSpec spec;  // its GGUF name, shape and type
};
// Every tensor of the model in the weight table's order (with tied embeddings there is no
// lm_head, so no output.weight: llama.cpp then uses token_embd). Types: F32 for 1-D tensors
// (norms, biases), the export type for the rest; a Q8_0 tensor whose rows are not whole
// blocks of 32 falls back to F16, as the converter does.
std::vector<GgufTensor> qwen2_gguf_tensors(const Qwen2Config& c, const GgufExportType& t);

// general.* (name, file type), qwen2.* (shapes, RoPE base, RMSNorm epsilon) and tokenizer.*
// read from model_dir's tokenizer.json and tokenizer_config.json: the byte-level BPE
// vocabulary padded to vocab_size with unused "[PADn]" tokens, token types (normal; control for
// special added tokens and added tokens spelled like <|x|> or <｜x｜>; user-defined for other
// added tokens), merges, special token ids, add_bos/add_eos and the chat template. Throws
// UsageError naming the file when the tokenizer does not fit the config, or when neither
// config.json's max_position_embeddings nor the tokenizer's model_max_length gives the
// context length llama.cpp requires.
gguf::Metadata qwen2_gguf_metadata(const Qwen2Config& c, const std::string& model_dir, const std::string& name,
                                   const GgufExportType& t);

}  // namespace r1dist
