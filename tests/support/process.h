// Running programs from a test: the r1dist binary (alone or under mpirun, with an
// environment prefix) and node (the JavaScript reference). Output is captured; a test reads
// the exit code, stdout and stderr. Torch-free.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "support/temp.h"

namespace r1dist::test {

struct RunResult {
  int code = -1;
  std::string out, err;
};

// Runs a shell command line (quoted by the caller), capturing stdout and stderr.
inline RunResult run_command(const std::string& cmdline) {
  TempDir tmp;
  const std::string cmd = cmdline + " >" + (tmp / "out") + " 2>" + (tmp / "err");
  if (std::getenv("R1DIST_TEST_VERBOSE")) std::fprintf(stderr, "+ %s\n", cmd.c_str());
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(tmp / "out");
  r.err = read_text(tmp / "err");
  return r;
}

// How r1dist is started: `ranks` > 0 under `mpirun -np ranks`, with `env` (VAR=value ...)
// in front.
struct Launch {
  int ranks = 0;
  std::string env;
};

#ifdef R1DIST_BINARY  // the end-to-end tests; the core tests never need the binary
inline RunResult run_r1dist(const std::string& args, const Launch& how = {}) {
  std::string cmd = how.env + " ";
  if (how.ranks > 0) cmd += "mpirun -np " + std::to_string(how.ranks) + " ";
  return run_command(cmd + R1DIST_BINARY + " " + args);
}
#endif

inline bool on_path(const std::string& tool) {
  return std::system(("command -v " + tool + " >/dev/null 2>&1").c_str()) == 0;
}

// node and the npm packages of tools/js (bash tools/install-deps.sh installs both).
inline bool node_available() {
  return on_path("node") &&
         std::filesystem::exists(source_dir() + "/tools/js/node_modules/@lenml/tokenizers");
}
#define R1DIST_REQUIRE_NODE()                                                                         \
  do {                                                                                                \
    if (!::r1dist::test::node_available())                                                            \
      GTEST_SKIP() << "node or tools/js/node_modules is missing (bash tools/install-deps.sh installs " \
                      "them); the JavaScript reference cannot run here";                             \
  } while (0)

// Runs `node tools/js/<script> args`; fails the test (with node's stderr) on a non-zero exit.
inline void run_node(const std::string& script_and_args) {
  const auto r = run_command("node " + source_dir() + "/tools/js/" + script_and_args);
  ASSERT_EQ(r.code, 0) << "node tools/js/" << script_and_args << "\n"
                       << r.err << "\nHINT: node and tools/js/node_modules are installed by bash tools/install-deps.sh";
}

}  // namespace r1dist::test
