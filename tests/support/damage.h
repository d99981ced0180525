// Damaging files on purpose, as a disk, a copy or a stray write would: one bit of one
// dataset's stored data (found through HDF5, changed with a plain write so that HDF5 knows
// nothing of it), or one byte of any file.
#pragma once
#include <fcntl.h>
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

namespace r1dist::test {

// XORs `mask` into the byte at `fraction` of the file (0 <= fraction < 1) at byte position
// `base + fraction * size`.
inline void xor_byte_at(const std::string& path, uint64_t pos, unsigned char mask) {
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << path;
  unsigned char b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, off_t(pos)), 1) << path;
  b ^= mask;
  ASSERT_EQ(::pwrite(fd, &b, 1, off_t(pos)), 1) << path;
  ::close(fd);
}

// One bit (1 << bit) of the byte at `fraction` of dataset `name`'s stored data.
inline void flip_bit_in_dataset(const std::string& path, const std::string& name, double fraction, int bit) {
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(f, 0) << path;
  const hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  ASSERT_GE(d, 0) << name;
  const haddr_t offset = H5Dget_offset(d);
  const hsize_t size = H5Dget_storage_size(d);
  H5Dclose(d);
  H5Fclose(f);
  ASSERT_NE(offset, HADDR_UNDEF) << name << " has no contiguous storage";
  ASSERT_GT(size, 0u);
  xor_byte_at(path, offset + uint64_t(fraction * double(size)), static_cast<unsigned char>(1u << bit));
}

// Inverts the byte at `fraction` of the file.
inline void flip_byte_in_file(const std::string& path, double fraction) {
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
  xor_byte_at(path, uint64_t(fraction * double(st.st_size)), 0xff);
}

}  // namespace r1dist::test
