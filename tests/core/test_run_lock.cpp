// One run per output directory (base/run_lock.h): a second holder is refused at once with
// the first one's description; the lock goes with its holder, however the holder ends.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "r1dist/base/error.h"
#include "r1dist/base/run_lock.h"
#include "support/temp.h"

namespace r1dist {
namespace {

// Exit code of a child that tries the lock: 0 taken, 2 refused naming the parent, 3 other.
int try_in_child(const std::string& dir, pid_t holder) {
  const pid_t pid = fork();
  if (pid == 0) {
    try {
      RunLock::acquire(dir, "child");
      _exit(0);
    } catch (const UsageError& e) {
      const std::string w = e.what();
      _exit(w.find("pid " + std::to_string(holder)) != std::string::npos && w.find("in use") != std::string::npos ? 2
                                                                                                                  : 3);
    } catch (...) {
      _exit(3);
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(RunLock, ASecondHolderIsRefusedNamingTheFirst) {
  test::TempDir tmp;
  {
    auto lock = RunLock::acquire(tmp.path, "r1dist --cfg a.toml");
    EXPECT_TRUE(lock.held());
    EXPECT_EQ(try_in_child(tmp.path, getpid()), 2);
    EXPECT_NE(test::read_text(tmp / ".r1dist.lock").find("r1dist --cfg a.toml"), std::string::npos);
  }
  EXPECT_EQ(try_in_child(tmp.path, getpid()), 0) << "released with its holder";
}

TEST(RunLock, AKilledHolderLeavesNoStaleLock) {
  test::TempDir tmp;
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t holder = fork();
  if (holder == 0) {
    auto lock = RunLock::acquire(tmp.path, "holder");
    char c = 1;
    (void)!write(ready[1], &c, 1);
    pause();
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  EXPECT_EQ(try_in_child(tmp.path, holder), 2);
  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
  EXPECT_EQ(try_in_child(tmp.path, holder), 0) << "SIGKILL must not leave the directory locked";
}

TEST(RunLock, AMissingDirectoryIsAnError) { EXPECT_THROW(RunLock::acquire("/nonexistent/r1dist/dir", "x"), Error); }

}  // namespace
}  // namespace r1dist
