// safetensors files as plain bytes: a strict memory-mapped reader (File), Hugging Face model
// directories with one file or an index of shards (Checkpoint), and a streaming writer
// (write_file, write_model_dir). No torch here; src/model converts to at::Tensor.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end)}, "__metadata__": {str: str}},
// then the data region, which the tensors must cover exactly (no gaps, no overlap).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace r1dist::st {

enum class DType { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);                        // the header spelling: "BF16", "F8_E4M3", ...
std::optional<DType> parse_dtype(const std::string& name);  // exact, case-sensitive

// The header refuses anything longer (same limit as the reference implementation).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// The writer packs tensors into a buffer of this size before each write(); a tensor larger
// than this gets a buffer of its own size, so peak memory is max(this, largest tensor).
constexpr size_t kWriteBufferBytes = 16u << 20;

struct TensorInfo {
  std::string name;
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // relative to the data start
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// One .safetensors file, memory-mapped read-only and fully validated at open. Pointers from
// data() stay valid as long as the File (or the File it was moved into) lives.
class File {
 public:
  static File open(const std::string& path);
  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const& { return tensors_; }  // sorted by offset
  const TensorInfo* find(const std::string& name) const&;               // nullptr if absent
  const TensorInfo& at(const std::string& name) const&;                 // throws naming the file + tensor
  const uint8_t* data(const TensorInfo& t) const&;
  const std::map<std::string, std::string>& metadata() const& { return metadata_; }
  // Tells the kernel that reads will be scattered (no read-ahead around each page touched).
  void advise_random() const&;
  // These would dangle: `for (auto& t : File::open(p).tensors())` unmaps before the loop.
  void tensors() && = delete;
  void find(const std::string&) && = delete;
  void at(const std::string&) && = delete;
  void data(const TensorInfo&) && = delete;
  void metadata() && = delete;

 private:
  File() = default;
  void release() noexcept;

  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  uint64_t data_start_ = 0;  // 8 + N
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

// A model directory: model.safetensors, or model.safetensors.index.json
// ({"metadata":{"total_size":N},"weight_map":{name: file}}) naming the shards. Shard names
// are never guessed: the index is always read, and every shard it names is opened once.
// A directory holding both layouts is refused (one of them is stale).
class Checkpoint {
 public:
  static Checkpoint open_dir(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::vector<std::string> names() const;  // every tensor, sorted
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws naming the dir + tensor
  const uint8_t* data(const std::string& name) const;
  const std::string& file_of(const std::string& name) const;  // path of the shard holding it
  const std::vector<File>& files() const { return files_; }

 private:
  struct Loc {
    size_t file = 0;
    const TensorInfo* info = nullptr;  // points into files_[file].tensors(), stable across moves
  };
  const Loc& loc(const std::string& name) const;

  std::string dir_;
  std::vector<File> files_;
  std::map<std::string, Loc> tensors_;
};

// The identity of a model's weights, cheap enough for a 14B directory: a 64-bit FNV-1a over
// every shard's file name, every tensor's name, dtype, shape and offsets, the metadata, and
// three 4 KiB windows of each tensor's bytes (its start, middle and end). It reads about
// 12 KiB per tensor (7 MB of a 28 GB 14B directory), so it tells apart two directories of
// the same config.json with other weights (another seed, another fine-tune, a merge), but it
// is not a proof that every byte is equal. 16 hex digits.
std::string weights_fingerprint(const Checkpoint& c);

struct WriteSpec {
  std::string name;
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
};

// Called once per tensor, in spec order, to fill exactly nbytes at dst (zeroed beforehand).
using FillFn = std::function<void(size_t index, uint8_t* dst, size_t nbytes)>;

// Streams one file: the header (tensors in the order given, offsets packed with no gaps, JSON
// padded with spaces to a multiple of 8 as the reference writer does), then the data, filled
// through a bounded buffer. Writes path + ".tmp", fsyncs, then renames it over path, so a
// crash never leaves a half file under the final name. Empty metadata writes no
// "__metadata__" key.
void write_file(const std::string& path, const std::vector<WriteSpec>& specs, const FillFn& fill,
                const std::map<std::string, std::string>& metadata = {{"format", "pt"}});
// Convenience for small data: each spec's bytes given in memory.
void write_file(const std::string& path, const std::vector<WriteSpec>& specs,
                const std::vector<std::vector<uint8_t>>& bytes,
                const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Splits specs (in order) into shards of at most max_shard_bytes of tensor data each (a
// larger tensor gets a shard of its own). One shard -> "model.safetensors"; several ->
// "model-00001-of-00004.safetensors" ... plus "model.safetensors.index.json". fill() gets the
// global spec index. Creates dir if needed and removes the other layout's entry file
// (a stale index or model.safetensors) so that open_dir sees only what was written.
// Returns the paths written, the index last.
std::vector<std::string> write_model_dir(const std::string& dir, const std::vector<WriteSpec>& specs,
                                         const FillFn& fill, uint64_t max_shard_bytes,
                                         const std::map<std::string, std::string>& metadata = {
                                             {"format", "pt"}});

}  // namespace r1dist::st
