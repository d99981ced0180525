#include "r1dist/base/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>

#include "r1dist/base/error.h"

namespace r1dist {

namespace {

std::string read_all(int fd) {
  std::string out;
  char buf[512];
  if (::lseek(fd, 0, SEEK_SET) < 0) return out;
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
  while (!out.empty() && (out.back() == '\n' || out.back() == '\0')) out.pop_back();
  return out;
}

}  // namespace

RunLock RunLock::acquire(const std::string& dir, const std::string& what) {
  const std::string path = dir + "/.r1dist.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot open the run lock " + path + ": " + std::strerror(errno));
  // A few tries over a second: `r1dist sweep status` probes a run's lock by taking it for a
  // moment, which must not turn a run starting in that moment away.
  int err = 0;
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      err = 0;
      break;
    }
    err = errno;
    if (err != EWOULDBLOCK) break;
    ::usleep(50 * 1000);
  }
  if (err != 0) {
    std::string holder = read_all(fd);
    ::close(fd);
    if (err != EWOULDBLOCK) throw Error("cannot lock " + path + ": " + std::strerror(err));
    throw UsageError("output directory " + dir + " is in use by another run (" +
                     (holder.empty() ? std::string("holder unknown") : holder) +
                     ")\nHINT: wait for it, or give this run another output.dir");
  }
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  char when[64] = {0};
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
  const std::string info =
      "host " + std::string(host) + ", pid " + std::to_string(::getpid()) + ", since " + when + ", " + what + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, info.data(), info.size(), 0) != ssize_t(info.size())) {
    // The lock holds regardless; only the description for the next process is missing.
  }
  RunLock l;
  l.fd_ = fd;
  return l;
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);  // closing drops the flock
}

RunLock::RunLock(RunLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}

RunLock& RunLock::operator=(RunLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

}  // namespace r1dist
