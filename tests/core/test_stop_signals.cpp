// Scheduler signals (dist/stop_signals.h): the first is recorded for the trainer to stop
// at a step boundary; the second ends the process at once. Each case runs in a forked child
// so the test process keeps its default handlers.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include "r1dist/dist/stop_signals.h"

namespace r1dist {
namespace {

// Runs fn in a child; returns its wait status.
template <class F>
int in_child(F fn) {
  const pid_t pid = fork();
  if (pid == 0) {
    fn();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(StopSignals, TheFirstIsRecordedAndTheProcessGoesOn) {
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) {
    const int status = in_child([sig] {
      install_stop_signals();
      if (stop_signal() != 0) _exit(10);
      std::raise(sig);
      _exit(stop_signal() == sig ? 42 : 11);  // still running, and the signal is known
    });
    ASSERT_TRUE(WIFEXITED(status)) << "signal " << sig << " killed the process";
    EXPECT_EQ(WEXITSTATUS(status), 42) << "signal " << sig;
  }
}

TEST(StopSignals, ASecondOneEndsTheProcessAtOnce) {
  const int status = in_child([] {
    install_stop_signals();
    std::raise(SIGTERM);
    std::raise(SIGUSR1);
    _exit(0);  // not reached
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGUSR1);
}

// What Slurm does at a time limit or cancel: the same SIGTERM twice within milliseconds
// (slurmstepd and srun). It is one request; the same signal again after the window ends it.
TEST(StopSignals, ACopyOfTheFirstWithinTheWindowIsIgnored) {
  const int status = in_child([] {
    install_stop_signals();
    std::raise(SIGTERM);
    std::raise(SIGTERM);
    if (stop_signal() != SIGTERM) _exit(11);
    usleep(useconds_t(kDuplicateSignalWindowMs * 1000 + 100000));
    std::raise(SIGTERM);
    _exit(0);  // not reached
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
}

TEST(StopSignals, WithoutInstallingTheDefaultActionStays) {
  const int status = in_child([] { std::raise(SIGTERM); });
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

}  // namespace
}  // namespace r1dist
