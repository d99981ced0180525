// The per-run metrics file (docs/METRICS_FORMAT.md): extendible compound tables appended
// row by row under SWMR, so readers see rows while the run writes and a killed run keeps
// every completed row. What describes the file (root attributes, /config, the units of the
// columns) is written before SWMR starts: a SWMR writer cannot create attributes.
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

constexpr const char* kFormat = "r1dist-metrics";
constexpr size_t kAttrName = 64, kAttrValue = 256;

// One row of /attrs (a text) or /counters (an integer): tables, not HDF5 attributes,
// because SWMR writers cannot create or modify attributes.
struct AttrRow {
  char name[kAttrName];
  char value[kAttrValue];
};
struct CounterRow {
  char name[kAttrName];
  int64_t value;
};

void add(hid_t t, const char* name, size_t off, hid_t type, const std::string& where) {
  R1DIST_H5(where, H5Tinsert(t, name, off, type));
}

// The columns of both tables, in file order: the one list of their names, types, units and
// descriptions (units: "1" for dimensionless numbers, "step" for step numbers).
struct Column {
  const char* name;
  size_t offset;
  bool integer;
  const char* unit;
  const char* description;
};
#define R1DIST_COL(T, f, i, u, d) Column{#f, offsetof(T, f), i, u, d}
const std::vector<Column> kStepColumns = {
    R1DIST_COL(StepRecord, step, true, "step", "optimizer steps completed"),
    R1DIST_COL(StepRecord, loss, false, "nats/token", "training loss of the step: mean token NLL over the global batch"),
    R1DIST_COL(StepRecord, lr, false, "1", "learning rate of the step"),
    R1DIST_COL(StepRecord, grad_norm, false, "1", "L2 norm of the summed gradients, before clipping"),
    R1DIST_COL(StepRecord, tokens, true, "tokens", "loss tokens in the global batch"),
    R1DIST_COL(StepRecord, step_time_s, false, "s", "wall time of the step"),
    R1DIST_COL(StepRecord, tokens_per_s, false, "tokens/s", "loss tokens per second"),
    R1DIST_COL(StepRecord, mem_gb, false, "GB", "peak device memory, 10^9 bytes (0 on CPU)"),
    R1DIST_COL(StepRecord, real_tokens, true, "tokens", "tokens of the global batch's rows"),
    R1DIST_COL(StepRecord, slot_tokens, true, "tokens", "micro-batch B x T summed over ranks, padding included"),
    R1DIST_COL(StepRecord, real_tokens_per_s, false, "tokens/s", "real_tokens per second"),
    R1DIST_COL(StepRecord, slot_tokens_per_s, false, "tokens/s", "slot_tokens per second"),
    R1DIST_COL(StepRecord, padding_share, false, "1", "1 - real_tokens / slot_tokens (0 when packed)")};
const std::vector<Column> kEvalColumns = {
    R1DIST_COL(EvalRecord, step, true, "step", "optimizer steps completed when evaluated (0: the base model)"),
    R1DIST_COL(EvalRecord, eval_loss, false, "nats/token", "held-out loss: mean token NLL"),
    R1DIST_COL(EvalRecord, kl, false, "nats/token", "mean KL(base || tuned) per held-out token"),
    R1DIST_COL(EvalRecord, eval_tokens, true, "tokens", "held-out loss tokens")};
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
std::vector<MetricValue> values_of(const std::vector<Column>& cols, const T& r) {
  std::vector<MetricValue> out;
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

// One row of /time_split.
constexpr size_t kPartName = 32;
struct TimeRow {
  char name[kPartName];
  double seconds;
  double share;
};

Handle time_type(bool file) {
  const std::string w = "metrics time_split type";
  Handle t(R1DIST_H5(w, H5Tcreate(H5T_COMPOUND, sizeof(TimeRow))));
  auto n = h5::string_type(kPartName, H5T_STR_NULLTERM);
  const hid_t f64 = file ? H5T_IEEE_F64LE : H5T_NATIVE_DOUBLE;
  add(t, "name", offsetof(TimeRow, name), n, w);
  add(t, "seconds", offsetof(TimeRow, seconds), f64, w);
  add(t, "share", offsetof(TimeRow, share), f64, w);
  return t;
}

Handle attr_type() {
  const std::string w = "metrics attrs type";
  Handle t(R1DIST_H5(w, H5Tcreate(H5T_COMPOUND, sizeof(AttrRow))));
  auto n = h5::string_type(kAttrName, H5T_STR_NULLTERM), v = h5::string_type(kAttrValue, H5T_STR_NULLTERM);
  add(t, "name", offsetof(AttrRow, name), n, w);
  add(t, "value", offsetof(AttrRow, value), v, w);
  return t;
}

Handle counter_type(bool file) {
  const std::string w = "metrics counters type";
  Handle t(R1DIST_H5(w, H5Tcreate(H5T_COMPOUND, sizeof(CounterRow))));
  auto n = h5::string_type(kAttrName, H5T_STR_NULLTERM);
  add(t, "name", offsetof(CounterRow, name), n, w);
  add(t, "value", offsetof(CounterRow, value), file ? H5T_STD_I64LE : H5T_NATIVE_INT64, w);
  return t;
}

// The unit and description of every field of a table's compound type, from
// metrics_columns(), as attributes `units` and `descriptions` of the table (field order).
void describe_columns(hid_t d, const std::string& table, const std::string& where) {
  const std::string w = where + " dataset /" + table;
  Handle t(R1DIST_H5(w, H5Dget_type(d)));
  const int n = R1DIST_H5(w, H5Tget_nmembers(t));
  std::vector<std::string> units, descriptions;
  for (int i = 0; i < n; ++i) {
    char* name = H5Tget_member_name(t, unsigned(i));
    const std::string field = name ? name : "";
    H5free_memory(name);
    const MetricsColumn* c = nullptr;
    for (const auto& x : metrics_columns())
      if (x.table == table && x.name == field) c = &x;
    if (!c) throw Error(w + ": column '" + field + "' has no entry in metrics_columns()");
    units.push_back(c->unit);
    descriptions.push_back(c->description);
  }
  h5::write_string_array_attr(d, "units", units, w);
  h5::write_string_array_attr(d, "descriptions", descriptions, w);
}

// The columns as the file describes them (format 2).
void read_columns(hid_t f, const std::string& table, std::vector<MetricsColumn>& out, const std::string& where) {
  const std::string w = where + ": dataset /" + table;
  Handle d(R1DIST_H5(w, H5Dopen2(f, table.c_str(), H5P_DEFAULT)));
  Handle t(R1DIST_H5(w, H5Dget_type(d)));
  const auto units = h5::read_string_array_attr(d, "units", w);
  const auto descriptions = h5::read_string_array_attr(d, "descriptions", w);
  const int n = R1DIST_H5(w, H5Tget_nmembers(t));
  if (units.size() != size_t(n) || descriptions.size() != size_t(n))
    throw Error(w + ": " + std::to_string(n) + " columns but " + std::to_string(units.size()) + " units and " +
                std::to_string(descriptions.size()) + " descriptions\nHINT: the file was changed by another "
                "program: give the table's attributes `units` and `descriptions` one entry per column");
  for (int i = 0; i < n; ++i) {
    char* name = H5Tget_member_name(t, unsigned(i));
    out.push_back({table, name ? name : "", units[size_t(i)], descriptions[size_t(i)]});
    H5free_memory(name);
  }
}

// Format 1 stored integers as decimal text in /attrs.
bool is_integer_text(const std::string& v) {
  size_t i = !v.empty() && v[0] == '-' ? 1 : 0;
  if (i >= v.size() || v.size() - i > 18) return false;
  for (; i < v.size(); ++i)
    if (v[i] < '0' || v[i] > '9') return false;
  return true;
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

const std::vector<MetricsColumn>& metrics_columns() {
  static const std::vector<MetricsColumn> table = [] {
    std::vector<MetricsColumn> t;
    for (const auto& c : kStepColumns) t.push_back({"steps", c.name, c.unit, c.description});
    for (const auto& c : kEvalColumns) t.push_back({"evals", c.name, c.unit, c.description});
    return t;
  }();
  return table;
}

std::vector<MetricValue> metric_values(const StepRecord& r) { return values_of(kStepColumns, r); }
std::vector<MetricValue> metric_values(const EvalRecord& r) { return values_of(kEvalColumns, r); }

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
  if (h5::has_attr(f, "format")) {
    const std::string format = h5::read_string_attr(f, "format", where);
    if (format != kFormat)
      throw Error(where + ": attribute 'format' is '" + format + "', expected '" + kFormat +
                  "'\nHINT: this is not a metrics file of an r1dist run (RUN_DIR/metrics.h5)");
    m.format_version = h5::read_int_attr(f, "format_version", where);
    if (m.format_version < 2 || m.format_version > kMetricsFormatVersion)
      throw Error(where + ": attribute 'format_version' is " + std::to_string(m.format_version) +
                  "; this build reads metrics format 1 to " + std::to_string(kMetricsFormatVersion) +
                  "\nHINT: read it with the r1dist version that wrote it, or a newer one");
    m.r1dist_version = h5::read_string_attr(f, "r1dist_version", where);
    m.created = h5::read_string_attr(f, "created", where);
    m.config_toml = h5::read_string_dataset(f, "config", where);
    read_columns(f, "steps", m.columns, where);
    read_columns(f, "evals", m.columns, where);
  }
  auto st = step_type(false), et = eval_type(false), at = attr_type(), ct = counter_type(false);
  m.steps = read_table<StepRecord>(f, "steps", st, swmr, where);
  m.evals = read_table<EvalRecord>(f, "evals", et, swmr, where);
  for (const auto& r : read_table<AttrRow>(f, "attrs", at, swmr, where)) {
    const std::string k = field(r.name, kAttrName), v = field(r.value, kAttrValue);
    if (m.format_version == 1 && is_integer_text(v))
      m.counters[k] = std::stoll(v);
    else
      m.attrs[k] = v;
  }
  if (m.format_version >= 2)
    for (const auto& r : read_table<CounterRow>(f, "counters", ct, swmr, where))
      m.counters[field(r.name, kAttrName)] = r.value;
  if (H5Lexists(f, "time_split", H5P_DEFAULT) > 0) {
    auto tt = time_type(false);
    for (const auto& r : read_table<TimeRow>(f, "time_split", tt, false, where))
      m.time_split.push_back({field(r.name, kPartName), r.seconds, r.share});
  }
  return m;
}

void write_time_split(const std::string& path, const std::vector<TimePart>& parts) {
  h5::quiet();
  const std::string where = "metrics " + path;
  std::vector<TimeRow> rows(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].name.empty() || parts[i].name.size() >= kPartName)
      throw Error(where + ": time part '" + parts[i].name + "' does not fit /time_split (name 1.." +
                  std::to_string(kPartName - 1) + " bytes)");
    std::memset(rows[i].name, 0, kPartName);
    std::memcpy(rows[i].name, parts[i].name.data(), parts[i].name.size());
    rows[i].seconds = parts[i].seconds;
    rows[i].share = parts[i].share;
  }
  // Edited in memory and written atomically (h5_util.h), as the /eval group is: the file on
  // disk is the old one or the new one.
  Handle f = h5::open_in_memory(read_file(path), path, where);
  {
    const std::string w = where + " dataset /time_split";
    if (H5Lexists(f, "time_split", H5P_DEFAULT) > 0) R1DIST_H5(w, H5Ldelete(f, "time_split", H5P_DEFAULT));
    const hsize_t n[1] = {rows.size()};
    Handle space(R1DIST_H5(w, H5Screate_simple(1, n, nullptr)));
    Handle ft = time_type(true), mt = time_type(false);
    Handle d(R1DIST_H5(w, H5Dcreate2(f, "time_split", ft, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
    if (!rows.empty()) R1DIST_H5(w, H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()));
    h5::write_attr(d, "description",
                   std::string("wall time of the last r1dist train process of this run, by part (seconds; share "
                               "of the total, 0..1); a resumed run's covers only the process that resumed it"),
                   w);
    d.close(w);
  }
  h5::write_image(f, path, where);
}

struct MetricsWriter::Impl {
  std::string path, where;
  Handle file, steps, evals, attrs, counters;
  Handle step_mt = step_type(false), eval_mt = eval_type(false), attr_t = attr_type(),
         counter_mt = counter_type(false);
  hsize_t n_steps = 0, n_evals = 0, n_attrs = 0, n_counters = 0;
  std::vector<EvalRecord> eval_rows;
  std::map<std::string, hsize_t> attr_row, counter_row;

  void flush(hid_t d) {
    R1DIST_H5(where, H5Dflush(d));
    R1DIST_H5(where, H5Fflush(file, H5F_SCOPE_LOCAL));
  }
};

// Both a new run and a resumed one write a fresh file (PATH.tmp, then renamed over PATH)
// holding the rows kept: a writer killed in SWMR mode leaves its "open for writing" flags
// in the superblock, which only SWMR readers (or h5clear) get past, so the old file is read
// the way a reader would and never reopened for writing.
MetricsWriter::MetricsWriter(const std::string& path, bool resume, int64_t resume_step, const std::string& config_toml)
    : impl_(new Impl) {
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
      kept.counters = std::move(old.counters);
      log::info("metrics: resuming ", path, " at step ", resume_step, ": kept ", kept.steps.size(), " of ",
                old.steps.size(), " step rows and ", kept.evals.size(), " of ", old.evals.size(), " eval rows");
    }
    const std::string tmp = path + ".tmp";
    Handle fapl(R1DIST_H5(m.where, H5Pcreate(H5P_FILE_ACCESS)));
    // SWMR needs the 1.10 file format.
    R1DIST_H5(m.where, H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST));
    m.file = Handle(R1DIST_H5(m.where, H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl)));
    h5::write_attr(m.file, "format", std::string(kFormat), m.where);
    h5::write_attr(m.file, "format_version", kMetricsFormatVersion, m.where);
    h5::write_attr(m.file, "r1dist_version", std::string(R1DIST_VERSION), m.where);
    h5::write_attr(m.file, "created", h5::iso8601_now(), m.where);
    h5::write_string_dataset(m.file, "config", config_toml, m.where);
    create_table(m.file, "steps", step_type(true), 256, m.where);
    create_table(m.file, "evals", eval_type(true), 64, m.where);
    create_table(m.file, "counters", counter_type(true), 16, m.where);
    create_table(m.file, "attrs", m.attr_t, 16, m.where);
    for (const char* table : {"steps", "evals"}) {
      Handle d(R1DIST_H5(m.where, H5Dopen2(m.file, table, H5P_DEFAULT)));
      describe_columns(d, table, m.where);
      d.close(m.where);
    }
    // Every object is closed before SWMR starts (1.10 refuses some open objects) and
    // reopened after.
    R1DIST_H5(m.where, H5Fstart_swmr_write(m.file));
    m.steps = Handle(R1DIST_H5(m.where, H5Dopen2(m.file, "steps", H5P_DEFAULT)));
    m.evals = Handle(R1DIST_H5(m.where, H5Dopen2(m.file, "evals", H5P_DEFAULT)));
    m.attrs = Handle(R1DIST_H5(m.where, H5Dopen2(m.file, "attrs", H5P_DEFAULT)));
    m.counters = Handle(R1DIST_H5(m.where, H5Dopen2(m.file, "counters", H5P_DEFAULT)));
    write_rows(m.steps, m.step_mt, 0, kept.steps.size(), kept.steps.data(), m.where);
    write_rows(m.evals, m.eval_mt, 0, kept.evals.size(), kept.evals.data(), m.where);
    m.n_steps = kept.steps.size();
    m.n_evals = kept.evals.size();
    m.eval_rows = kept.evals;
    for (const auto& [k, v] : kept.attrs) set_attr(k, v);
    for (const auto& [k, v] : kept.counters) set_counter(k, v);
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
    impl_->counters.close(impl_->where);
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
  m.eval_rows.push_back(r);
  m.flush(m.evals);
}

const std::vector<EvalRecord>& MetricsWriter::evals() const { return impl_->eval_rows; }

void MetricsWriter::set_counter(const std::string& name, int64_t value) {
  auto& m = *impl_;
  if (name.empty() || name.size() >= kAttrName)
    throw Error(m.where + ": counter '" + name + "' does not fit /counters (name 1.." + std::to_string(kAttrName - 1) +
                " bytes)\nHINT: use a shorter name");
  CounterRow row{};
  std::memcpy(row.name, name.data(), name.size());
  row.value = value;
  auto it = m.counter_row.find(name);
  const hsize_t at = it != m.counter_row.end() ? it->second : m.n_counters;
  write_rows(m.counters, m.counter_mt, at, 1, &row, m.where + " /counters");
  if (it == m.counter_row.end()) m.counter_row[name] = m.n_counters++;
  m.flush(m.counters);
}

void MetricsWriter::set_attr(const std::string& name, const std::string& value) {
  auto& m = *impl_;
  if (name.empty() || name.size() >= kAttrName || value.size() >= kAttrValue)
    throw Error(m.where + ": attribute '" + name + "' = '" + value + "' does not fit /attrs (name 1.." +
                std::to_string(kAttrName - 1) + " bytes, value up to " + std::to_string(kAttrValue - 1) +
                ")\nHINT: shorten the name or the text");
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
