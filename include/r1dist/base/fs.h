// The file layer: every file r1dist reads whole or writes goes through here.
//
// Writers replace a file atomically (AtomicFile: a temporary beside it, fsync, rename over
// it, fsync of the directory): a crash or a full disk leaves either the old file or the new
// one, never a mixture. Directories are replaced the same way (replace_dir); logs that
// readers follow while they grow are appended (AppendFile). The fault hook
// R1DIST_FAULT_ATOMIC=SUFFIX (environment) makes the process SIGKILL itself between the
// fsync and the rename of the first file or directory whose path ends with SUFFIX: the crash
// tests use it.
//
// Written on POSIX calls, not std::filesystem::rename/remove_all/copy: the PyTorch 2.x wheels
// export their own copies of some std::filesystem symbols, which win symbol resolution in any
// program linking libtorch.so and crash (remove_all jumping to address 0 was seen).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace r1dist {

// The whole file; Error "cannot read PATH: <reason>" (a directory is refused by name).
std::string read_file(const std::string& path);
// The whole file, or false (with the reason in `why`) when it cannot be read.
bool try_read_file(const std::string& path, std::string* out, std::string* why = nullptr);

// Writes `path` atomically. write() may be called many times; commit() makes the new
// content the file's. Destroyed without commit() (an exception, a full disk): the temporary
// is removed and `path` is untouched. Errors name the path and the system's reason.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

// AtomicFile in one call.
void write_file_atomic(const std::string& path, std::string_view content);

// A file that only grows (event logs that a reader follows while it is written): opened to
// append (created when absent), each write() handed to the kernel at once (readers see it),
// sync() makes what was written durable (fsync). A crash can cut the last write short; the
// formats written this way frame their records so that readers stop at a cut one.
class AppendFile {
 public:
  explicit AppendFile(std::string path);
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;
  void write(std::string_view s);
  void sync();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// Makes the complete directory `staged` (every file in it already durable) the directory
// `dir`: an existing `dir` is moved aside, `staged` renamed into place, the old one removed.
// A crash in between leaves `staged` or `dir` whole, never a mixture.
void replace_dir(const std::string& staged, const std::string& dir);

// Removes `path` and everything under it (no error if it does not exist). Throws Error
// naming the first entry that could not be removed.
void remove_tree(const std::string& path);
// Copies the directory `from` (files, subdirectories and symlinks as links) to `to`.
void copy_tree(const std::string& from, const std::string& to);
// Copies one file (atomically: `to` is whole or untouched).
void copy_file(const std::string& from, const std::string& to);
// rename(2), with an Error naming both paths.
void rename_path(const std::string& from, const std::string& to);
// fsync of a file or directory.
void fsync_path(const std::string& path);
// Whether `path` exists and is a directory / a regular file (symlinks followed); exists: anything.
bool is_dir(const std::string& path);
bool is_file(const std::string& path);
bool exists(const std::string& path);
// mkdir -p.
void make_dirs(const std::string& path);

}  // namespace r1dist
