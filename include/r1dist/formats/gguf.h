// GGUF (version 3), the single-file format of llama.cpp and Ollama: a streaming writer and
// the tensor encodings it writes (F32, F16, BF16, Q8_0). No torch here; the Qwen2 layout
// (tensor names, metadata keys, the vocabulary) is formats/gguf_qwen2.h, and docs/EXPORT.md
// describes the command that uses both.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count, the
// metadata (key string, u32 value type, value), the tensor infos (name, u32 n_dims, u64
// dims innermost first, u32 type, u64 offset into the data), zero padding to the alignment,
// then each tensor's data at its offset, padded to the alignment. A string is a u64 byte
// length and the bytes; an array is a u32 element type, a u64 count and the elements.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace r1dist::gguf {

constexpr uint32_t kVersion = 3;
constexpr uint64_t kAlignment = 32;  // written as general.alignment (also GGUF's default)
constexpr int64_t kQ8Block = 32;     // Q8_0: blocks of 32 values, an fp16 scale + 32 int8

// ggml's type numbers.
enum class TensorType : uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 };
const char* type_name(TensorType t);  // "F32", "F16", "Q8_0", "BF16"

// Bytes of a tensor of `numel` values (Q8_0: numel % 32 == 0; rows are whole blocks, can_store).
uint64_t tensor_bytes(TensorType t, int64_t numel);
// Whether rows of `row` values can be stored in `t` (Q8_0 needs whole blocks per row).
bool can_store(TensorType t, int64_t row);

// Round to nearest even, as ggml does (NaN stays NaN, quiet).
uint16_t f32_to_f16(float x);
uint16_t f32_to_bf16(float x);
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t h);

// Encodes n values (Q8_0: n % 32 == 0) into tensor_bytes(t, n) bytes at dst. Q8_0 per block:
// d = max|x| / 127, q = round-half-away(x / d) (0 when d is 0), d stored as fp16: ggml's
// reference quantizer.
void encode(TensorType t, const float* src, size_t n, uint8_t* dst);

// Metadata in insertion order, each key once (setting a key again replaces its value).
class Metadata {
 public:
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_str(const std::string& key, const std::string& v);
  void set_str_array(const std::string& key, const std::vector<std::string>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  bool has(const std::string& key) const;
  size_t size() const { return entries_.size(); }
  // The serialized key-value pairs (without the file header).
  std::string serialize() const;

 private:
  struct Entry {
    std::string key;
    std::string value;  // value type + value, serialized
  };
  void set(const std::string& key, std::string value);
  std::vector<Entry> entries_;
};

struct TensorSpec {
  std::string name;            // e.g. blk.0.attn_q.weight
  std::vector<int64_t> shape;  // row-major, outermost first (as in safetensors); GGUF stores it reversed
  TensorType type = TensorType::F32;
  int64_t numel() const;
};

// Fills `values` (already sized numel) with tensor `index`'s values in row-major order.
using FillFn = std::function<void(size_t index, std::vector<float>& values)>;

// Writes the file at `path` atomically (base/fs.h AtomicFile): header, metadata, tensor infos,
// then the tensors in spec order, one in memory at a time. Logs a progress line per tensor.
// Returns the file's size. Throws Error naming the path (and the tensor) on failure.
uint64_t write_file(const std::string& path, const Metadata& meta, const std::vector<TensorSpec>& specs,
                    const FillFn& fill);

}  // namespace r1dist::gguf
