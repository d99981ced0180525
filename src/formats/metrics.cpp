// The per-run metrics file (docs/CHECKPOINT_FORMAT.md, "metrics.h5"): extendible compound
// tables appended row by row under SWMR, so readers see rows while the run writes and a
// killed run keeps every completed row.
#include "r1dist/formats/metrics.h"

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <map>

#include "formats/h5_util.h"
#include "r1dist/base/fs.h"
#include "r1dist/log/log.h"

namespace r1dist {

namespace {

using h5::Handle;

constexpr size_t kAttrName = 64, kAttrValue = 256;

// One row of /attrs: counters live in a table, not in HDF5 attributes, because SWMR
// writers cannot create or modify attributes.
struct AttrRow {
  char name[kAttrName];
  char value[kAttrValue];
};

void add(hid_t t, const char* name, size_t off, hid_t type, const std::string& where) {
  R1DIST_H5(where, H5Tinsert(t, name, off, type));
}

// The columns of both tables, in file order: the one list of their names and types.
struct Column {
  const char* name;
  size_t offset;
  bool integer;
};
#define R1DIST_COL(T, f, i) Column{#f, offsetof(T, f), i}
const std::vector<Column> kStepColumns = {
    R1DIST_COL(StepRecord, step, true),          R1DIST_COL(StepRecord, loss, false),
    R1DIST_COL(StepRecord, lr, false),           R1DIST_COL(StepRecord, grad_norm, false),
    R1DIST_COL(StepRecord, tokens, true),        R1DIST_COL(StepRecord, step_time_s, false),
    R1DIST_COL(StepRecord, tokens_per_s, false), R1DIST_COL(StepRecord, mem_gb, false),
    R1DIST_COL(StepRecord, real_tokens, true),   R1DIST_COL(StepRecord, slot_tokens, true),
    R1DIST_COL(StepRecord, real_tokens_per_s, false), R1DIST_COL(StepRecord, slot_tokens_per_s, false),
    R1DIST_COL(StepRecord, padding_share, false)};
const std::vector<Column> kEvalColumns = {
    R1DIST_COL(EvalRecord, step, true), R1DIST_COL(EvalRecord, eval_loss, false), R1DIST_COL(EvalRecord, kl, false),
    R1DIST_COL(EvalRecord, eval_tokens, true)};
#undef R1DIST_COL

// Memory types (native) and file types (little-endian, same packed layout). HDF5 matches
// compound fields by name when converting, so a reader tolerates reordered fields.
Handle row_type(const std::vector<Column>& cols, size_t size, bool file, const std::string& w) {
  Handle t(R1DIST_H5(w, H5Tcreate(H5T_COMPOUND, size)));
  const hid_t i64 = file ? H5T_STD_I64LE : H5T_NATIVE_INT64, f64 = file ? H5T_IEEE_F64LE : H5T_NATIVE_DOUBLE;
  for (const auto& c : cols) add(t, c.name, c.offset, c.integer ? i64 : f64, w);
  return t;
}
Handle step_type(bool file) { return row_type(kStepColumns, sizeof(StepRecord), file, "metrics step type"); }
Handle eval_type(bool file) { return row_type(kEvalColumns, sizeof(EvalRecord), file, "metrics eval type"); }

template <class T>
std::vector<MetricColumn> columns_of(const std::vector<Column>& cols, const T& r) {
  std::vector<MetricColumn> out;
  const auto* base = reinterpret_cast<const char*>(&r);
  for (const auto& c : cols) {
    if (std::strcmp(c.name, "step") == 0) continue;
    if (c.integer) {
      int64_t v;
      std::memcpy(&v, base + c.offset, sizeof v);
      out.push_back({c.name, double(v)});
    } else {
      double v;
      std::memcpy(&v, base + c.offset, sizeof v);
      out.push_back({c.name, v});
    }
  }
  return out;
}

Handle attr_type() {
  const std::string w = "metrics attrs type";
  Handle t(R1DIST_H5(w, H5Tcreate(H5T_COMPOUND, sizeof(AttrRow))));
  auto n = h5::string_type(kAttrName, H5T_STR_NULLTERM), v = h5::string_type(kAttrValue, H5T_STR_NULLTERM);
  add(t, "name", offsetof(AttrRow, name), n, w);
  add(t, "value", offsetof(AttrRow, value), v, w);
  return t;
}

void create_table(hid_t f, const char* name, hid_t ftype, hsize_t chunk, const std::string& where) {
  const std::string w = where + " dataset /" + name;
  const hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunks[1] = {chunk};
  Handle space(R1DIST_H5(w, H5Screate_simple(1, dims, maxdims)));
  Handle dcpl(R1DIST_H5(w, H5Pcreate(H5P_DATASET_CREATE)));
  R1DIST_H5(w, H5Pset_chunk(dcpl, 1, chunks));
  Handle d(R1DIST_H5(w, H5Dcreate2(f, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)));
  d.close(w);
}

hsize_t rows(hid_t d, const std::string& where) {
  Handle sp(R1DIST_H5(where, H5Dget_space(d)));
  hsize_t n = 0;
  R1DIST_H5(where, H5Sget_simple_extent_dims(sp, &n, nullptr));
  return n;
}

// Writes `count` rows at `at` (growing the table when they pass its end).
void write_rows(hid_t d, hid_t mtype, hsize_t at, hsize_t count, const void* buf, const std::string& where) {
  if (count == 0) return;
  if (at + count > rows(d, where)) {
    const hsize_t n = at + count;
    R1DIST_H5(where, H5Dset_extent(d, &n));
  }
  Handle fs(R1DIST_H5(where, H5Dget_space(d)));
  R1DIST_H5(where, H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, nullptr, &count, nullptr));
  Handle ms(R1DIST_H5(where, H5Screate_simple(1, &count, nullptr)));
  R1DIST_H5(where, H5Dwrite(d, mtype, ms, fs, H5P_DEFAULT, buf));
}

template <class T>
std::vector<T> read_table(hid_t f, const char* name, hid_t mtype, bool swmr, const std::string& where) {
  const std::string w = where + " dataset /" + name;
  if (H5Lexists(f, name, H5P_DEFAULT) <= 0) throw Error(w + " is missing");
  Handle d(R1DIST_H5(w, H5Dopen2(f, name, H5P_DEFAULT)));
  if (swmr) R1DIST_H5(w, H5Drefresh(d));
  std::vector<T> out(rows(d, w));
  if (!out.empty()) R1DIST_H5(w, H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()));
  return out;
}

std::string field(const char* p, size_t n) { return std::string(p, strnlen(p, n)); }

Handle reader_fapl() {
  Handle fapl(R1DIST_H5("metrics", H5Pcreate(H5P_FILE_ACCESS)));
#if H5_VERSION_GE(1, 10, 7)
  // A reader takes no lock: the SWMR writer coordinates through the file's own metadata.
  R1DIST_H5("metrics", H5Pset_file_locking(fapl, false, true));
#endif
  return fapl;
}

}  // namespace

std::vector<MetricColumn> metric_columns(const StepRecord& r) { return columns_of(kStepColumns, r); }
std::vector<MetricColumn> metric_columns(const EvalRecord& r) { return columns_of(kEvalColumns, r); }

MetricsData read_metrics(const std::string& path) {
  h5::quiet();
  const std::string where = "metrics " + path;
  if (::access(path.c_str(), R_OK) != 0) throw Error(where + ": cannot open: " + std::strerror(errno));
  auto fapl = reader_fapl();
  bool swmr = true;
  hid_t fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl);
  if (fid < 0) {
    // Files in the older format (not written by MetricsWriter) cannot be opened for SWMR.
    const std::string swmr_err = h5::error_stack();
    swmr = false;
    fid = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl);
    if (fid < 0) throw Error(where + ": cannot open as HDF5 (SWMR read: " + swmr_err + "; plain read: " +
                             h5::error_stack() + ")");
  }
  Handle f(fid);
  MetricsData m;
  auto st = step_type(false), et = eval_type(false), at = attr_type();
  m.steps = read_table<StepRecord>(f, "steps", st, swmr, where);
  m.evals = read_table<EvalRecord>(f, "evals", et, swmr, where);
  for (const auto& r : read_table<AttrRow>(f, "attrs", at, swmr, where))
    m.attrs[field(r.name, kAttrName)] = field(r.value, kAttrValue);
  return m;
}

struct MetricsWriter::Impl {
  std::string path, where;
  Handle file, steps, evals, attrs;
  Handle step_mt = step_type(false), eval_mt = eval_type(false), attr_t = attr_type();
  hsize_t n_steps = 0, n_evals = 0, n_attrs = 0;
  std::map<std::string, hsize_t> attr_row;

  void flush(hid_t d) {
    R1DIST_H5(where, H5Dflush(d));
    R1DIST_H5(where, H5Fflush(file, H5F_SCOPE_LOCAL));
  }
};

// Both a new run and a resumed one write a fresh file (PATH.tmp, then renamed over PATH)
// holding the rows kept: a writer killed in SWMR mode leaves its "open for writing" flags
// in the superblock, which only SWMR readers (or h5clear) get past, so the old file is read
// the way a reader would and never reopened for writing.
MetricsWriter::MetricsWriter(const std::string& path, bool resume, int64_t resume_step) : impl_(new Impl) {
  try {
    h5::quiet();
    auto& m = *impl_;
    m.path = path;
    m.where = "metrics " + path;
    MetricsData kept;
    if (resume && ::access(path.c_str(), F_OK) == 0) {
      MetricsData old;
      try {
        old = read_metrics(path);
      } catch (const Error& e) {
        throw Error(std::string(e.what()) + "\nHINT: move the damaged metrics file away to resume without it");
      }
      for (const auto& r : old.steps)
        if (r.step <= resume_step) kept.steps.push_back(r);
      for (const auto& r : old.evals)
        if (r.step <= resume_step) kept.evals.push_back(r);
      kept.attrs = std::move(old.attrs);
      log::info("metrics: resuming ", path, " at step ", resume_step, ": kept ", kept.steps.size(), " of ",
                old.steps.size(), " step rows and ", kept.evals.size(), " of ", old.evals.size(), " eval rows");
    }
    const std::string tmp = path + ".tmp";
    Handle fapl(R1DIST_H5(m.where, H5Pcreate(H5P_FILE_ACCESS)));
    // SWMR needs the 1.10 file format.
    R1DIST_H5(m.where, H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST));
    m.file = Handle(R1DIST_H5(m.where, H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl)));
    create_table(m.file, "steps", step_type(true), 256, m.where);
    create_table(m.file, "evals", eval_type(true), 64, m.where);
    create_table(m.file, "attrs", m.attr_t, 16, m.where);
    // Every object is closed before SWMR starts (1.10 refuses some open objects) and
    // reopened after.
    R1DIST_H5(m.where, H5Fstart_swmr_write(m.file));
    m.steps = Handle(R1DIST_H5(m.where, H5Dopen2(m.file, "steps", H5P_DEFAULT)));
    m.evals = Handle(R1DIST_H5(m.where, H5Dopen2(m.file, "evals", H5P_DEFAULT)));
    m.attrs = Handle(R1DIST_H5(m.where, H5Dopen2(m.file, "attrs", H5P_DEFAULT)));
    write_rows(m.steps, m.step_mt, 0, kept.steps.size(), kept.steps.data(), m.where);
    write_rows(m.evals, m.eval_mt, 0, kept.evals.size(), kept.evals.data(), m.where);
    m.n_steps = kept.steps.size();
    m.n_evals = kept.evals.size();
    for (const auto& [k, v] : kept.attrs) set_attr(k, v);
    R1DIST_H5(m.where, H5Fflush(m.file, H5F_SCOPE_LOCAL));
    rename_path(tmp, path);
  } catch (...) {
    delete impl_;
    throw;
  }
}

MetricsWriter::~MetricsWriter() {
  try {
    impl_->steps.close(impl_->where);
    impl_->evals.close(impl_->where);
    impl_->attrs.close(impl_->where);
    impl_->file.close(impl_->where);
  } catch (const std::exception& e) {
    log::warn(e.what());
  }
  delete impl_;
}

void MetricsWriter::append(const StepRecord& r) {
  auto& m = *impl_;
  write_rows(m.steps, m.step_mt, m.n_steps, 1, &r, m.where + " /steps");
  ++m.n_steps;
  m.flush(m.steps);
}

void MetricsWriter::append(const EvalRecord& r) {
  auto& m = *impl_;
  write_rows(m.evals, m.eval_mt, m.n_evals, 1, &r, m.where + " /evals");
  ++m.n_evals;
  m.flush(m.evals);
}

void MetricsWriter::set_attr(const std::string& name, int64_t value) { set_attr(name, std::to_string(value)); }

void MetricsWriter::set_attr(const std::string& name, const std::string& value) {
  auto& m = *impl_;
  if (name.empty() || name.size() >= kAttrName || value.size() >= kAttrValue)
    throw Error(m.where + ": attribute '" + name + "' = '" + value + "' does not fit /attrs (name 1.." +
                std::to_string(kAttrName - 1) + " bytes, value up to " + std::to_string(kAttrValue - 1) + ")");
  AttrRow row{};
  std::memcpy(row.name, name.data(), name.size());
  std::memcpy(row.value, value.data(), value.size());
  auto it = m.attr_row.find(name);
  const hsize_t at = it != m.attr_row.end() ? it->second : m.n_attrs;
  write_rows(m.attrs, m.attr_t, at, 1, &row, m.where + " /attrs");
  if (it == m.attr_row.end()) m.attr_row[name] = m.n_attrs++;
  m.flush(m.attrs);
}

}  // namespace r1dist
