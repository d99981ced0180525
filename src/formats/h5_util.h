// Small helpers over the HDF5 C API shared by checkpoint.cpp and metrics.cpp: owning
// handles, a checked-call macro whose Error carries HDF5's own error stack, and string /
// scalar attribute and dataset helpers. Internal to src/io.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "r1dist/base/error.h"

namespace r1dist::h5 {

// Turns off HDF5's automatic printing of its error stack (we put it in the Error text).
void quiet();
// The current HDF5 error stack as one line ("H5Fopen: unable to open file; ...").
std::string error_stack();
// Throws Error("<where>: <what> failed: <HDF5 stack>").
[[noreturn]] void fail(const std::string& where, const std::string& what);

// Checked call: negative return (herr_t / hid_t) -> Error naming the call.
#define R1DIST_H5(where, call)                                          \
  ([&]() {                                                              \
    auto r1dist_h5_rc_ = (call);                                        \
    if (r1dist_h5_rc_ < 0) ::r1dist::h5::fail((where), #call);          \
    return r1dist_h5_rc_;                                               \
  }())

// Owning hid_t; closes with the H5?close that matches the object's type.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now and reports failure (a file close flushes, so its error matters).
  void close(const std::string& where);
  void reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

// Files built or edited in memory (HDF5's core driver, no backing store) and written by
// AtomicFile (base/fs.h): libhdf5 then never writes to the disk itself, so a full disk or an
// I/O error meets our error path, not libhdf5's (which, when it met ENOSPC while closing a
// dataset, freed the dataset's ID but not its file's reference to it, and the process crashed
// in HDF5's exit-time cleanup). `name` only names the file in HDF5's messages.
// A new empty file; `size_hint` bytes are allocated at once.
Handle create_in_memory(const std::string& name, size_t size_hint, const std::string& where);
// An existing file's bytes, opened read-write in memory. Status flags that a killed SWMR
// writer left in the superblock are cleared (what h5clear does), so such a file opens.
Handle open_in_memory(const std::string& bytes, const std::string& name, const std::string& where);
// Flushes `f`, closes it and writes its bytes to `path` atomically.
void write_image(Handle& f, const std::string& path, const std::string& where,
                 void (*halfway)(const char*) = nullptr);

// Fixed-length UTF-8 string type of n bytes (at least 1; HDF5 has no zero-size strings).
// NUL-padded by default (exact-size strings); NUL-terminated for fields with spare room,
// which h5dump then prints without the padding.
Handle string_type(size_t n, H5T_str_t pad = H5T_STR_NULLPAD);

bool has_attr(hid_t obj, const std::string& name);
void write_attr(hid_t obj, const std::string& name, const std::string& value, const std::string& where);
void write_attr(hid_t obj, const std::string& name, int64_t value, const std::string& where);
void write_attr(hid_t obj, const std::string& name, double value, const std::string& where);
// Readers throw Error naming `where` and the attribute when it is missing or of the wrong class.
std::string read_string_attr(hid_t obj, const std::string& name, const std::string& where);
int64_t read_int_attr(hid_t obj, const std::string& name, const std::string& where);
double read_double_attr(hid_t obj, const std::string& name, const std::string& where);

// 1-D array of fixed-length UTF-8 strings as an attribute (column units and descriptions).
void write_string_array_attr(hid_t obj, const std::string& name, const std::vector<std::string>& values,
                             const std::string& where);
std::vector<std::string> read_string_array_attr(hid_t obj, const std::string& name, const std::string& where);
// The time now, UTC ISO-8601 ("2025-01-31T12:00:00Z"): the `created` attribute of files.
std::string iso8601_now();
// Scalar string dataset (the config text).
void write_string_dataset(hid_t loc, const std::string& name, const std::string& value, const std::string& where);
std::string read_string_dataset(hid_t loc, const std::string& name, const std::string& where);

}  // namespace r1dist::h5
