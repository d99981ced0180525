// Test helpers shared by every test binary: fixture paths, temporary directories and files,
// and error assertions. Torch-free (the core tests include it).
#pragma once
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "r1dist/base/error.h"
#include "r1dist/base/fs.h"

namespace r1dist::test {

inline std::string fixture(const std::string& name) { return std::string(R1DIST_FIXTURES) + "/" + name; }
inline std::string source_dir() { return R1DIST_SOURCE_DIR; }
// ../shared beside the checkout (the real data rows and SPEC.md); "" when absent.
inline std::string shared_dir() {
  const std::string d = source_dir() + "/../shared";
  return std::filesystem::exists(d) ? d : "";
}

// A fresh directory under the system temp dir, removed when the object dies.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "r1dist_test_XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    if (!p) throw std::runtime_error("mkdtemp failed");
    path = p;
  }
  ~TempDir() {
    try {
      remove_tree(path);
    } catch (...) {
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  if (!f) ADD_FAILURE() << "cannot write " << path;
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A copy of fixture `name` under tmp, for a test that damages it.
inline std::string copy_fixture(const TempDir& tmp, const std::string& name) {
  const std::string dst = tmp / name;
  copy_tree(fixture(name), dst);
  return dst;
}

// Rewrites the JSON file at `path` through `edit(json&)`.
template <class F>
void edit_json(const std::string& path, F edit) {
  auto j = nlohmann::json::parse(read_text(path));
  edit(j);
  write_text(path, j.dump(2));
}

// The call threw r1dist::Error (or the given subclass, ThrowsWith<UsageError>) and its
// message holds every part.
template <class E = Error, class F>
::testing::AssertionResult ThrowsWith(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      if (msg.find(p) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks \"" << p << "\":\n" << msg;
    return ::testing::AssertionSuccess() << msg;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw something other than the expected r1dist error: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

}  // namespace r1dist::test
