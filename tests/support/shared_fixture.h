// Test data that several end-to-end tests share and that is costly to make (a model
// directory, a whole training run): built once per test run in the build tree. Under
// ctest, the fixture's own setup test (CTest FIXTURES_SETUP, tests/CMakeLists.txt) builds
// it fresh before any test that needs it; a test binary run by hand builds it on first
// use. Torch-free.
#pragma once
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>

#include "r1dist/base/fs.h"
#include "support/temp.h"

namespace r1dist::test {

// R1DIST_E2E_DIR/name, made by build(dir) into a temporary directory and renamed into place
// when complete (a failed or killed build leaves nothing that looks done). rebuild = true
// replaces an existing one (the setup tests do, so no run sees a stale fixture). Builders
// take turns (an flock on R1DIST_E2E_DIR/name.lock): under `ctest -j N` two processes never
// build or replace the same fixture at once. A fixture is read-only to the tests: one that
// writes into a run directory works on a copy (e2e/trainer_runs.h reference_copy).
inline std::string shared_fixture(const std::string& name, const std::function<void(const std::string&)>& build,
                                  bool rebuild = false) {
  const std::string dir = std::string(R1DIST_E2E_DIR) + "/" + name;
  std::filesystem::create_directories(R1DIST_E2E_DIR);
  const int lock = ::open((dir + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0 || ::flock(lock, LOCK_EX) != 0) throw std::runtime_error("cannot lock " + dir + ".lock");
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};
  if (!rebuild && std::filesystem::exists(dir + "/.complete")) return dir;
  const std::string tmp = dir + ".tmp" + std::to_string(::getpid());
  remove_tree(tmp);
  std::filesystem::create_directories(tmp);
  build(tmp);
  write_text(tmp + "/.complete", "");
  remove_tree(dir);
  std::filesystem::rename(tmp, dir);
  return dir;
}

}  // namespace r1dist::test
