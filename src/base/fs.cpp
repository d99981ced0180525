#include "r1dist/base/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "r1dist/base/error.h"

namespace r1dist {

namespace {

std::string sys_error() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
  const int rc = (type == FTW_DP) ? ::rmdir(path) : ::unlink(path);
  if (rc != 0 && errno != ENOENT) throw Error(std::string("cannot remove ") + path + ": " + sys_error());
  return 0;
}

// The crash tests' hook (fs.h): SIGKILL between the durable temporary and the rename of
// the first file or directory whose path ends with R1DIST_FAULT_ATOMIC.
void fault_before_rename(const std::string& path) {
  const char* want = std::getenv("R1DIST_FAULT_ATOMIC");
  const size_t n = want ? std::strlen(want) : 0;
  if (n > 0 && path.size() >= n && path.compare(path.size() - n, n, want) == 0) ::raise(SIGKILL);
}

}  // namespace

bool try_read_file(const std::string& path, std::string* out, std::string* why) {
  auto fail = [&](const std::string& reason) {
    if (why) *why = reason;
    return false;
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(sys_error());
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    return fail("it is a directory, not a file");
  }
  out->clear();
  if (st.st_size > 0) out->reserve(size_t(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string reason = sys_error();
      ::close(fd);
      return fail(reason);
    }
    out->append(buf, size_t(n));
  }
  ::close(fd);
  return true;
}

std::string read_file(const std::string& path) {
  std::string out, why;
  if (!try_read_file(path, &out, &why)) throw Error("cannot read " + path + ": " + why);
  return out;
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error("cannot write " + path_ + ": cannot create " + tmp_ + ": " + sys_error());
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  check(fd_ >= 0, "AtomicFile: " + path_ + " is already committed");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      const bool full = errno == ENOSPC || errno == EDQUOT;
      throw Error("cannot write " + path_ + " (" + tmp_ + "): " + sys_error() +
                  (full ? "\nHINT: the disk is full (or the quota is spent); free space or write elsewhere" : ""));
    }
    p += w;
    n -= size_t(w);
  }
}

void AtomicFile::commit() {
  check(fd_ >= 0, "AtomicFile: " + path_ + " is already committed");
  if (::fsync(fd_) != 0) throw Error("cannot write " + path_ + ": fsync of " + tmp_ + " failed: " + sys_error());
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) {
    const std::string reason = sys_error();
    ::unlink(tmp_.c_str());
    throw Error("cannot write " + path_ + ": closing " + tmp_ + " failed: " + reason);
  }
  fault_before_rename(path_);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string reason = sys_error();
    ::unlink(tmp_.c_str());
    throw Error("cannot write " + path_ + ": rename of " + tmp_ + " failed: " + reason);
  }
  fsync_path(parent_dir(path_));
}

void write_file_atomic(const std::string& path, std::string_view content) {
  AtomicFile f(path);
  f.write(content);
  f.commit();
}

AppendFile::AppendFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error("cannot open " + path_ + " to append to it: " + sys_error());
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

void AppendFile::write(std::string_view s) {
  const char* p = s.data();
  size_t n = s.size();
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      const bool full = errno == ENOSPC || errno == EDQUOT;
      throw Error("cannot append to " + path_ + ": " + sys_error() +
                  (full ? "\nHINT: the disk is full (or the quota is spent); free space or write elsewhere" : ""));
    }
    p += w;
    n -= size_t(w);
  }
}

void AppendFile::sync() {
  if (::fsync(fd_) != 0) throw Error("cannot append to " + path_ + ": fsync failed: " + sys_error());
}

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open " + path + " to fsync it: " + sys_error());
  const int rc = ::fsync(fd);
  const std::string reason = rc != 0 ? sys_error() : "";
  ::close(fd);
  // Some file systems refuse fsync of a directory (EINVAL): nothing more can be done there.
  if (rc != 0 && reason != std::strerror(EINVAL)) throw Error("fsync of " + path + " failed: " + reason);
}

void rename_path(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) throw Error("cannot rename " + from + " to " + to + ": " + sys_error());
}

void replace_dir(const std::string& staged, const std::string& dir) {
  fsync_path(staged);
  fault_before_rename(dir);
  const std::string old = dir + ".old";
  remove_tree(old);
  const bool had = exists(dir);
  if (had) rename_path(dir, old);
  rename_path(staged, dir);
  fsync_path(parent_dir(dir));
  if (had) remove_tree(old);
}

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  // FTW_DEPTH: children before their directory; FTW_PHYS: never follow symlinks.
  ::nftw(path.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS);
}

void copy_file(const std::string& from, const std::string& to) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) throw Error("cannot copy " + from + ": " + sys_error());
  struct stat st {};
  ::fstat(in, &st);
  try {
    AtomicFile out(to);
    std::vector<char> buf(1 << 20);
    for (;;) {
      const ssize_t n = ::read(in, buf.data(), buf.size());
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR) continue;
        throw Error("cannot copy " + from + ": " + sys_error());
      }
      out.write(buf.data(), size_t(n));
    }
    out.commit();
  } catch (...) {
    ::close(in);
    throw;
  }
  ::close(in);
  ::chmod(to.c_str(), st.st_mode & 0777);
}

void copy_tree(const std::string& from, const std::string& to) {
  struct stat st {};
  if (::lstat(from.c_str(), &st) != 0) throw Error("cannot copy " + from + ": " + sys_error());
  if (S_ISLNK(st.st_mode)) {
    std::vector<char> target(4096);
    const ssize_t n = ::readlink(from.c_str(), target.data(), target.size() - 1);
    if (n < 0 || ::symlink(std::string(target.data(), size_t(n)).c_str(), to.c_str()) != 0)
      throw Error("cannot copy the link " + from + ": " + sys_error());
    return;
  }
  if (!S_ISDIR(st.st_mode)) return copy_file(from, to);
  if (::mkdir(to.c_str(), st.st_mode & 0777) != 0 && errno != EEXIST)
    throw Error("cannot create " + to + ": " + sys_error());
  // nftw cannot map paths for us without global state; walk one level at a time.
  DIR* d = ::opendir(from.c_str());
  if (!d) throw Error("cannot read " + from + ": " + sys_error());
  std::vector<std::string> names;
  while (auto* e = ::readdir(d))
    if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) names.emplace_back(e->d_name);
  ::closedir(d);
  for (const auto& n : names) copy_tree(from + "/" + n, to + "/" + n);
}

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

void make_dirs(const std::string& path) {
  if (path.empty() || is_dir(path)) return;
  const std::string parent = parent_dir(path);
  if (parent != path && parent != "." && parent != "/") make_dirs(parent);
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) throw Error("cannot create " + path + ": " + sys_error());
  if (!is_dir(path)) throw Error("cannot create the directory " + path + ": a file of that name is in the way");
}

}  // namespace r1dist
