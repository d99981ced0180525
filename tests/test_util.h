// Helpers shared by the tests: temp dirs, running the binary, tensor comparison with a
// report of the first mismatches.
#pragma once
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "r1dist/fs_util.h"

namespace r1dist::test {

inline std::string fixture(const std::string& name) { return std::string(R1DIST_FIXTURES) + "/" + name; }

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
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct RunResult {
  int code = -1;
  std::string out, err;
};

// Runs the r1dist binary with `args` (shell-quoted by the caller); captures stdout/stderr.
inline RunResult run_r1dist(const std::string& args) {
  TempDir tmp;
  const std::string cmd = std::string(R1DIST_BINARY) + " " + args + " >" + (tmp / "out") + " 2>" + (tmp / "err");
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(tmp / "out");
  r.err = read_text(tmp / "err");
  return r;
}

// max|a-b| / max|b| (a scale-aware error that near-zero elements cannot blow up), and a
// printout of the worst elements when it exceeds `tol`.
inline double max_rel_err(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  auto a64 = a.to(at::kDouble).cpu(), b64 = b.to(at::kDouble).cpu();
  EXPECT_EQ(a64.sizes(), b64.sizes()) << what;
  auto diff = (a64 - b64).abs();
  const double err = diff.max().item<double>() / std::max(b64.abs().max().item<double>(), 1e-30);
  if (!(err < tol)) {
    auto flat = diff.flatten();
    auto [top_values, top_index] = flat.topk(std::min<int64_t>(5, flat.numel()));
    std::ostringstream os;
    os << what << ": max rel err " << err << " >= " << tol << "; worst elements (flat index: got vs want):";
    for (int64_t i = 0; i < top_index.numel(); ++i) {
      const int64_t k = top_index[i].item<int64_t>();
      os << "\n  [" << k << "] " << a64.flatten()[k].item<double>() << " vs " << b64.flatten()[k].item<double>();
    }
    ADD_FAILURE() << os.str();
  }
  return err;
}

}  // namespace r1dist::test
