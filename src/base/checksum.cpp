#include "r1dist/base/checksum.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace r1dist {

uint32_t crc32(const void* data, size_t size, uint32_t crc) {
  return static_cast<uint32_t>(::crc32_z(crc, static_cast<const Bytef*>(data), size));
}

bool file_crc32(const std::string& path, uint32_t* crc, uint64_t* size, std::string* why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (why) *why = std::strerror(errno);
    return false;
  }
  std::vector<unsigned char> buf(1 << 20);
  uint32_t c = 0;
  uint64_t n = 0;
  for (;;) {
    const ssize_t got = ::read(fd, buf.data(), buf.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      if (why) *why = std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (got == 0) break;
    c = crc32(buf.data(), size_t(got), c);
    n += uint64_t(got);
  }
  ::close(fd);
  *crc = c;
  if (size) *size = n;
  return true;
}

std::string crc32_hex(uint32_t crc) {
  char b[9];
  std::snprintf(b, sizeof b, "%08x", crc);
  return b;
}

}  // namespace r1dist
