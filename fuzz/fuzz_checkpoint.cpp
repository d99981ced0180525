// The HDF5 checkpoint reader (formats/checkpoint.h), structure-aware: a valid checkpoint of
// a small state drawn from the input is written, then edited through the HDF5 API as the
// input says (links and attributes deleted or replaced with other types and values,
// datasets replaced with other shapes and types, stored data overwritten), then read back.
// Edits go through HDF5 so that the HDF5 library's own parsing of damaged file structure,
// which is not r1dist's code, stays out of the target; checksums cover raw damage.
#include <fuzzer/FuzzedDataProvider.h>
#include <hdf5.h>

#include <string>
#include <vector>

#include "fuzz_input.h"
#include "r1dist/formats/checkpoint.h"

namespace {

const char* kRootAttrs[] = {"format", "format_version", "r1dist_version", "created", "step", "rows_consumed",
                            "global_batch", "world_size", "adam_step", "lr", "schedule", "model_path", "model_hash",
                            "has_best", "best_eval_loss", "state_crc32"};

r1dist::CheckpointState small_state(FuzzedDataProvider& in) {
  r1dist::CheckpointState s;
  s.step = in.ConsumeIntegralInRange<int64_t>(0, 100);
  s.rows_consumed = in.ConsumeIntegral<int64_t>();
  s.global_batch = in.ConsumeIntegralInRange<int64_t>(1, 64);
  s.world_size = in.ConsumeIntegralInRange<int>(1, 3);
  s.config_toml = in.ConsumeRandomLengthString(64);
  s.version = "0.1.0";
  const int n = in.ConsumeIntegralInRange<int>(0, 3);
  int64_t total = 0;
  for (int i = 0; i < n; ++i) {
    r1dist::NamedArray a;
    a.name = "t" + std::to_string(i);
    a.shape = {in.ConsumeIntegralInRange<int64_t>(0, 4), in.ConsumeIntegralInRange<int64_t>(1, 4)};
    a.data.assign(size_t(a.shape[0] * a.shape[1]), in.ConsumeFloatingPoint<float>());
    total += a.shape[0] * a.shape[1];
    s.adapters.push_back(a);
  }
  s.adam_m.assign(size_t(total), 0.5f);
  s.adam_v.assign(size_t(total), 0.25f);
  for (int r = 0; r < s.world_size; ++r) s.rng_states.push_back(in.ConsumeRandomLengthString(16));
  s.extra["k"] = in.ConsumeRandomLengthString(16);
  return s;
}

std::string some_path(FuzzedDataProvider& in, const r1dist::CheckpointState& s) {
  switch (in.ConsumeIntegralInRange<int>(0, 6)) {
    case 0: return "/config";
    case 1: return "/optimizer/exp_avg";
    case 2: return "/optimizer/exp_avg_sq";
    case 3: return "/rng/rank_" + std::to_string(in.ConsumeIntegralInRange<int>(0, 3));
    case 4: return s.adapters.empty() ? "/adapters" : "/adapters/" + s.adapters[in.ConsumeIntegralInRange<size_t>(0, s.adapters.size() - 1)].name;
    case 5: return std::string("/") + (in.ConsumeBool() ? "adapters" : in.ConsumeBool() ? "rng" : "extra");
    default: return "/optimizer";
  }
}

void set_attr(hid_t obj, const char* name, FuzzedDataProvider& in) {
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  const hid_t sp = H5Screate(H5S_SCALAR);
  const int kind = in.ConsumeIntegralInRange<int>(0, 2);
  if (kind == 0) {
    const int64_t v = in.ConsumeIntegral<int64_t>();
    const hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) H5Awrite(a, H5T_NATIVE_INT64, &v), H5Aclose(a);
  } else if (kind == 1) {
    const double v = in.ConsumeFloatingPoint<double>();
    const hid_t a = H5Acreate2(obj, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) H5Awrite(a, H5T_NATIVE_DOUBLE, &v), H5Aclose(a);
  } else {
    std::string v = in.ConsumeRandomLengthString(40);
    if (v.empty()) v = " ";
    const hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, v.size());
    const hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) H5Awrite(a, t, v.data()), H5Aclose(a);
    H5Tclose(t);
  }
  H5Sclose(sp);
}

void replace_dataset(hid_t f, const std::string& path, FuzzedDataProvider& in) {
  if (H5Lexists(f, path.c_str(), H5P_DEFAULT) > 0) H5Ldelete(f, path.c_str(), H5P_DEFAULT);
  const int rank = in.ConsumeIntegralInRange<int>(0, 3);
  hsize_t dims[3];
  size_t n = 1;
  for (int i = 0; i < rank; ++i) n *= (dims[i] = in.ConsumeIntegralInRange<hsize_t>(0, 5));
  const hid_t sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, nullptr);
  const bool floats = in.ConsumeBool();
  const hid_t d = H5Dcreate2(f, path.c_str(), floats ? H5T_IEEE_F32LE : H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                             H5P_DEFAULT);
  if (d >= 0) {
    std::vector<uint8_t> bytes = in.ConsumeBytes<uint8_t>(n * (floats ? 4 : 1));
    bytes.resize(n * (floats ? 4 : 1));
    if (n) H5Dwrite(d, floats ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data());
    if (in.ConsumeBool()) set_attr(d, "crc32", in);
    if (in.ConsumeBool()) set_attr(d, "name", in);
    H5Dclose(d);
  }
  H5Sclose(sp);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  FuzzedDataProvider in(data, size);
  const auto s = small_state(in);
  const std::string path = r1dist::fuzz::scratch_dir() + "/step_00000001.h5";
  r1dist::write_checkpoint(path, s);
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) std::abort();  // we just wrote it
  const int edits = in.ConsumeIntegralInRange<int>(0, 4);
  for (int e = 0; e < edits && in.remaining_bytes() > 0; ++e) {
    switch (in.ConsumeIntegralInRange<int>(0, 4)) {
      case 0: {
        const std::string p = some_path(in, s);
        if (H5Lexists(f, p.c_str(), H5P_DEFAULT) > 0) H5Ldelete(f, p.c_str(), H5P_DEFAULT);
        break;
      }
      case 1: set_attr(f, kRootAttrs[in.ConsumeIntegralInRange<size_t>(0, std::size(kRootAttrs) - 1)], in); break;
      case 2: {
        const char* a = kRootAttrs[in.ConsumeIntegralInRange<size_t>(0, std::size(kRootAttrs) - 1)];
        if (H5Aexists(f, a) > 0) H5Adelete(f, a);
        break;
      }
      case 3: replace_dataset(f, some_path(in, s), in); break;
      default: {  // overwrite a dataset's stored values in place (its crc32 attribute stays)
        const std::string p = some_path(in, s);
        if (H5Lexists(f, p.c_str(), H5P_DEFAULT) <= 0) break;
        H5O_info_t info;
        if (H5Oget_info_by_name(f, p.c_str(), &info, H5P_DEFAULT) < 0 || info.type != H5O_TYPE_DATASET) break;
        const hid_t d = H5Dopen2(f, p.c_str(), H5P_DEFAULT);
        const hsize_t bytes = H5Dget_storage_size(d);
        const hid_t t = H5Dget_type(d);
        if (H5Tget_class(t) != H5T_STRING && bytes > 0) {
          auto v = in.ConsumeBytes<uint8_t>(bytes);
          v.resize(bytes);
          const hid_t mt = H5Tget_native_type(t, H5T_DIR_DEFAULT);
          H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
          H5Tclose(mt);
        }
        H5Tclose(t);
        H5Dclose(d);
      }
    }
  }
  H5Fclose(f);
  return r1dist::fuzz::refuse_cleanly([&] {
    (void)r1dist::read_checkpoint(path);
    (void)r1dist::checkpoints_newest_first(r1dist::fuzz::scratch_dir() + "/..");
  });
}
