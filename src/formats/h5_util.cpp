#include "formats/h5_util.h"

#include <algorithm>
#include <ctime>
#include <cstring>
#include <vector>

#include "r1dist/base/fs.h"

namespace r1dist::h5 {

namespace {

herr_t walk_cb(unsigned n, const H5E_error2_t* e, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n > 0) *out += "; ";
  *out += std::string(e->func_name ? e->func_name : "?") + ": " + (e->desc ? e->desc : "");
  return 0;
}

// Strings are stored NUL-padded in exactly their byte length, so only trailing NULs are
// padding (an empty string is one NUL byte).
std::string trim_nul(std::string s) {
  while (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

// Reads a string from an attribute or dataset whose file type is `ftype` (fixed-length as
// we write it, or variable-length as h5py writes by default).
template <class ReadFn>
std::string read_string(hid_t ftype, hid_t space, ReadFn read, const std::string& where) {
  if (H5Tget_class(ftype) != H5T_STRING) throw Error(where + ": is not a string");
  if (H5Sget_simple_extent_npoints(space) != 1) throw Error(where + ": is not a scalar string");
  if (H5Tis_variable_str(ftype) > 0) {
    Handle mt(R1DIST_H5(where, H5Tcopy(H5T_C_S1)));
    R1DIST_H5(where, H5Tset_size(mt, H5T_VARIABLE));
    R1DIST_H5(where, H5Tset_cset(mt, H5Tget_cset(ftype)));
    char* p = nullptr;
    R1DIST_H5(where, read(mt.get(), &p));
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  const size_t n = H5Tget_size(ftype);
  if (n == 0) fail(where, "H5Tget_size");
  std::string s(n, '\0');
  R1DIST_H5(where, read(ftype, s.data()));
  return trim_nul(std::move(s));
}

}  // namespace

void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

std::string error_stack() {
  std::string out;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &out);
  H5Eclear2(H5E_DEFAULT);
  return out;
}

void fail(const std::string& where, const std::string& what) {
  const std::string stack = error_stack();
  throw Error(where + ": " + what + " failed" + (stack.empty() ? "" : " (HDF5: " + stack + ")"));
}

void Handle::reset() {
  if (id_ < 0) return;
  const hid_t id = std::exchange(id_, H5I_INVALID_HID);
  // Destructors must not throw; a failed close here is reported by close() callers instead.
  switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
  }
  H5Eclear2(H5E_DEFAULT);
}

void Handle::close(const std::string& where) {
  if (id_ < 0) return;
  const hid_t id = std::exchange(id_, H5I_INVALID_HID);
  herr_t rc = 0;
  switch (H5Iget_type(id)) {
    case H5I_FILE: rc = H5Fclose(id); break;
    case H5I_DATASET: rc = H5Dclose(id); break;
    default: id_ = id; reset(); return;
  }
  if (rc < 0) fail(where, "close");
}

// libhdf5's checksum of metadata (Jenkins' lookup3), exported by every libhdf5 since 1.8.7
// but not declared in its public headers.
extern "C" uint32_t H5_checksum_metadata(const void* data, size_t len, uint32_t initval);

namespace {

// H5Fget_file_image (libhdf5 1.10.8) clears the "open for writing" flags of a version 2/3
// superblock in the image but keeps the checksum computed with them set, so the image would
// not open. The superblock: signature (8), version, offset size O, length size, flags, four
// addresses of O bytes, the checksum of everything before it (4).
void reseal_superblock(std::vector<unsigned char>& image) {
  if (image.size() < 12 || std::memcmp(image.data(), "\x89HDF\r\n\x1a\n", 8) != 0) return;
  const unsigned version = image[8], offset_size = image[9];
  if (version < 2 || version > 3) return;
  const size_t at = 12 + 4 * size_t(offset_size);
  if (image.size() < at + 4) return;
  const uint32_t sum = H5_checksum_metadata(image.data(), at, 0);
  for (int i = 0; i < 4; ++i) image[at + size_t(i)] = static_cast<unsigned char>(sum >> (8 * i));
}

}  // namespace

Handle create_in_memory(const std::string& name, size_t size_hint, const std::string& where) {
  Handle fapl(R1DIST_H5(where, H5Pcreate(H5P_FILE_ACCESS)));
  R1DIST_H5(where, H5Pset_fapl_core(fapl, std::max<size_t>(size_hint, 1 << 16), /*backing_store=*/false));
  return Handle(R1DIST_H5(where, H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl)));
}

Handle open_in_memory(const std::string& bytes, const std::string& name, const std::string& where) {
  Handle fapl(R1DIST_H5(where, H5Pcreate(H5P_FILE_ACCESS)));
  R1DIST_H5(where, H5Pset_fapl_core(fapl, std::max<size_t>(bytes.size() / 4, 1 << 16), /*backing_store=*/false));
  R1DIST_H5(where, H5Pset_file_image(fapl, const_cast<char*>(bytes.data()), bytes.size()));
  // The library's own name for the property h5clear sets (registered with every file
  // access list since HDF5 1.10.0).
  hbool_t clear = 1;
  R1DIST_H5(where, H5Pset(fapl, "clear_status_flags", &clear));
  // With an image, the core driver wants a name that does not exist on disk.
  return Handle(R1DIST_H5(where, H5Fopen((name + " (in memory)").c_str(), H5F_ACC_RDWR, fapl)));
}

void write_image(Handle& f, const std::string& path, const std::string& where, void (*halfway)(const char*)) {
  R1DIST_H5(where, H5Fflush(f, H5F_SCOPE_LOCAL));
  const ssize_t size = R1DIST_H5(where, H5Fget_file_image(f, nullptr, 0));
  std::vector<unsigned char> image(static_cast<size_t>(size));
  R1DIST_H5(where, H5Fget_file_image(f, image.data(), image.size()));
  f.close(where);
  reseal_superblock(image);
  AtomicFile out(path);
  const size_t half = image.size() / 2;
  out.write(image.data(), half);
  if (halfway) halfway("data");  // crash-safety tests stop the process here
  out.write(image.data() + half, image.size() - half);
  out.commit();
}

Handle string_type(size_t n, H5T_str_t pad) {
  Handle t(R1DIST_H5("string type", H5Tcopy(H5T_C_S1)));
  R1DIST_H5("string type", H5Tset_size(t, n == 0 ? 1 : n));
  R1DIST_H5("string type", H5Tset_strpad(t, pad));
  R1DIST_H5("string type", H5Tset_cset(t, H5T_CSET_UTF8));
  return t;
}

bool has_attr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

void write_string_array_attr(hid_t obj, const std::string& name, const std::vector<std::string>& values,
                             const std::string& where) {
  const std::string w = where + " attribute '" + name + "'";
  size_t n = 1;
  for (const auto& v : values) n = std::max(n, v.size() + 1);
  auto t = string_type(n, H5T_STR_NULLTERM);
  std::vector<char> buf(n * values.size(), '\0');
  for (size_t i = 0; i < values.size(); ++i) std::memcpy(&buf[i * n], values[i].data(), values[i].size());
  const hsize_t dims[1] = {values.size()};
  Handle space(R1DIST_H5(w, H5Screate_simple(1, dims, nullptr)));
  Handle a(R1DIST_H5(w, H5Acreate2(obj, name.c_str(), t, space, H5P_DEFAULT, H5P_DEFAULT)));
  if (!values.empty()) R1DIST_H5(w, H5Awrite(a, t, buf.data()));
}

std::vector<std::string> read_string_array_attr(hid_t obj, const std::string& name, const std::string& where) {
  const std::string w = where + ": attribute '" + name + "'";
  if (!has_attr(obj, name)) throw Error(w + " is missing");
  Handle a(R1DIST_H5(w, H5Aopen(obj, name.c_str(), H5P_DEFAULT)));
  Handle ft(R1DIST_H5(w, H5Aget_type(a)));
  if (H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) > 0)
    throw Error(w + " is not an array of fixed-length strings");
  const size_t n = H5Tget_size(ft);
  Handle space(R1DIST_H5(w, H5Aget_space(a)));
  const hssize_t count = R1DIST_H5(w, H5Sget_simple_extent_npoints(space));
  auto mt = string_type(n, H5T_STR_NULLTERM);
  std::vector<char> buf(n * size_t(count) + 1, '\0');
  if (count > 0) R1DIST_H5(w, H5Aread(a, mt, buf.data()));
  std::vector<std::string> out;
  for (hssize_t i = 0; i < count; ++i) out.emplace_back(&buf[size_t(i) * n], strnlen(&buf[size_t(i) * n], n));
  return out;
}

std::string iso8601_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace {

void write_attr_raw(hid_t obj, const std::string& name, hid_t ftype, hid_t mtype, const void* buf,
                    const std::string& where) {
  const std::string w = where + " attribute '" + name + "'";
  if (has_attr(obj, name)) R1DIST_H5(w, H5Adelete(obj, name.c_str()));
  Handle space(R1DIST_H5(w, H5Screate(H5S_SCALAR)));
  Handle a(R1DIST_H5(w, H5Acreate2(obj, name.c_str(), ftype, space, H5P_DEFAULT, H5P_DEFAULT)));
  R1DIST_H5(w, H5Awrite(a, mtype, buf));
}

Handle open_attr(hid_t obj, const std::string& name, const std::string& where) {
  if (!has_attr(obj, name)) throw Error(where + ": attribute '" + name + "' is missing");
  return Handle(R1DIST_H5(where + " attribute '" + name + "'", H5Aopen(obj, name.c_str(), H5P_DEFAULT)));
}

}  // namespace

void write_attr(hid_t obj, const std::string& name, const std::string& value, const std::string& where) {
  auto t = string_type(value.size());
  const std::string buf = value.empty() ? std::string(1, '\0') : value;
  write_attr_raw(obj, name, t, t, buf.data(), where);
}

void write_attr(hid_t obj, const std::string& name, int64_t value, const std::string& where) {
  write_attr_raw(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, where);
}

void write_attr(hid_t obj, const std::string& name, double value, const std::string& where) {
  write_attr_raw(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, where);
}

std::string read_string_attr(hid_t obj, const std::string& name, const std::string& where) {
  auto a = open_attr(obj, name, where);
  const std::string w = where + " attribute '" + name + "'";
  Handle ft(R1DIST_H5(w, H5Aget_type(a)));
  Handle sp(R1DIST_H5(w, H5Aget_space(a)));
  return read_string(ft, sp, [&](hid_t mt, void* buf) { return H5Aread(a, mt, buf); }, w);
}

namespace {

template <class T>
T read_number_attr(hid_t obj, const std::string& name, const std::string& where, H5T_class_t cls,
                   hid_t mtype) {
  auto a = open_attr(obj, name, where);
  const std::string w = where + " attribute '" + name + "'";
  Handle ft(R1DIST_H5(w, H5Aget_type(a)));
  Handle sp(R1DIST_H5(w, H5Aget_space(a)));
  if (H5Tget_class(ft) != cls || H5Sget_simple_extent_npoints(sp) != 1)
    throw Error(w + ": expected a scalar " + (cls == H5T_INTEGER ? "integer" : "float"));
  T v{};
  R1DIST_H5(w, H5Aread(a, mtype, &v));
  return v;
}

}  // namespace

int64_t read_int_attr(hid_t obj, const std::string& name, const std::string& where) {
  return read_number_attr<int64_t>(obj, name, where, H5T_INTEGER, H5T_NATIVE_INT64);
}

double read_double_attr(hid_t obj, const std::string& name, const std::string& where) {
  return read_number_attr<double>(obj, name, where, H5T_FLOAT, H5T_NATIVE_DOUBLE);
}

void write_string_dataset(hid_t loc, const std::string& name, const std::string& value, const std::string& where) {
  const std::string w = where + " dataset '" + name + "'";
  auto t = string_type(value.size());
  Handle space(R1DIST_H5(w, H5Screate(H5S_SCALAR)));
  Handle d(R1DIST_H5(w, H5Dcreate2(loc, name.c_str(), t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)));
  const std::string buf = value.empty() ? std::string(1, '\0') : value;
  R1DIST_H5(w, H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()));
  d.close(w);
}

std::string read_string_dataset(hid_t loc, const std::string& name, const std::string& where) {
  const std::string w = where + " dataset '" + name + "'";
  if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) <= 0) throw Error(w + " is missing");
  Handle d(R1DIST_H5(w, H5Dopen2(loc, name.c_str(), H5P_DEFAULT)));
  Handle ft(R1DIST_H5(w, H5Dget_type(d)));
  Handle sp(R1DIST_H5(w, H5Dget_space(d)));
  return read_string(ft, sp, [&](hid_t mt, void* buf) { return H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf); },
                     w);
}

}  // namespace r1dist::h5
