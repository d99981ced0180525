// HDF5 checkpoint tests: exact round trips, validation errors that name the file and the
// field, crash safety (a writer killed mid-write, by fork + SIGKILL), and a reader in another
// process (h5dump). The metrics file: test_metrics.cpp.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <sstream>
#include <thread>

#include "r1dist/base/checksum.h"
#include "r1dist/formats/checkpoint.h"
#include "r1dist/formats/checkpoint_writer.h"
#include "r1dist/base/error.h"
#include "support/process.h"
#include "support/temp.h"

namespace {

using namespace r1dist;
using r1dist::test::TempDir;

using r1dist::test::ThrowsWith;

// Random but reproducible state; names deliberately not in sorted order, values include
// the largest and smallest floats, -0 and denormals (compared bitwise).
CheckpointState make_state(uint32_t seed, int64_t scale = 1, int world = 3) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-2, 2);
  CheckpointState s;
  s.step = 1234;
  s.rows_consumed = 98765;
  s.global_batch = 64;
  s.world_size = world;
  s.config_toml = "[model]\npath = \"/models/r1-14b\"\n# unicode: héllo ✓ 深度求索 🚀\n";
  s.model_path = "/models/r1-14b";
  s.model_hash = "sha256:abc123";
  s.version = "0.1.0";
  s.adam_step = 1234;
  s.lr = 1.5e-4;
  s.schedule = "cosine";
  s.best_eval_loss = 1.25;
  s.has_best = true;
  s.extra = {{"note", "résumé"}, {"git", "df89bf8"}, {"empty", ""}};
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", {4, 24 * scale}},
      {"base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight", {24 * scale, 4}},
      {"base_model.model.model.layers.0.mlp.down_proj.lora_A.weight", {4, 40 * scale}},
      {"base_model.model.model.layers.0.mlp.down_proj.lora_B.weight", {16 * scale, 4}},
      {"base_model.model.model.layers.10.self_attn.k_proj.lora_A.weight", {4, 24 * scale}},
  };
  int64_t total = 0;
  for (const auto& [name, shape] : shapes) {
    NamedArray a{name, shape, std::vector<float>(size_t(shape[0] * shape[1]))};
    for (auto& x : a.data) x = u(gen);
    total += int64_t(a.data.size());
    s.adapters.push_back(std::move(a));
  }
  auto& d = s.adapters[0].data;
  d[0] = std::numeric_limits<float>::max();
  d[1] = -std::numeric_limits<float>::min();
  d[2] = -0.0f;
  d[3] = std::numeric_limits<float>::denorm_min();
  s.adam_m.resize(size_t(total));
  s.adam_v.resize(size_t(total));
  for (auto& x : s.adam_m) x = u(gen);
  for (auto& x : s.adam_v) x = std::abs(u(gen));
  for (int r = 0; r < world; ++r) {
    std::string bytes(size_t(100 + r * 37), '\0');
    for (auto& c : bytes) c = static_cast<char>(gen());
    bytes[5] = '\0';  // embedded NUL must survive
    s.rng_states.push_back(bytes);
  }
  return s;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

void expect_equal(const CheckpointState& a, const CheckpointState& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.rows_consumed, b.rows_consumed);
  EXPECT_EQ(a.global_batch, b.global_batch);
  EXPECT_EQ(a.world_size, b.world_size);
  EXPECT_EQ(a.config_toml, b.config_toml);
  EXPECT_EQ(a.model_path, b.model_path);
  EXPECT_EQ(a.model_hash, b.model_hash);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.adam_step, b.adam_step);
  EXPECT_EQ(a.lr, b.lr);
  EXPECT_EQ(a.schedule, b.schedule);
  EXPECT_EQ(a.best_eval_loss, b.best_eval_loss);
  EXPECT_EQ(a.has_best, b.has_best);
  EXPECT_EQ(a.extra, b.extra);
  EXPECT_EQ(a.rng_states, b.rng_states);
  ASSERT_EQ(a.adapters.size(), b.adapters.size());
  for (size_t i = 0; i < a.adapters.size(); ++i) {
    EXPECT_EQ(a.adapters[i].name, b.adapters[i].name) << "adapter " << i;
    EXPECT_EQ(a.adapters[i].shape, b.adapters[i].shape) << a.adapters[i].name;
    EXPECT_TRUE(same_bits(a.adapters[i].data, b.adapters[i].data)) << a.adapters[i].name;
  }
  EXPECT_TRUE(same_bits(a.adam_m, b.adam_m));
  EXPECT_TRUE(same_bits(a.adam_v, b.adam_v));
}

// Edits a written file with the HDF5 C API (the way a damaged or foreign file would look).
template <class F>
void edit(const std::string& path, F fn) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0) << path;
  fn(f);
  ASSERT_GE(H5Fclose(f), 0);
}

void replace_float_dataset(hid_t f, const char* path, hsize_t n) {
  ASSERT_GE(H5Ldelete(f, path, H5P_DEFAULT), 0);
  const hid_t sp = H5Screate_simple(1, &n, nullptr);
  const hid_t d = H5Dcreate2(f, path, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(d, 0);
  std::vector<float> zeros(n);
  ASSERT_GE(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros.data()), 0);
  H5Dclose(d);
  H5Sclose(sp);
}

void set_string_attr(hid_t obj, const char* name, const std::string& value) {
  H5Adelete(obj, name);
  const hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, value.size());
  const hid_t sp = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(a, 0);
  ASSERT_GE(H5Awrite(a, t, value.data()), 0);
  H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
}

off_t file_size(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

bool exists(const std::string& path) { return file_size(path) >= 0; }

void cut(const std::string& from, const std::string& to, double fraction) {
  const std::string bytes = r1dist::test::read_text(from);
  r1dist::test::write_text(to, bytes.substr(0, size_t(double(bytes.size()) * fraction)));
}

using r1dist::test::on_path;


TEST(Checkpoint, RoundTripIsBitwiseExactInWriteOrder) {
  TempDir dir;
  const auto s = make_state(1);
  const std::string path = dir / "c.h5";
  write_checkpoint(path, s);
  EXPECT_FALSE(exists(path + ".tmp"));
  const auto back = read_checkpoint(path);
  expect_equal(s, back);
  // Written order, not name order: layers.1 comes before layers.0.
  EXPECT_EQ(back.adapters[0].name, "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
  std::string why;
  EXPECT_TRUE(checkpoint_is_valid(path, &why)) << why;

  // Overwriting an existing checkpoint replaces it whole.
  auto s2 = make_state(2, 1, 1);
  s2.has_best = false;
  s2.best_eval_loss = 0;
  s2.extra.clear();
  s2.config_toml.clear();
  write_checkpoint(path, s2);
  expect_equal(s2, read_checkpoint(path));
}

// The rows of /optimizer/layout as stored (name, offset, length), read with the file's own
// packed type; `edit` may change them before they are written back.
std::vector<MomentSlice> stored_layout(const std::string& path, void (*edit)(std::vector<MomentSlice>&) = nullptr) {
  const hid_t f = H5Fopen(path.c_str(), edit ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t d = H5Dopen2(f, "/optimizer/layout", H5P_DEFAULT);
  const hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
  const size_t row = H5Tget_size(t), name_bytes = row - 16;
  const auto n = size_t(H5Sget_simple_extent_npoints(sp));
  std::vector<char> buf(row * n);
  EXPECT_GE(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), 0);
  std::vector<MomentSlice> out;
  for (size_t i = 0; i < n; ++i) {
    MomentSlice x;
    x.name.assign(&buf[i * row], strnlen(&buf[i * row], name_bytes));
    std::memcpy(&x.offset, &buf[i * row + name_bytes], 8);
    std::memcpy(&x.length, &buf[i * row + name_bytes + 8], 8);
    out.push_back(x);
  }
  if (edit) {
    edit(out);
    for (size_t i = 0; i < n; ++i) {
      std::memcpy(&buf[i * row + name_bytes], &out[i].offset, 8);
      std::memcpy(&buf[i * row + name_bytes + 8], &out[i].length, 8);
    }
    EXPECT_GE(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), 0);
  }
  H5Sclose(sp);
  H5Tclose(t);
  H5Dclose(d);
  H5Fclose(f);
  return out;
}

// Format 3: /optimizer/layout says which values of the flat moments belong to which adapter
// tensor; a layout that disagrees with /adapters is refused naming the row; a format-2
// file (no layout) still reads.
TEST(Checkpoint, MomentLayoutMapsTheFlatMomentsToAdapterNames) {
  TempDir dir;
  const auto s = make_state(1);
  const std::string path = dir / "c.h5";
  write_checkpoint(path, s);
  const auto layout = stored_layout(path);
  ASSERT_EQ(layout.size(), s.adapters.size());
  int64_t at = 0;
  for (size_t i = 0; i < layout.size(); ++i) {
    EXPECT_EQ(layout[i].name, s.adapters[i].name);
    EXPECT_EQ(layout[i].offset, at);
    EXPECT_EQ(layout[i].length, int64_t(s.adapters[i].data.size()));
    at += layout[i].length;
  }
  EXPECT_EQ(at, int64_t(s.adam_m.size()));
  // A moment value found through the layout is that tensor's.
  const auto back = read_checkpoint(path);
  EXPECT_EQ(back.adam_v[size_t(layout[2].offset)], s.adam_v[size_t(moment_layout(s.adapters)[2].offset)]);

  stored_layout(path, [](std::vector<MomentSlice>& rows) { rows[1].offset += 1; });
  EXPECT_TRUE(ThrowsWith([&] { read_checkpoint(path); }, {path, "/optimizer/layout row 1", s.adapters[1].name, "HINT"}));

  write_checkpoint(path, s);
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(H5Ldelete(f, "/optimizer/layout", H5P_DEFAULT), 0);
  const hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
  const int64_t two = 2;
  H5Awrite(a, H5T_NATIVE_INT64, &two);
  H5Aclose(a);
  H5Fclose(f);
  expect_equal(s, read_checkpoint(path));
}

TEST(Checkpoint, PathHasEightDigitSteps) {
  EXPECT_EQ(checkpoint_path("/runs/a", 42), "/runs/a/checkpoints/step_00000042.h5");
  EXPECT_EQ(checkpoint_path("r", 123456789), "r/checkpoints/step_123456789.h5");
}

TEST(Checkpoint, WriteRejectsInconsistentState) {
  TempDir dir;
  const std::string path = dir / "c.h5";
  auto s = make_state(3);
  s.adapters[1].data.pop_back();
  EXPECT_TRUE(ThrowsWith([&] { write_checkpoint(path, s); }, {path, s.adapters[1].name, "shape"}));
  s = make_state(3);
  s.adam_v.pop_back();
  EXPECT_TRUE(ThrowsWith([&] { write_checkpoint(path, s); }, {path, "exp_avg_sq"}));
  s = make_state(3);
  s.rng_states.pop_back();
  EXPECT_TRUE(ThrowsWith([&] { write_checkpoint(path, s); }, {path, "rng", "world_size"}));
  s = make_state(3);
  s.adapters[0].name = "a/b";
  EXPECT_TRUE(ThrowsWith([&] { write_checkpoint(path, s); }, {path, "a/b"}));
  EXPECT_FALSE(exists(path));
  EXPECT_FALSE(exists(path + ".tmp"));
}

TEST(Checkpoint, WriteErrorNamesTheFile) {
  TempDir dir;
  const std::string path = dir / "no_such_dir/c.h5";
  EXPECT_TRUE(ThrowsWith([&] { write_checkpoint(path, make_state(4)); }, {path + ".tmp", "No such file or directory"}));
}

// A NaN adapter (an AdamW epsilon that underflowed fp32 once wrote one) is neither written
// nor read back, even with a matching checksum: an intact but unusable checkpoint.
TEST(Checkpoint, NonFiniteValuesAreRefusedOnWriteAndRead) {
  TempDir dir;
  const std::string path = dir / "c.h5";
  auto s = make_state(5);
  s.adapters[1].data[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(ThrowsWith([&] { write_checkpoint(path, s); }, {path, s.adapters[1].name, "non-finite"}));
  EXPECT_FALSE(exists(path));
  s = make_state(5);
  write_checkpoint(path, s);
  // NaN into the stored data of exp_avg, with its CRC-32 updated to match.
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0);
  const hid_t d = H5Dopen2(f, "/optimizer/exp_avg", H5P_DEFAULT);
  auto m = s.adam_m;
  m[7] = std::numeric_limits<float>::infinity();
  ASSERT_GE(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data()), 0);
  const int64_t crc = crc32(m.data(), m.size() * 4);
  const hid_t a = H5Aopen(d, "crc32", H5P_DEFAULT);
  ASSERT_GE(H5Awrite(a, H5T_NATIVE_INT64, &crc), 0);
  H5Aclose(a);
  H5Dclose(d);
  H5Fclose(f);
  EXPECT_TRUE(ThrowsWith([&] { read_checkpoint(path); }, {path, "/optimizer/exp_avg", "non-finite value (inf at index 7)"}));
}

TEST(Checkpoint, ValidationNamesFileAndField) {
  TempDir dir;
  const auto s = make_state(5);
  const std::string good = dir / "good.h5";
  write_checkpoint(good, s);
  int k = 0;
  // Each case: an edit of a good file, and what the error must mention.
  auto check_case = [&](auto fn, std::initializer_list<std::string> parts) {
    const std::string path = dir / ("bad" + std::to_string(k++) + ".h5");
    write_checkpoint(path, s);
    edit(path, fn);
    std::vector<std::string> all(parts);
    all.push_back(path);
    std::string why;
    EXPECT_FALSE(checkpoint_is_valid(path, &why));
    for (const auto& p : all) EXPECT_NE(why.find(p), std::string::npos) << "lacks '" << p << "': " << why;
  };
  check_case([](hid_t f) { H5Ldelete(f, "/optimizer/exp_avg", H5P_DEFAULT); }, {"/optimizer/exp_avg", "missing"});
  check_case([](hid_t f) { replace_float_dataset(f, "/optimizer/exp_avg_sq", 7); }, {"/optimizer/exp_avg_sq", "[7]"});
  check_case([](hid_t f) { H5Ldelete(f, "/config", H5P_DEFAULT); }, {"config", "missing"});
  check_case([](hid_t f) { H5Adelete(f, "rows_consumed"); }, {"rows_consumed", "missing"});
  check_case([](hid_t f) { set_string_attr(f, "format", "safetensors"); }, {"format", "safetensors"});
  check_case([](hid_t f) { set_string_attr(f, "step", "twelve"); }, {"step", "integer"});
  check_case([](hid_t f) { H5Ldelete(f, "/rng/rank_2", H5P_DEFAULT); }, {"/rng", "world_size 3"});
  check_case(
      [&](hid_t f) {
        // An adapter one row short: the optimizer no longer matches the adapter total.
        const std::string name = "/adapters/" + s.adapters[2].name;
        ASSERT_GE(H5Ldelete(f, name.c_str(), H5P_DEFAULT), 0);
        const hsize_t dims[2] = {3, 40};
        const hid_t sp = H5Screate_simple(2, dims, nullptr);
        const hid_t d = H5Dcreate2(f, name.c_str(), H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        set_string_attr(d, "name", s.adapters[2].name);
        H5Dclose(d);
        H5Sclose(sp);
      },
      {"/optimizer/exp_avg", "adapters hold"});
  check_case([&](hid_t f) { H5Adelete_by_name(f, ("/adapters/" + s.adapters[0].name).c_str(), "name", H5P_DEFAULT); },
             {s.adapters[0].name, "'name'"});
  check_case(
      [](hid_t f) {
        const hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
        const int64_t v = 4;
        H5Awrite(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a);
      },
      {"format_version", "4"});
  check_case([](hid_t f) { H5Ldelete(f, "/optimizer/layout", H5P_DEFAULT); }, {"/optimizer/layout", "missing"});
  // The good file is untouched by all this.
  expect_equal(s, read_checkpoint(good));
}

// Format 2: a changed byte anywhere in any tensor's data (every dataset, one at a time) is
// reported naming that dataset; so is a changed value of the state outside the datasets.
TEST(Checkpoint, AFlippedByteInAnyTensorOrTheStateIsDetected) {
  TempDir dir;
  const auto s = make_state(5);
  const std::string good = dir / "good.h5";
  write_checkpoint(good, s);
  std::vector<std::string> datasets = {"/optimizer/exp_avg", "/optimizer/exp_avg_sq"};
  for (const auto& a : s.adapters) datasets.push_back("/adapters/" + a.name);
  for (int r = 0; r < s.world_size; ++r) datasets.push_back("/rng/rank_" + std::to_string(r));
  const std::string bytes = test::read_text(good);
  uint64_t lcg = 12345;
  for (const auto& name : datasets) {
    SCOPED_TRACE(name);
    const hid_t f = H5Fopen(good.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    const hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
    const haddr_t offset = H5Dget_offset(d);
    const hsize_t size = H5Dget_storage_size(d);
    H5Dclose(d);
    H5Fclose(f);
    ASSERT_NE(offset, HADDR_UNDEF);
    ASSERT_GT(size, 0u);
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    std::string bad = bytes;
    bad[size_t(offset + (lcg >> 33) % size)] ^= char(0x08);  // one bit of one byte
    const std::string path = dir / "bad.h5";
    test::write_text(path, bad);
    std::string why;
    EXPECT_FALSE(checkpoint_is_valid(path, &why));
    EXPECT_NE(why.find(name + " is damaged"), std::string::npos) << why;
  }
  // The state: a different learning rate written through HDF5 (a valid file, wrong content).
  const std::string path = dir / "bad_state.h5";
  write_checkpoint(path, s);
  edit(path, [](hid_t f) {
    const hid_t a = H5Aopen(f, "lr", H5P_DEFAULT);
    const double v = 0.5;
    H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
  });
  std::string why;
  EXPECT_FALSE(checkpoint_is_valid(path, &why));
  EXPECT_NE(why.find("state"), std::string::npos) << why;
  EXPECT_NE(why.find("damaged"), std::string::npos) << why;
  expect_equal(s, read_checkpoint(good));
}

TEST(Checkpoint, TruncatedAndForeignFilesAreInvalid) {
  TempDir dir;
  const std::string good = dir / "good.h5";
  write_checkpoint(good, make_state(6));
  for (double fraction : {0.5, 0.9, 0.999, 0.01, 0.0}) {
    const std::string path = dir / "cut.h5";
    cut(good, path, fraction);
    std::string why;
    EXPECT_FALSE(checkpoint_is_valid(path, &why)) << fraction;
    EXPECT_NE(why.find(path), std::string::npos) << why;
    EXPECT_TRUE(ThrowsWith([&] { read_checkpoint(path); }, {path})) << fraction;
  }
  r1dist::test::write_text(dir / "text.h5", "not an HDF5 file at all\n");
  EXPECT_TRUE(ThrowsWith([&] { read_checkpoint(dir / "text.h5"); }, {dir / "text.h5", "HDF5"}));
  EXPECT_TRUE(ThrowsWith([&] { read_checkpoint(dir / "missing.h5"); }, {dir / "missing.h5", "No such file"}));
}

TEST(Checkpoint, FindLatestSkipsInvalidAndRotateKeepsNewestAndProtected) {
  TempDir run;
  EXPECT_EQ(find_latest_checkpoint(run.path), "");  // no checkpoints directory at all
  ASSERT_EQ(::mkdir((run / "checkpoints").c_str(), 0755), 0);
  for (int64_t step : {10, 20, 30, 40}) {
    auto s = make_state(uint32_t(step));
    s.step = step;
    write_checkpoint(checkpoint_path(run.path, step), s);
  }
  // Newest two are damaged: a cut copy and garbage; plus a stray .tmp and an unrelated file.
  cut(checkpoint_path(run.path, 40), checkpoint_path(run.path, 50), 0.5);
  r1dist::test::write_text(checkpoint_path(run.path, 60), "garbage");
  r1dist::test::write_text(checkpoint_path(run.path, 70) + ".tmp", "half a checkpoint");
  r1dist::test::write_text(run / "checkpoints/notes.txt", "keep me");

  EXPECT_EQ(find_latest_checkpoint(run.path), checkpoint_path(run.path, 40));

  rotate_checkpoints(run.path, 2, checkpoint_path(run.path, 10));
  EXPECT_TRUE(exists(checkpoint_path(run.path, 40)));
  EXPECT_TRUE(exists(checkpoint_path(run.path, 30)));
  EXPECT_FALSE(exists(checkpoint_path(run.path, 20)));
  EXPECT_TRUE(exists(checkpoint_path(run.path, 10)));  // protected (the best one)
  EXPECT_FALSE(exists(checkpoint_path(run.path, 50)));
  EXPECT_FALSE(exists(checkpoint_path(run.path, 60)));
  EXPECT_FALSE(exists(checkpoint_path(run.path, 70) + ".tmp"));
  EXPECT_TRUE(exists(run / "checkpoints/notes.txt"));
  EXPECT_EQ(find_latest_checkpoint(run.path), checkpoint_path(run.path, 40));

  rotate_checkpoints(run.path, 1);
  EXPECT_TRUE(exists(checkpoint_path(run.path, 40)));
  EXPECT_FALSE(exists(checkpoint_path(run.path, 30)));
  EXPECT_FALSE(exists(checkpoint_path(run.path, 10)));
}

TEST(Checkpoint, WriterKilledMidWriteLeavesThePreviousCheckpoint) {
  TempDir run;
  ASSERT_EQ(::mkdir((run / "checkpoints").c_str(), 0755), 0);
  const auto old = make_state(7);
  write_checkpoint(checkpoint_path(run.path, 1), old);
  // ~2.4 M values (29 MB with the optimizer); the child is killed once half of the file is
  // in the temporary (the write hook), and again after the write but before the rename.
  auto big = make_state(8, 6000, 1);
  big.step = 2;
  const std::string target = checkpoint_path(run.path, 2), tmp = target + ".tmp";
  for (const bool mid_write : {true, false}) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      if (mid_write) set_checkpoint_write_hook([](const char*) { ::raise(SIGKILL); });
      else ::setenv("R1DIST_FAULT_ATOMIC", "step_00000002.h5", 1);
      try {
        write_checkpoint(target, big);
      } catch (...) {
      }
      ::_exit(3);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    EXPECT_TRUE(exists(tmp)) << "the kill landed before the rename";
    EXPECT_GE(file_size(tmp), off_t(mid_write ? 1 : 20) << 20);
    // Every final name holds a complete checkpoint: the new one never got its name.
    EXPECT_FALSE(exists(target));
    EXPECT_EQ(find_latest_checkpoint(run.path), checkpoint_path(run.path, 1));
  }
  expect_equal(old, read_checkpoint(checkpoint_path(run.path, 1)));
  rotate_checkpoints(run.path, 5);
  EXPECT_FALSE(exists(tmp));
  EXPECT_TRUE(exists(checkpoint_path(run.path, 1)));
}

// The background writer (formats/checkpoint_writer.h). A write is held inside the write
// hook (the temporary file half written) for as long as a test needs: no sleeps, no timing.
struct HeldWrite {
  static inline std::mutex mu;
  static inline std::condition_variable cv;
  static inline bool reached = false, released = false, hold_next = false;
  static inline int calls = 0;
  static inline std::string must_exist;        // a later write's hook checks that this file is complete
  static inline bool existed_at_later_call = false;
  static inline std::thread::id thread;

  static void reset(bool hold) {
    std::lock_guard<std::mutex> g(mu);
    reached = released = false;
    hold_next = hold;
    calls = 0;
    must_exist.clear();
    existed_at_later_call = false;
  }
  static void hook(const char*) {
    std::unique_lock<std::mutex> g(mu);
    thread = std::this_thread::get_id();
    if (++calls > 1 && !must_exist.empty()) existed_at_later_call = checkpoint_is_valid(must_exist);
    if (!hold_next) return;
    hold_next = false;
    reached = true;
    cv.notify_all();
    cv.wait(g, [] { return released; });
  }
  static void wait_until_reached() {
    std::unique_lock<std::mutex> g(mu);
    cv.wait(g, [] { return reached; });
  }
  static void release() {
    std::lock_guard<std::mutex> g(mu);
    released = true;
    cv.notify_all();
  }
};

struct WriteHookGuard {
  WriteHookGuard() { set_checkpoint_write_hook(HeldWrite::hook); }
  ~WriteHookGuard() { set_checkpoint_write_hook(nullptr); }
};

CheckpointJob job_of(const std::string& run_dir, int64_t step, int64_t keep = 10, const std::string& protect = "") {
  auto s = make_state(uint32_t(step));
  s.step = step;
  return CheckpointJob{checkpoint_path(run_dir, step), std::move(s), run_dir, keep, protect};
}

TEST(CheckpointWriter, HdfFiveIsThreadSafeHereSoWritesGoToTheBackground) {
  // Debian builds libhdf5 thread-safe; the writer checks the library it runs with.
  EXPECT_TRUE(hdf5_is_threadsafe());
  EXPECT_EQ(CheckpointWriter().background(), hdf5_is_threadsafe());
  EXPECT_FALSE(CheckpointWriter(false).background());
}

// While a write is in flight the checkpoint is only PATH.tmp: find_latest_checkpoint (what
// --resume auto takes) and the listing see the previous one; once wait() returns the new
// file is complete and the rotation has run.
TEST(CheckpointWriter, AnInFlightCheckpointIsNeverTakenForAComplete) {
  TempDir run;
  ASSERT_EQ(::mkdir((run / "checkpoints").c_str(), 0755), 0);
  CheckpointWriter w;
  if (!w.background()) GTEST_SKIP() << "HDF5 is not thread-safe here: the writer is synchronous";
  w.write(job_of(run.path, 1));
  w.wait();
  WriteHookGuard guard;
  HeldWrite::reset(/*hold=*/true);
  w.write(job_of(run.path, 2, /*keep=*/1));
  HeldWrite::wait_until_reached();
  EXPECT_NE(HeldWrite::thread, std::this_thread::get_id()) << "written on the writer's thread";
  EXPECT_TRUE(exists(checkpoint_path(run.path, 2) + ".tmp"));
  EXPECT_FALSE(exists(checkpoint_path(run.path, 2)));
  EXPECT_EQ(find_latest_checkpoint(run.path), checkpoint_path(run.path, 1));
  EXPECT_EQ(checkpoints_newest_first(run.path), std::vector<std::string>{checkpoint_path(run.path, 1)});
  HeldWrite::release();
  w.wait();
  EXPECT_EQ(find_latest_checkpoint(run.path), checkpoint_path(run.path, 2));
  EXPECT_FALSE(exists(checkpoint_path(run.path, 2) + ".tmp"));
  EXPECT_FALSE(exists(checkpoint_path(run.path, 1))) << "rotated (keep = 1) after the write";
  expect_equal(job_of(run.path, 2).state, read_checkpoint(checkpoint_path(run.path, 2)));
}

// At most one write in flight: a second write() waits for the first, so the second file's
// write starts only once the first file is complete.
TEST(CheckpointWriter, ANewWriteWaitsForThePreviousOne) {
  TempDir run;
  ASSERT_EQ(::mkdir((run / "checkpoints").c_str(), 0755), 0);
  CheckpointWriter w;
  if (!w.background()) GTEST_SKIP() << "HDF5 is not thread-safe here: the writer is synchronous";
  WriteHookGuard guard;
  HeldWrite::reset(/*hold=*/true);
  HeldWrite::must_exist = checkpoint_path(run.path, 1);
  w.write(job_of(run.path, 1));
  HeldWrite::wait_until_reached();
  std::thread second([&] { w.write(job_of(run.path, 2)); });
  HeldWrite::release();
  second.join();
  w.wait();
  EXPECT_EQ(HeldWrite::calls, 2);
  EXPECT_TRUE(HeldWrite::existed_at_later_call) << "the second write began before the first was complete";
  EXPECT_TRUE(checkpoint_is_valid(checkpoint_path(run.path, 1)));
  EXPECT_TRUE(checkpoint_is_valid(checkpoint_path(run.path, 2)));
}

// A write that fails in the background (here: a directory that does not exist) fails the
// next wait() or write() with the very text a synchronous write gives (the file's path in
// it), once. The write() that meets it does not start its own job.
TEST(CheckpointWriter, ABackgroundWriteErrorComesBackAtTheNextWaitWithTheSameText) {
  TempDir dir;
  ASSERT_EQ(::mkdir((dir / "checkpoints").c_str(), 0755), 0);
  const std::string bad = dir / "no_such_dir/c.h5";
  auto error_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  const std::string sync_error = error_of([&] { write_checkpoint(bad, make_state(4)); });
  EXPECT_NE(sync_error.find(bad + ".tmp"), std::string::npos) << sync_error;
  const CheckpointJob failing{bad, make_state(4), dir.path, 10, ""};
  CheckpointWriter sync(false);
  EXPECT_EQ(error_of([&] { sync.write(failing); }), sync_error);
  CheckpointWriter w;
  if (!w.background()) GTEST_SKIP() << "HDF5 is not thread-safe here: the writer is synchronous";
  w.write(failing);  // returns at once; the error waits for the join
  EXPECT_EQ(error_of([&] { w.wait(); }), sync_error);
  EXPECT_NO_THROW(w.wait()) << "reported once";
  w.write(failing);
  EXPECT_EQ(error_of([&] { w.write(job_of(dir.path, 3)); }), sync_error);
  w.wait();
  EXPECT_FALSE(exists(checkpoint_path(dir.path, 3))) << "not started after the failed one";
}

// The destructor (an exception unwinding the trainer) waits for the write in flight: the
// file is complete once the writer is gone. A failure there is logged, not thrown.
TEST(CheckpointWriter, TheDestructorFinishesTheWriteInFlight) {
  TempDir run;
  ASSERT_EQ(::mkdir((run / "checkpoints").c_str(), 0755), 0);
  {
    CheckpointWriter w;
    w.write(job_of(run.path, 5));
  }
  EXPECT_TRUE(checkpoint_is_valid(checkpoint_path(run.path, 5)));
  EXPECT_FALSE(exists(checkpoint_path(run.path, 5) + ".tmp"));
  EXPECT_NO_THROW({
    CheckpointWriter w;
    w.write(CheckpointJob{run / "missing/c.h5", make_state(6), run.path, 10, ""});
  });
}

TEST(Checkpoint, H5dumpReadsIt) {
  if (!on_path("h5dump")) GTEST_SKIP() << "h5dump not installed";
  TempDir dir;
  write_checkpoint(dir / "c.h5", make_state(9));
  const auto r = test::run_command("h5dump -H " + (dir / "c.h5"));
  const std::string& out = r.out;
  EXPECT_EQ(r.code, 0) << out;
  EXPECT_NE(out.find("GROUP \"adapters\""), std::string::npos) << out;
  EXPECT_NE(out.find("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"), std::string::npos);
  EXPECT_NE(out.find("\"exp_avg_sq\""), std::string::npos);
  const auto f = test::run_command("h5dump -a format " + (dir / "c.h5"));
  EXPECT_EQ(f.code, 0) << f.out;
  EXPECT_NE(f.out.find("\"r1dist-checkpoint\""), std::string::npos) << f.out;
}

}  // namespace
