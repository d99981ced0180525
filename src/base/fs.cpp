#include "r1dist/base/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "r1dist/base/error.h"

namespace r1dist {

namespace {

int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
  const int rc = (type == FTW_DP) ? ::rmdir(path) : ::unlink(path);
  if (rc != 0) throw Error(std::string("cannot remove ") + path + ": " + std::strerror(errno));
  return 0;
}

void copy_file(const std::string& from, const std::string& to, mode_t mode) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) throw Error("cannot open " + from + ": " + std::strerror(errno));
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 0777);
  if (out < 0) {
    ::close(in);
    throw Error("cannot create " + to + ": " + std::strerror(errno));
  }
  std::vector<char> buf(1 << 20);
  for (;;) {
    const ssize_t n = ::read(in, buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0 || ::write(out, buf.data(), size_t(n)) != n) {
      ::close(in);
      ::close(out);
      throw Error("copying " + from + " to " + to + ": " + std::strerror(errno));
    }
  }
  ::close(in);
  if (::close(out) != 0) throw Error("cannot close " + to + ": " + std::strerror(errno));
}

}  // namespace

void remove_tree(const std::string& path) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return;
  // FTW_DEPTH: children before their directory; FTW_PHYS: never follow symlinks.
  ::nftw(path.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS);
}

void copy_tree(const std::string& from, const std::string& to) {
  struct stat st{};
  if (::lstat(from.c_str(), &st) != 0) throw Error("cannot copy " + from + ": " + std::strerror(errno));
  if (S_ISLNK(st.st_mode)) {
    std::vector<char> target(4096);
    const ssize_t n = ::readlink(from.c_str(), target.data(), target.size() - 1);
    if (n < 0 || ::symlink(std::string(target.data(), size_t(n)).c_str(), to.c_str()) != 0)
      throw Error("cannot copy the link " + from + ": " + std::strerror(errno));
    return;
  }
  if (!S_ISDIR(st.st_mode)) return copy_file(from, to, st.st_mode);
  if (::mkdir(to.c_str(), st.st_mode & 0777) != 0 && errno != EEXIST)
    throw Error("cannot create " + to + ": " + std::strerror(errno));
  // nftw cannot map paths for us without global state; walk one level at a time.
  DIR* d = ::opendir(from.c_str());
  if (!d) throw Error("cannot read " + from + ": " + std::strerror(errno));
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

}  // namespace r1dist
