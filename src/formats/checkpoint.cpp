// HDF5 checkpoints (layout: docs/CHECKPOINT_FORMAT.md).
#include "r1dist/formats/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "formats/h5_util.h"
#include "r1dist/base/fs.h"
#include "r1dist/base/checksum.h"
#include "r1dist/log/log.h"

namespace r1dist {

namespace {

namespace fs = std::filesystem;
using h5::Handle;

constexpr const char* kFormat = "r1dist-checkpoint";
// 3: /optimizer/layout maps the flat moment vectors to the adapter tensors (name, offset,
// length). 2: every dataset carries a CRC-32 of its data ("crc32") and the file one of its
// state ("state_crc32": the attributes, the config text and /extra). 1: no checksums.
// 1 and 2 are still read (their layout is the order of /adapters).
constexpr int64_t kFormatVersion = 3;

// The row type of /optimizer/layout, packed: `name` a NUL-terminated UTF-8 string of
// name_bytes, then `offset` and `length` (little-endian in the file, native in memory).
Handle layout_type(size_t name_bytes, bool file) {
  const std::string w = "checkpoint /optimizer/layout type";
  Handle t(R1DIST_H5(w, H5Tcreate(H5T_COMPOUND, name_bytes + 16)));
  auto n = h5::string_type(name_bytes, H5T_STR_NULLTERM);
  R1DIST_H5(w, H5Tinsert(t, "name", 0, n));
  R1DIST_H5(w, H5Tinsert(t, "offset", name_bytes, file ? H5T_STD_I64LE : H5T_NATIVE_INT64));
  R1DIST_H5(w, H5Tinsert(t, "length", name_bytes + 8, file ? H5T_STD_I64LE : H5T_NATIVE_INT64));
  return t;
}

// Rows <-> the packed buffer of layout_type(name_bytes, false).
std::vector<char> pack_layout(const std::vector<MomentSlice>& rows, size_t name_bytes) {
  const size_t row = name_bytes + 16;
  std::vector<char> buf(row * rows.size(), '\0');
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(&buf[i * row], rows[i].name.data(), std::min(rows[i].name.size(), name_bytes - 1));
    std::memcpy(&buf[i * row + name_bytes], &rows[i].offset, 8);
    std::memcpy(&buf[i * row + name_bytes + 8], &rows[i].length, 8);
  }
  return buf;
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// Refuses to write what read_checkpoint would reject, naming the field.
void check_state(const CheckpointState& s, const std::string& where) {
  int64_t total = 0;
  for (const auto& a : s.adapters) {
    if (a.name.empty() || a.name == "." || a.name.find('/') != std::string::npos)
      throw Error(where + ": adapter name '" + a.name + "' cannot be an HDF5 link name (empty, '.' or has '/')");
    for (auto d : a.shape)
      if (d < 0) throw Error(where + ": adapter " + a.name + " has a negative dimension " + shape_str(a.shape));
    if (numel(a.shape) != static_cast<int64_t>(a.data.size()))
      throw Error(where + ": adapter " + a.name + " has shape " + shape_str(a.shape) + " but " +
                  std::to_string(a.data.size()) + " values");
    total += numel(a.shape);
  }
  if (static_cast<int64_t>(s.adam_m.size()) != total || static_cast<int64_t>(s.adam_v.size()) != total)
    throw Error(where + ": optimizer state has " + std::to_string(s.adam_m.size()) + " / " +
                std::to_string(s.adam_v.size()) + " values (exp_avg / exp_avg_sq) for " + std::to_string(total) +
                " adapter values");
  auto finite = [&](const std::vector<float>& v, const std::string& what) {
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        throw Error(where + ": " + what + " holds a non-finite value (" + std::to_string(v[i]) + " at index " +
                    std::to_string(i) + "); a checkpoint of it would be unusable");
  };
  for (const auto& a : s.adapters) finite(a.data, "adapter " + a.name);
  finite(s.adam_m, "exp_avg");
  finite(s.adam_v, "exp_avg_sq");
  if (s.world_size < 1 || static_cast<int64_t>(s.rng_states.size()) != s.world_size)
    throw Error(where + ": " + std::to_string(s.rng_states.size()) + " rng states for world_size " +
                std::to_string(s.world_size));
}

Handle group_with_order(hid_t loc, const char* name, const std::string& where) {
  Handle gcpl(R1DIST_H5(where, H5Pcreate(H5P_GROUP_CREATE)));
  // Links then iterate in the order written (by default HDF5 iterates in name order).
  R1DIST_H5(where, H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED));
  return Handle(R1DIST_H5(where, H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT)));
}

// The state that the datasets' checksums do not cover, as one canonical text: every root
// attribute but the time of writing, the config and the /extra attributes.
std::string state_text(const CheckpointState& s) {
  std::string t;
  auto add = [&](const char* k, const std::string& v) { t += std::string(k) + "=" + std::to_string(v.size()) + ":" + v + "\n"; };
  auto bits = [](double d) {
    uint64_t u;
    std::memcpy(&u, &d, 8);
    return std::to_string(u);
  };
  add("r1dist_version", s.version);
  add("step", std::to_string(s.step));
  add("rows_consumed", std::to_string(s.rows_consumed));
  add("global_batch", std::to_string(s.global_batch));
  add("world_size", std::to_string(s.world_size));
  add("adam_step", std::to_string(s.adam_step));
  add("lr", bits(s.lr));
  add("schedule", s.schedule);
  add("model_path", s.model_path);
  add("model_hash", s.model_hash);
  add("has_best", s.has_best ? "1" : "0");
  add("best_eval_loss", bits(s.has_best ? s.best_eval_loss : 0.0));
  add("config", s.config_toml);
  for (const auto& [k, v] : s.extra) add(("extra." + k).c_str(), v);
  return t;
}

void write_array(hid_t loc, const std::string& name, hid_t ftype, hid_t mtype, const std::vector<int64_t>& shape,
                 const void* data, size_t elem_bytes, const std::string& where, bool name_attr = false) {
  const std::string w = where + " dataset '" + name + "'";
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Handle space(shape.empty() ? R1DIST_H5(w, H5Screate(H5S_SCALAR))
                             : R1DIST_H5(w, H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)));
  Handle dcpl(R1DIST_H5(w, H5Pcreate(H5P_DATASET_CREATE)));
  // Contiguous, no fill: every byte is written once, straight from our buffer.
  R1DIST_H5(w, H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER));
  Handle d(R1DIST_H5(w, H5Dcreate2(loc, name.c_str(), ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)));
  if (numel(shape) > 0) R1DIST_H5(w, H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
  if (name_attr) h5::write_attr(d, "name", name, w);
  h5::write_attr(d, "crc32", static_cast<int64_t>(crc32(data, size_t(numel(shape)) * elem_bytes)), w);
  d.close(w);
}

// Set on the main thread, called on the checkpoint writer's (formats/checkpoint_writer.h).
std::atomic<CheckpointWriteHook> g_write_hook{nullptr};

// The checkpoint, built in memory (h5_util.h create_in_memory) and written atomically.
void write_file(const CheckpointState& s, const std::string& path) {
  const std::string where = "writing checkpoint " + path;
  size_t estimate = size_t(1) << 20;
  for (const auto& a : s.adapters) estimate += a.data.size() * 12;  // adapters + both moments
  for (const auto& r : s.rng_states) estimate += r.size();
  Handle f = h5::create_in_memory(path, estimate, where);
  h5::write_attr(f, "format", std::string(kFormat), where);
  h5::write_attr(f, "format_version", kFormatVersion, where);
  h5::write_attr(f, "r1dist_version", s.version, where);
  h5::write_attr(f, "created", h5::iso8601_now(), where);
  h5::write_attr(f, "step", s.step, where);
  h5::write_attr(f, "rows_consumed", s.rows_consumed, where);
  h5::write_attr(f, "global_batch", s.global_batch, where);
  h5::write_attr(f, "world_size", static_cast<int64_t>(s.world_size), where);
  h5::write_attr(f, "adam_step", s.adam_step, where);
  h5::write_attr(f, "lr", s.lr, where);
  h5::write_attr(f, "schedule", s.schedule, where);
  h5::write_attr(f, "model_path", s.model_path, where);
  h5::write_attr(f, "model_hash", s.model_hash, where);
  h5::write_attr(f, "has_best", static_cast<int64_t>(s.has_best ? 1 : 0), where);
  h5::write_attr(f, "best_eval_loss", s.has_best ? s.best_eval_loss : 0.0, where);
  h5::write_string_dataset(f, "config", s.config_toml, where);
  h5::write_attr(f, "state_crc32", static_cast<int64_t>(crc32(state_text(s))), where);

  auto adapters = group_with_order(f, "adapters", where + " group /adapters");
  int64_t total = 0;
  for (const auto& a : s.adapters) {
    write_array(adapters, a.name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, a.shape, a.data.data(), 4,
                where + " /adapters", true);
    total += numel(a.shape);
  }
  adapters.reset();

  Handle opt(R1DIST_H5(where, H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
  {
    // Which values of the flat moments belong to which adapter tensor.
    const std::string w = where + " dataset /optimizer/layout";
    const auto layout = moment_layout(s.adapters);
    size_t name_bytes = 1;
    for (const auto& x : layout) name_bytes = std::max(name_bytes, x.name.size() + 1);
    const auto rows = pack_layout(layout, name_bytes);
    auto ft = layout_type(name_bytes, true), mt = layout_type(name_bytes, false);
    const hsize_t dims[1] = {layout.size()};
    Handle space(R1DIST_H5(w, H5Screate_simple(1, dims, nullptr)));
    Handle d(R1DIST_H5(w, H5Dcreate2(opt, "layout", ft, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
    if (!layout.empty()) R1DIST_H5(w, H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()));
    d.close(w);
  }
  write_array(opt, "exp_avg", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {total}, s.adam_m.data(), 4, where + " /optimizer");
  write_array(opt, "exp_avg_sq", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, {total}, s.adam_v.data(), 4,
              where + " /optimizer");
  opt.reset();

  auto rng = group_with_order(f, "rng", where + " group /rng");
  for (size_t r = 0; r < s.rng_states.size(); ++r)
    write_array(rng, "rank_" + std::to_string(r), H5T_STD_U8LE, H5T_NATIVE_UINT8,
                {static_cast<int64_t>(s.rng_states[r].size())}, s.rng_states[r].data(), 1, where + " /rng");
  rng.reset();

  Handle extra(R1DIST_H5(where, H5Gcreate2(f, "extra", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
  for (const auto& [k, v] : s.extra) h5::write_attr(extra, k, v, where + " group /extra");
  extra.reset();
  h5::write_image(f, path, where, g_write_hook.load());
}

// Opens a dataset that must exist under `loc`, naming `field` when it does not.
Handle open_dataset(hid_t loc, const std::string& name, const std::string& field) {
  if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) <= 0) throw Error(field + " is missing");
  return Handle(R1DIST_H5(field, H5Dopen2(loc, name.c_str(), H5P_DEFAULT)));
}

Handle open_group(hid_t loc, const std::string& name, const std::string& field) {
  if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) <= 0) throw Error(field + " is missing");
  return Handle(R1DIST_H5(field, H5Gopen2(loc, name.c_str(), H5P_DEFAULT)));
}

std::vector<int64_t> dataset_shape(hid_t d, const std::string& field) {
  Handle sp(R1DIST_H5(field, H5Dget_space(d)));
  const int nd = R1DIST_H5(field, H5Sget_simple_extent_ndims(sp));
  std::vector<hsize_t> dims(static_cast<size_t>(nd));
  if (nd > 0) R1DIST_H5(field, H5Sget_simple_extent_dims(sp, dims.data(), nullptr));
  return std::vector<int64_t>(dims.begin(), dims.end());
}

// Reads a dataset of class `cls` into `out` (converted to `mtype`); returns its shape.
template <class T>
std::vector<int64_t> read_array(hid_t d, H5T_class_t cls, hid_t mtype, std::vector<T>& out, bool with_data,
                                const std::string& field) {
  Handle ft(R1DIST_H5(field, H5Dget_type(d)));
  if (H5Tget_class(ft) != cls)
    throw Error(field + ": expected " + (cls == H5T_FLOAT ? "float" : "integer") + " data");
  auto shape = dataset_shape(d, field);
  if (!with_data) return shape;
  out.resize(static_cast<size_t>(numel(shape)));
  if (!out.empty()) R1DIST_H5(field, H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()));
  return shape;
}

herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}

// Link names of a group in creation order (name order for groups made without tracking,
// e.g. by h5py's defaults).
std::vector<std::string> link_names(hid_t g, const std::string& field) {
  Handle gcpl(R1DIST_H5(field, H5Gget_create_plist(g)));
  unsigned flags = 0;
  R1DIST_H5(field, H5Pget_link_creation_order(gcpl, &flags));
  const H5_index_t index = (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
  std::vector<std::string> names;
  hsize_t idx = 0;
  R1DIST_H5(field, H5Literate(g, index, H5_ITER_INC, &idx, collect_name, &names));
  return names;
}

herr_t collect_attr_name(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}

CheckpointState read_impl(const std::string& path, bool with_data) {
  h5::quiet();
  const std::string where = "checkpoint " + path;
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) throw Error(where + ": cannot open: " + std::strerror(errno));
  const hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (fid < 0) {
    const std::string stack = h5::error_stack();
    std::string hint;
    if (stack.find("truncated") != std::string::npos || stack.find("signature") != std::string::npos)
      hint = "\nHINT: the file is truncated or not HDF5 (an interrupted copy?)";
    else if (stack.find("lock the file") != std::string::npos)
      hint = "\nHINT: another process holds the file open for writing (HDF5 file locking)";
    throw Error(where + ": cannot open as HDF5 (" + stack + ")" + hint);
  }
  Handle f(fid);

  CheckpointState s;
  // metrics.h5 lies beside the checkpoints: a likely wrong argument, named as such.
  if (H5Lexists(f, "steps", H5P_DEFAULT) > 0 && H5Lexists(f, "adapters", H5P_DEFAULT) <= 0)
    throw NotACheckpoint(where + ": not a checkpoint (it is a metrics file)");
  if (!h5::has_attr(f, "format"))
    throw NotACheckpoint(where + ": an HDF5 file without the attribute 'format': not an r1dist checkpoint");
  const std::string format = h5::read_string_attr(f, "format", where);
  if (format != kFormat)
    throw NotACheckpoint(where + ": attribute 'format' is '" + format + "', expected '" + kFormat +
                         "': not an r1dist checkpoint");
  const int64_t version = h5::read_int_attr(f, "format_version", where);
  if (version < 1 || version > kFormatVersion)
    throw Error(where + ": attribute 'format_version' is " + std::to_string(version) + "; this build reads 1 to " +
                std::to_string(kFormatVersion));
  const bool checksums = version >= 2;
  // A dataset's data against the CRC-32 recorded beside it (format 2), judged after the
  // structure: a missing or mis-shaped dataset is reported as such, not as damage.
  struct Damage {
    std::string field;
    bool has_crc;
    uint32_t want, got;
    size_t values;
  };
  std::vector<Damage> sums;
  auto verify = [&](hid_t d, const void* bytes, size_t n, size_t values, const std::string& field) {
    if (!checksums || !with_data) return;
    const bool has = h5::has_attr(d, "crc32");
    const auto want = has ? static_cast<uint32_t>(h5::read_int_attr(d, "crc32", field)) : 0u;
    sums.push_back({field, has, want, crc32(bytes, n), values});
  };
  s.version = h5::read_string_attr(f, "r1dist_version", where);
  h5::read_string_attr(f, "created", where);
  s.step = h5::read_int_attr(f, "step", where);
  s.rows_consumed = h5::read_int_attr(f, "rows_consumed", where);
  s.global_batch = h5::read_int_attr(f, "global_batch", where);
  const int64_t ws = h5::read_int_attr(f, "world_size", where);
  if (ws < 1 || ws > (1 << 20)) throw Error(where + ": attribute 'world_size' is " + std::to_string(ws));
  s.world_size = static_cast<int>(ws);
  s.adam_step = h5::read_int_attr(f, "adam_step", where);
  s.lr = h5::read_double_attr(f, "lr", where);
  s.schedule = h5::read_string_attr(f, "schedule", where);
  s.model_path = h5::read_string_attr(f, "model_path", where);
  s.model_hash = h5::read_string_attr(f, "model_hash", where);
  s.has_best = h5::read_int_attr(f, "has_best", where) != 0;
  s.best_eval_loss = h5::read_double_attr(f, "best_eval_loss", where);
  s.config_toml = h5::read_string_dataset(f, "config", where);

  int64_t total = 0;
  {
    auto g = open_group(f, "adapters", where + ": group /adapters");
    for (const auto& link : link_names(g, where + ": group /adapters")) {
      const std::string field = where + ": dataset /adapters/" + link;
      auto d = open_dataset(g, link, field);
      NamedArray a;
      a.name = h5::read_string_attr(d, "name", field);
      if (a.name != link) throw Error(field + ": attribute 'name' is '" + a.name + "'");
      a.shape = read_array(d, H5T_FLOAT, H5T_NATIVE_FLOAT, a.data, with_data, field);
      verify(d, a.data.data(), a.data.size() * 4, a.data.size(), field);
      total += numel(a.shape);
      s.adapters.push_back(std::move(a));
    }
  }
  {
    auto g = open_group(f, "optimizer", where + ": group /optimizer");
    for (auto [name, vec] : {std::pair{"exp_avg", &s.adam_m}, std::pair{"exp_avg_sq", &s.adam_v}}) {
      const std::string field = where + ": dataset /optimizer/" + name;
      auto d = open_dataset(g, name, field);
      const auto shape = read_array(d, H5T_FLOAT, H5T_NATIVE_FLOAT, *vec, with_data, field);
      verify(d, vec->data(), vec->size() * 4, vec->size(), field);
      if (shape.size() != 1 || shape[0] != total)
        throw Error(field + " has shape " + shape_str(shape) + "; the adapters hold " + std::to_string(total) +
                    " values");
    }
    if (version >= 3) {
      // The layout must be the adapters' own: same names, in order, contiguous.
      const std::string field = where + ": dataset /optimizer/layout";
      auto d = open_dataset(g, "layout", field);
      Handle sp(R1DIST_H5(field, H5Dget_space(d)));
      const hssize_t n = R1DIST_H5(field, H5Sget_simple_extent_npoints(sp));
      // The name's size as stored; HDF5 matches the fields by name.
      Handle ft(R1DIST_H5(field, H5Dget_type(d)));
      const int ni = H5Tget_class(ft) == H5T_COMPOUND ? H5Tget_member_index(ft, "name") : -1;
      if (ni < 0) throw Error(field + " is not a table of (name, offset, length)");
      Handle nt(R1DIST_H5(field, H5Tget_member_type(ft, unsigned(ni))));
      if (H5Tget_class(nt) != H5T_STRING || H5Tis_variable_str(nt) > 0)
        throw Error(field + ": field 'name' is not a fixed-length string");
      const size_t name_bytes = H5Tget_size(nt) + 1;
      auto mt = layout_type(name_bytes, false);
      std::vector<char> buf((name_bytes + 16) * size_t(std::max<hssize_t>(n, 0)));
      if (n > 0) R1DIST_H5(field, H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()));
      std::vector<MomentSlice> got;
      for (hssize_t i = 0; i < n; ++i) {
        const char* row = &buf[size_t(i) * (name_bytes + 16)];
        MomentSlice x;
        x.name.assign(row, strnlen(row, name_bytes));
        std::memcpy(&x.offset, row + name_bytes, 8);
        std::memcpy(&x.length, row + name_bytes + 8, 8);
        got.push_back(std::move(x));
      }
      const auto want = moment_layout(s.adapters);
      if (got.size() != want.size())
        throw Error(field + " has " + std::to_string(got.size()) + " rows for " + std::to_string(want.size()) +
                    " adapter tensors\nHINT: the file is damaged; use another checkpoint");
      for (size_t i = 0; i < got.size(); ++i)
        if (got[i].name != want[i].name || got[i].offset != want[i].offset || got[i].length != want[i].length)
          throw Error(field + " row " + std::to_string(i) + " is ('" + got[i].name + "', " +
                      std::to_string(got[i].offset) + ", " + std::to_string(got[i].length) + "); the adapters give ('" +
                      want[i].name + "', " + std::to_string(want[i].offset) + ", " + std::to_string(want[i].length) +
                      ")\nHINT: the file is damaged; use another checkpoint");
    }
  }
  {
    const std::string gfield = where + ": group /rng";
    auto g = open_group(f, "rng", gfield);
    const auto names = link_names(g, gfield);
    if (static_cast<int64_t>(names.size()) != ws)
      throw Error(gfield + " holds " + std::to_string(names.size()) + " states for world_size " + std::to_string(ws));
    for (int64_t r = 0; r < ws; ++r) {
      const std::string name = "rank_" + std::to_string(r);
      const std::string field = where + ": dataset /rng/" + name;
      auto d = open_dataset(g, name, field);
      std::vector<uint8_t> bytes;
      const auto shape = read_array(d, H5T_INTEGER, H5T_NATIVE_UINT8, bytes, with_data, field);
      if (shape.size() != 1) throw Error(field + " has shape " + shape_str(shape) + ", expected 1-D bytes");
      verify(d, bytes.data(), bytes.size(), bytes.size(), field);
      s.rng_states.emplace_back(bytes.begin(), bytes.end());
    }
  }
  {
    const std::string gfield = where + ": group /extra";
    auto g = open_group(f, "extra", gfield);
    std::vector<std::string> names;
    hsize_t idx = 0;
    R1DIST_H5(gfield, H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr_name, &names));
    for (const auto& n : names) s.extra[n] = h5::read_string_attr(g, n, gfield);
  }
  for (const auto& c : sums) {
    if (!c.has_crc) throw Error(c.field + ": attribute 'crc32' is missing");
    if (c.got != c.want)
      throw Error(c.field + " is damaged: the CRC-32 of its " + std::to_string(c.values) + " values is " +
                  crc32_hex(c.got) + ", the file records " + crc32_hex(c.want));
  }
  // Intact but unusable: a non-finite adapter or moment would make every later step, and
  // every model built from it, NaN.
  auto finite = [&](const std::vector<float>& v, const std::string& field) {
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        throw Error(field + " holds a non-finite value (" + std::to_string(v[i]) + " at index " + std::to_string(i) +
                    "): the checkpoint is unusable");
  };
  if (with_data) {
    for (const auto& a : s.adapters) finite(a.data, where + ": dataset /adapters/" + a.name);
    finite(s.adam_m, where + ": dataset /optimizer/exp_avg");
    finite(s.adam_v, where + ": dataset /optimizer/exp_avg_sq");
  }
  if (checksums) {
    const auto want = static_cast<uint32_t>(h5::read_int_attr(f, "state_crc32", where));
    const uint32_t got = crc32(state_text(s));
    if (got != want)
      throw Error(where + ": its state (step, learning rate, config, ... the root attributes and /extra) is "
                  "damaged: CRC-32 " + crc32_hex(got) + ", the file records " + crc32_hex(want));
  }
  f.close(where);
  return s;
}

// step_<digits>.h5 -> step, or -1.
int64_t parse_step(const std::string& file) {
  if (file.size() < 5 + 8 + 3 || file.compare(0, 5, "step_") != 0 || file.compare(file.size() - 3, 3, ".h5") != 0)
    return -1;
  const std::string digits = file.substr(5, file.size() - 8);
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

struct Found {
  int64_t step;
  std::string path;
};

// Checkpoints in RUN_DIR/checkpoints, newest first; *.tmp leftovers into `tmps`.
std::vector<Found> list_checkpoints(const std::string& run_dir, std::vector<std::string>* tmps) {
  std::vector<Found> out;
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (tmps && name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) tmps->push_back(it->path().string());
    const int64_t step = parse_step(name);
    if (step >= 0) out.push_back({step, it->path().string()});
  }
  if (ec) throw Error("cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const Found& a, const Found& b) { return a.step > b.step; });
  return out;
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa{}, sb{};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace

void set_checkpoint_write_hook(CheckpointWriteHook hook) { g_write_hook = hook; }

void write_checkpoint(const std::string& path, const CheckpointState& s) {
  h5::quiet();
  check_state(s, "writing checkpoint " + path);
  write_file(s, path);
}

CheckpointState read_checkpoint(const std::string& path) { return read_impl(path, true); }

bool checkpoint_is_valid(const std::string& path, std::string* why) {
  try {
    read_impl(path, true);
    return true;
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    return false;
  }
}

std::vector<MomentSlice> moment_layout(const std::vector<NamedArray>& adapters) {
  std::vector<MomentSlice> out;
  int64_t at = 0;
  for (const auto& a : adapters) {
    const int64_t n = numel(a.shape);
    out.push_back({a.name, at, n});
    at += n;
  }
  return out;
}

std::string checkpoint_path(const std::string& run_dir, int64_t step) {
  char name[40];
  std::snprintf(name, sizeof name, "step_%08lld.h5", static_cast<long long>(step));
  return run_dir + "/checkpoints/" + name;
}

std::vector<std::string> checkpoints_newest_first(const std::string& run_dir) {
  std::vector<std::string> out;
  for (const auto& c : list_checkpoints(run_dir, nullptr)) out.push_back(c.path);
  return out;
}

std::string find_latest_checkpoint(const std::string& run_dir) {
  for (const auto& c : list_checkpoints(run_dir, nullptr)) {
    std::string why;
    if (checkpoint_is_valid(c.path, &why)) return c.path;
    log::warn("skipping checkpoint ", c.path, ": ", why);
  }
  return "";
}

void rotate_checkpoints(const std::string& run_dir, int64_t keep, const std::string& protect) {
  std::vector<std::string> tmps;
  const auto found = list_checkpoints(run_dir, &tmps);
  for (const auto& t : tmps)
    if (::unlink(t.c_str()) != 0 && errno != ENOENT)
      throw Error("rotating checkpoints: cannot remove " + t + ": " + std::strerror(errno));
  int64_t kept = 0;
  for (const auto& c : found) {
    if (!protect.empty() && same_file(c.path, protect)) continue;
    if (kept < keep) {
      // Metadata only (every attribute, dataset and shape; no data read): this runs after
      // every save, and a cut file already fails at open (HDF5 checks its end of file).
      try {
        read_impl(c.path, false);
        ++kept;
        continue;
      } catch (const std::exception& e) {
        log::warn("rotating checkpoints: removing invalid ", c.path, ": ", e.what());
      }
    }
    if (::unlink(c.path.c_str()) != 0 && errno != ENOENT)
      throw Error("rotating checkpoints: cannot remove " + c.path + ": " + std::strerror(errno));
  }
}

}  // namespace r1dist
