#include "r1dist/dist/stop_signals.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <initializer_list>

namespace r1dist {

namespace {

std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the handler reads and writes it");

void on_signal(int sig) {
  int expected = 0;
  if (g_signal.compare_exchange_strong(expected, sig)) {
    const char msg[] = "[r1dist] stop signal received: finishing the current step, then a checkpoint "
                       "(a second signal ends the process at once)\n";
    (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
    return;
  }
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
