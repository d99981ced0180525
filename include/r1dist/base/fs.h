// Directory helpers written on POSIX calls. Why not std::filesystem::remove_all/copy: the
// PyTorch 2.x wheels export their own copies of some std::filesystem symbols, which win
// symbol resolution in any program linking libtorch.so and crash (seen on the GPU machine:
// remove_all jumping to address 0).
#pragma once
#include <string>

namespace r1dist {

// Removes `path` and everything under it (no error if it does not exist). Throws Error
// naming the first entry that could not be removed.
void remove_tree(const std::string& path);
// Copies the directory `from` (files, subdirectories and symlinks as links) to `to`.
void copy_tree(const std::string& from, const std::string& to);
// Whether `path` exists and is a directory / a regular file (symlinks followed).
bool is_dir(const std::string& path);
bool is_file(const std::string& path);

}  // namespace r1dist
