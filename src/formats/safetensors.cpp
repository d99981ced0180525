// safetensors reader, writer and model directories (see include/r1dist/safetensors.h).
// Validation follows the reference implementation (huggingface/safetensors, tensor.rs):
// offsets sorted must tile the data region exactly, and the header is at most 100 MB.
#include "r1dist/formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>
#include <unordered_set>
#include <utility>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/hash.h"
#include "r1dist/base/json.h"

namespace r1dist::st {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// A file that is not what it should be (missing, truncated, malformed, at odds with its index):
// UsageError, an input the user must fix.
[[noreturn]] void bad_file(const std::string& where, const std::string& what) { throw UsageError(where + ": " + what); }
// A failure of the system (stat, mmap, writing) or of the caller (inconsistent write specs): Error.
[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Error(where + ": " + what);
}

std::string tensor_ctx(const std::string& name) { return "tensor '" + name + "': "; }

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

std::string range_str(uint64_t b, uint64_t e) {
  return "[" + std::to_string(b) + ", " + std::to_string(e) + ")";
}

// Bytes a tensor of this dtype and shape needs; throws (naming where + tensor) on negative
// dims or overflow. Any zero dim makes it 0, whatever the other dims are.
uint64_t checked_nbytes(const std::string& where, const std::string& name, DType dtype,
                        const std::vector<int64_t>& shape) {
  bool has_zero = false;
  for (int64_t d : shape) {
    if (d < 0) bad_file(where, tensor_ctx(name) + "negative dimension in shape " + shape_str(shape));
    has_zero |= d == 0;
  }
  if (has_zero) return 0;
  uint64_t numel = 1;
  const auto max_numel = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  for (int64_t d : shape) {
    if (numel > max_numel / static_cast<uint64_t>(d))
      bad_file(where, tensor_ctx(name) + "shape " + shape_str(shape) + " overflows the element count");
    numel *= static_cast<uint64_t>(d);
  }
  const uint64_t size = dtype_size(dtype);
  if (numel > std::numeric_limits<uint64_t>::max() / size)
    bad_file(where, tensor_ctx(name) + dtype_name(dtype) + " " + shape_str(shape) + " overflows the byte count");
  return numel * size;
}

// Parses JSON like json::parse, but also refuses duplicate object keys (nlohmann would keep
// one silently, hiding a second tensor or shard entry) and absurd nesting.
json parse_json_strict(const char* begin, const char* end) {
  constexpr int kMaxDepth = 64;
  std::vector<std::unordered_set<std::string>> open_objects;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxDepth)
          throw Error("JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
        if (ev == json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        open_objects.pop_back();
        break;
      case json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!open_objects.back().insert(key).second) throw Error("duplicate key '" + key + "'");
        break;
      }
      default:
        break;
    }
    return true;
  };
  return json::parse(begin, end, cb);
}

// Runs parse_json_strict and turns its failures into one message prefixed by where.
json parse_json_or_fail(const std::string& where, const char* what, const char* begin, const char* end) {
  try {
    return parse_json_strict(begin, end);
  } catch (const json::exception& e) {
    bad_file(where, std::string(what) + " is not valid UTF-8 JSON: " + e.what());
  } catch (const Error& e) {
    bad_file(where, std::string(what) + " is not valid: " + e.what());
  }
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

TensorInfo parse_entry(const std::string& path, const std::string& name, const json& e) {
  const JsonView v(e, path + ": tensor '" + name + "'");
  if (!v.is_object()) v.fail("entry is " + json_found(e) + ", not an object");
  TensorInfo t;
  t.name = name;
  const std::string dts = v["dtype"].string();
  auto parsed = parse_dtype(dts);
  if (!parsed)
    v.fail("has an unknown dtype \"" + dts +
           "\" (known: BOOL U8 I8 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64 F8_E4M3 F8_E5M2)");
  t.dtype = *parsed;
  for (const auto& d : v["shape"].elements()) t.shape.push_back(d.integer());  // negative: checked_nbytes
  const auto off = v["data_offsets"];
  const auto pair = off.is_array() || !off.present() ? off.elements() : std::vector<JsonView>{};
  if (pair.size() != 2 || !pair[0].json().is_number_unsigned() || !pair[1].json().is_number_unsigned())
    off.fail("must be two non-negative integers [begin, end), got " + off.json().dump());
  t.begin = pair[0].json().get<uint64_t>();
  t.end = pair[1].json().get<uint64_t>();
  return t;
}

// Byte counts per spec; refuses duplicates, the reserved "__metadata__" name, bad shapes.
std::vector<uint64_t> validate_specs(const std::string& where, const std::vector<WriteSpec>& specs) {
  std::vector<uint64_t> sizes;
  sizes.reserve(specs.size());
  std::unordered_set<std::string> seen;
  for (const auto& s : specs) {
    if (s.name == "__metadata__")
      fail(where, "tensor name '__metadata__' is reserved for the header's metadata");
    if (!seen.insert(s.name).second) fail(where, tensor_ctx(s.name) + "duplicate tensor name");
    sizes.push_back(checked_nbytes(where, s.name, s.dtype, s.shape));
  }
  return sizes;
}

const char* kSingleFile = "model.safetensors";
const char* kIndexFile = "model.safetensors.index.json";

std::string join(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

void remove_if_present(const std::string& path) {
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) fail(path, "cannot remove stale file: " + ec.message());
}

}  // namespace

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::BOOL:
    case DType::U8:
    case DType::I8:
    case DType::F8_E4M3:
    case DType::F8_E5M2:
      return 1;
    case DType::I16:
    case DType::U16:
    case DType::F16:
    case DType::BF16:
      return 2;
    case DType::I32:
    case DType::U32:
    case DType::F32:
      return 4;
    case DType::F64:
    case DType::I64:
    case DType::U64:
      return 8;
  }
  throw Error("dtype_size: invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::BOOL:
      return "BOOL";
    case DType::U8:
      return "U8";
    case DType::I8:
      return "I8";
    case DType::I16:
      return "I16";
    case DType::U16:
      return "U16";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::I32:
      return "I32";
    case DType::U32:
      return "U32";
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::I64:
      return "I64";
    case DType::U64:
      return "U64";
    case DType::F8_E4M3:
      return "F8_E4M3";
    case DType::F8_E5M2:
      return "F8_E5M2";
  }
  throw Error("dtype_name: invalid DType value " + std::to_string(static_cast<int>(dtype)));
}

std::optional<DType> parse_dtype(const std::string& name) {
  static const DType all[] = {DType::BOOL, DType::U8,   DType::I8,  DType::I16,     DType::U16,
                              DType::F16,  DType::BF16, DType::I32, DType::U32,     DType::F32,
                              DType::F64,  DType::I64,  DType::U64, DType::F8_E4M3, DType::F8_E5M2};
  for (DType d : all)
    if (name == dtype_name(d)) return d;
  return std::nullopt;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated at open: cannot overflow
  return n;
}

File File::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) bad_file(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail(path, std::string("cannot stat: ") + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    bad_file(path, "not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    bad_file(path, "file is " + std::to_string(size) +
                       " bytes, shorter than the 8-byte header length\nHINT: the file is truncated; "
                       "download or write it again");
  }
  // The mapping outlives the descriptor. (If another process truncates the file while it is
  // mapped, reads fault with SIGBUS; nothing in-process can guard against that.)
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) fail(path, std::string("mmap failed: ") + std::strerror(map_err));

  File f;
  f.path_ = path;
  f.map_ = map;
  f.map_bytes_ = size;
  const auto* bytes = static_cast<const uint8_t*>(map);

  const uint64_t n = read_le64(bytes);
  if (n > kMaxHeaderBytes)
    bad_file(path, "header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(kMaxHeaderBytes) +
                       " bytes\nHINT: is this a safetensors file?");
  if (n > size - 8)
    bad_file(path, "header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
                       " bytes)\nHINT: the file is truncated; download or write it again");
  const auto* hbegin = reinterpret_cast<const char*>(bytes + 8);
  const json header = parse_json_or_fail(path, "header", hbegin, hbegin + n);
  if (!header.is_object()) bad_file(path, "header is " + json_found(header) + ", not an object");

  f.data_start_ = 8 + n;
  const uint64_t data_bytes = size - f.data_start_;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      for (const auto& [mk, mv] : JsonView(header, path)["__metadata__"].items()) f.metadata_[mk] = mv.string();
      continue;
    }
    TensorInfo t = parse_entry(path, key, value);
    const uint64_t need = checked_nbytes(path, key, t.dtype, t.shape);
    const std::string ctx = tensor_ctx(key) + "data_offsets " + range_str(t.begin, t.end);
    if (t.begin > t.end) bad_file(path, ctx + " begin after end");
    if (t.end - t.begin != need)
      bad_file(path, ctx + " hold " + std::to_string(t.end - t.begin) + " bytes but " + dtype_name(t.dtype) + " " +
                         shape_str(t.shape) + " needs " + std::to_string(need) + " (shape/size mismatch)");
    if (t.end > data_bytes)
      bad_file(path, ctx + " run past the end of the file: the data region holds " + std::to_string(data_bytes) +
                         " bytes (file " + std::to_string(size) + " bytes, header " + std::to_string(n) +
                         ")\nHINT: the file is truncated; download or write it again");
    f.tensors_.push_back(std::move(t));
  }

  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  // Sorted by offset, the tensors must tile [0, data_bytes) exactly, as the reference demands.
  uint64_t pos = 0;
  const TensorInfo* prev = nullptr;
  for (const auto& t : f.tensors_) {
    if (t.begin < pos)
      bad_file(path, "tensors '" + prev->name + "' " + range_str(prev->begin, prev->end) + " and '" + t.name + "' " +
                         range_str(t.begin, t.end) + " overlap");
    if (t.begin > pos)
      bad_file(path, "gap in the data region: bytes " + range_str(pos, t.begin) + " " +
                         (prev ? "between tensor '" + prev->name + "' and tensor '" + t.name + "'"
                               : "before the first tensor '" + t.name + "'") +
                         " belong to no tensor (offsets must be contiguous)");
    pos = t.end;
    prev = &t;
  }
  if (pos != data_bytes)
    bad_file(path, "the data region holds " + std::to_string(data_bytes) + " bytes but the tensors cover only " +
                       range_str(0, pos) + ": " + std::to_string(data_bytes - pos) +
                       " trailing bytes belong to no tensor");

  f.by_name_.reserve(f.tensors_.size());
  for (size_t i = 0; i < f.tensors_.size(); ++i) f.by_name_.emplace(f.tensors_[i].name, i);
  return f;
}

File::File(File&& other) noexcept { *this = std::move(other); }

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    map_bytes_ = std::exchange(other.map_bytes_, 0);
    data_start_ = std::exchange(other.data_start_, 0);
    tensors_ = std::move(other.tensors_);
    by_name_ = std::move(other.by_name_);
    metadata_ = std::move(other.metadata_);
    other.tensors_.clear();
    other.by_name_.clear();
    other.metadata_.clear();
  }
  return *this;
}

File::~File() { release(); }

void File::release() noexcept {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
}

const TensorInfo* File::find(const std::string& name) const& {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& File::at(const std::string& name) const& {
  if (const TensorInfo* t = find(name)) return *t;
  bad_file(path_, "no tensor '" + name + "' (the file holds " + std::to_string(tensors_.size()) + " tensors)");
}

const uint8_t* File::data(const TensorInfo& t) const& {
  // Catches a TensorInfo from another file (or a moved-from File) before it reads past the map.
  if (map_ == nullptr || t.begin > t.end || t.end > map_bytes_ - data_start_)
    fail(path_,
         tensor_ctx(t.name) + "data_offsets " + range_str(t.begin, t.end) + " do not belong to this file");
  return static_cast<const uint8_t*>(map_) + data_start_ + t.begin;
}

Checkpoint Checkpoint::open_dir(const std::string& dir) {
  const std::string hint = "\nHINT: point model.path at a Hugging Face model directory";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) bad_file(dir, (fs::exists(dir, ec) ? "not a directory" : "no such directory") + hint);
  const std::string single = join(dir, kSingleFile), index = join(dir, kIndexFile);
  const bool has_single = fs::exists(single, ec), has_index = fs::exists(index, ec);

  Checkpoint c;
  c.dir_ = dir;
  if (has_single && has_index)
    bad_file(dir, std::string("holds both ") + kSingleFile + " and " + kIndexFile +
                      ", so which one is current is unclear\nHINT: remove the stale one");
  if (!has_single && !has_index) {
    std::string found;
    for (const char* bin : {"pytorch_model.bin", "pytorch_model.bin.index.json"})
      if (fs::exists(join(dir, bin), ec))
        found = std::string(" (found ") + bin + ": only safetensors weights are read)";
    bad_file(dir, std::string("no ") + kSingleFile + " or " + kIndexFile + found + hint);
  }

  if (has_single) {
    c.files_.push_back(File::open(single));
    for (const auto& t : c.files_[0].tensors()) c.tensors_[t.name] = Loc{0, &t};
    return c;
  }

  const std::string text = read_file(index);
  const json j = parse_json_or_fail(index, "index", text.data(), text.data() + text.size());
  if (!j.is_object()) bad_file(index, "index is " + json_found(j) + ", not an object");
  const auto wm = JsonView(j, index)["weight_map"];
  const auto entries = wm.items();
  if (entries.empty()) wm.fail("is empty");

  // shard file -> tensors the index puts there; std::map so shards open in name order.
  std::map<std::string, std::vector<std::string>> by_shard;
  std::map<std::string, std::string> shard_of;
  for (const auto& [name, v] : entries) {
    const std::string shard = v.string();
    if (shard.empty() || shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
      bad_file(index, "\"weight_map\" puts tensor '" + name + "' in shard '" + shard +
                          "': shard names must be plain file names inside " + dir);
    by_shard[shard].push_back(name);
    shard_of[name] = shard;
  }

  std::map<std::string, size_t> file_index;
  for (const auto& [shard, names] : by_shard) {
    const std::string path = join(dir, shard);
    if (!fs::exists(path, ec))
      throw UsageError(index + " names shard '" + shard + "' (for tensor '" + names.front() + "'" +
                       (names.size() > 1 ? " and " + std::to_string(names.size() - 1) + " more" : "") +
                       "), which does not exist in " + dir +
                       "\nHINT: the download is incomplete; fetch the missing shard");
    file_index[shard] = c.files_.size();
    c.files_.push_back(File::open(path));
  }

  for (const auto& [shard, fi] : file_index) {
    const File& f = c.files_[fi];
    for (const auto& name : by_shard[shard])
      if (!f.find(name))
        bad_file(index, "\"weight_map\" puts tensor '" + name + "' in shard '" + shard + "', but " + f.path() +
                            " does not hold it");
    for (const auto& t : f.tensors()) {
      auto it = shard_of.find(t.name);
      if (it == shard_of.end())
        bad_file(f.path(), "tensor '" + t.name + "' is not listed in the \"weight_map\" of " + index);
      if (it->second != shard)
        bad_file(index, "tensor '" + t.name + "' is in shard '" + shard + "' and also in '" + it->second +
                            "' (where \"weight_map\" puts it)");
      c.tensors_[t.name] = Loc{fi, &t};
    }
  }
  return c;
}

std::string weights_fingerprint(const Checkpoint& c) {
  constexpr uint64_t kWindow = 4096;
  uint64_t h = fnv1a64("r1dist weights fingerprint 1");
  auto mix = [&](std::string_view s) { h = fnv1a64(std::string_view("\x1f", 1), fnv1a64(s, h)); };
  for (const File& f : c.files()) {
    f.advise_random();  // 4 KiB windows, not the 128 KiB the kernel would read around each
    const auto slash = f.path().find_last_of('/');
    mix(slash == std::string::npos ? f.path() : f.path().substr(slash + 1));
    for (const auto& [k, v] : f.metadata()) mix(k + "=" + v);
    for (const TensorInfo& t : f.tensors()) {
      mix(t.name);
      mix(std::string(dtype_name(t.dtype)) + " " + shape_str(t.shape) + " " + range_str(t.begin, t.end));
      const uint64_t n = t.end - t.begin;
      const uint8_t* d = f.data(t);
      for (uint64_t at : {uint64_t(0), n > kWindow ? (n - kWindow) / 2 : 0, n > kWindow ? n - kWindow : 0})
        mix(std::string_view(reinterpret_cast<const char*>(d + at), size_t(std::min(kWindow, n))));
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

void File::advise_random() const& {
  if (map_) ::madvise(map_, map_bytes_, MADV_RANDOM);
}

const Checkpoint::Loc& Checkpoint::loc(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    bad_file(dir_, "no tensor '" + name + "' in the checkpoint (" + std::to_string(tensors_.size()) + " tensors)");
  return it->second;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

bool Checkpoint::contains(const std::string& name) const { return tensors_.count(name) != 0; }

const TensorInfo& Checkpoint::info(const std::string& name) const { return *loc(name).info; }

const uint8_t* Checkpoint::data(const std::string& name) const {
  const Loc& l = loc(name);
  return files_[l.file].data(*l.info);
}

const std::string& Checkpoint::file_of(const std::string& name) const {
  return files_[loc(name).file].path();
}

void write_file(const std::string& path, const std::vector<WriteSpec>& specs, const FillFn& fill,
                const std::map<std::string, std::string>& metadata) {
  const std::vector<uint64_t> sizes = validate_specs(path, specs);

  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    // Key order matches the reference writer: dtype, shape, data_offsets.
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = dtype_name(specs[i].dtype);
    e["shape"] = specs[i].shape;
    e["data_offsets"] = nlohmann::ordered_json::array({offset, offset + sizes[i]});
    h[specs[i].name] = std::move(e);
    offset += sizes[i];
  }
  std::string header;
  try {
    header = h.dump();
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("a tensor name or metadata string is not valid UTF-8: ") + e.what());
  }
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > kMaxHeaderBytes)
    fail(path, "header would be " + std::to_string(header.size()) + " bytes, over the " +
                   std::to_string(kMaxHeaderBytes) + "-byte limit readers enforce");

  AtomicFile out(path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  out.write(len, 8);
  out.write(reinterpret_cast<const uint8_t*>(header.data()), header.size());

  // Small tensors are packed into one buffer per write(); a bigger one gets its own buffer.
  std::vector<uint8_t> buf(std::max<size_t>(1, std::min<uint64_t>(kWriteBufferBytes, offset)));
  size_t used = 0;
  auto flush = [&] {
    out.write(buf.data(), used);
    used = 0;
  };
  for (size_t i = 0; i < specs.size(); ++i) {
    const size_t n = sizes[i];
    if (n > buf.size()) {
      flush();
      std::unique_ptr<uint8_t[]> big(new uint8_t[n]());
      fill(i, big.get(), n);
      out.write(big.get(), n);
      continue;
    }
    if (used + n > buf.size()) flush();
    uint8_t* dst = buf.data() + used;
    std::memset(dst, 0, n);  // a fill that skips bytes still writes deterministic output
    fill(i, dst, n);
    used += n;
  }
  flush();
  out.commit();
}

void write_file(const std::string& path, const std::vector<WriteSpec>& specs,
                const std::vector<std::vector<uint8_t>>& bytes,
                const std::map<std::string, std::string>& metadata) {
  if (bytes.size() != specs.size())
    fail(path, std::to_string(bytes.size()) + " byte buffers given for " + std::to_string(specs.size()) +
                   " tensors");
  const std::vector<uint64_t> sizes = validate_specs(path, specs);
  for (size_t i = 0; i < specs.size(); ++i)
    if (bytes[i].size() != sizes[i])
      fail(path, tensor_ctx(specs[i].name) + std::to_string(bytes[i].size()) + " bytes given but " +
                     dtype_name(specs[i].dtype) + " " + shape_str(specs[i].shape) + " needs " +
                     std::to_string(sizes[i]));
  write_file(
      path, specs,
      [&](size_t i, uint8_t* dst, size_t n) {
        if (n) std::memcpy(dst, bytes[i].data(), n);
      },
      metadata);
}

std::vector<std::string> write_model_dir(const std::string& dir, const std::vector<WriteSpec>& specs,
                                         const FillFn& fill, uint64_t max_shard_bytes,
                                         const std::map<std::string, std::string>& metadata) {
  if (max_shard_bytes == 0) fail(dir, "max_shard_bytes must be positive");
  // Checked across all shards here; write_file only sees one shard's names.
  const std::vector<uint64_t> sizes = validate_specs(dir, specs);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(dir, "cannot create directory: " + ec.message());

  std::vector<std::vector<size_t>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!shards.back().empty() && in_shard + sizes[i] > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(i);
    in_shard += sizes[i];
    total += sizes[i];
  }

  const std::string index_path = join(dir, kIndexFile);
  if (shards.size() == 1) {
    const std::string path = join(dir, kSingleFile);
    write_file(path, specs, fill, metadata);
    remove_if_present(index_path);
    return {path};
  }

  std::vector<std::string> written;
  json weight_map = json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    std::vector<WriteSpec> sub;
    for (size_t i : shards[s]) {
      sub.push_back(specs[i]);
      weight_map[specs[i].name] = name;
    }
    const auto& global = shards[s];
    written.push_back(join(dir, name));
    write_file(
        written.back(), sub, [&](size_t i, uint8_t* dst, size_t n) { fill(global[i], dst, n); }, metadata);
  }
  const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_file_atomic(index_path, index.dump(2) + "\n");
  remove_if_present(join(dir, kSingleFile));
  written.push_back(index_path);
  return written;
}

}  // namespace r1dist::st
