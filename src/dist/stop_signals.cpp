#include "r1dist/dist/stop_signals.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <initializer_list>

namespace r1dist {

namespace {

std::atomic<int> g_signal{0};
std::atomic<int64_t> g_first_ns{0};
static_assert(std::atomic<int>::is_always_lock_free, "the handler reads and writes it");
static_assert(std::atomic<int64_t>::is_always_lock_free, "the handler reads and writes it");

int64_t monotonic_ns() {  // clock_gettime is async-signal-safe
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

void on_signal(int sig) {
  const int64_t now = monotonic_ns();
  int expected = 0;
  if (g_signal.compare_exchange_strong(expected, sig)) {
    g_first_ns.store(now);
    const char msg[] = "[r1dist] stop signal received: finishing the current step, then a checkpoint "
                       "(a second signal ends the process at once)\n";
    (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
    return;
  }
  // The same signal again within the window is a copy, not a second request.
  if (expected == sig && now - g_first_ns.load() < kDuplicateSignalWindowMs * 1000000) return;
  // A second signal: no checkpoint; the last complete one stays valid (atomic writes).
  ::_exit(128 + sig);
}

}  // namespace

void install_stop_signals() {
  static std::atomic<bool> installed{false};
  if (installed.exchange(true)) return;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // the signal interrupts no read or collective
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaction(sig, &sa, nullptr);
}

int stop_signal() { return g_signal.load(); }

void reset_stop_signal() { g_signal.store(0); }

}  // namespace r1dist
