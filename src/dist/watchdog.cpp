#include "r1dist/dist/watchdog.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "r1dist/dist/process_group.h"

namespace r1dist {

struct Watchdog::State {
  int64_t timeout_s;
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false, active = false;
  const char* what = "";
  std::chrono::steady_clock::time_point since;

  void loop() {
    std::unique_lock<std::mutex> lk(mu);
    while (!stop) {
      cv.wait_for(lk, std::chrono::milliseconds(500));
      if (!active) continue;
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
      if (waited > double(timeout_s)) {
        const std::string msg =
            dist_deadline_message(what, "a blocking call that cannot say which rank did not join") + "\n";
        std::fprintf(stderr, "[r1dist] %s", msg.c_str());
        std::fflush(stderr);
        std::_Exit(1);
      }
    }
  }
};

Watchdog::Watchdog(int64_t timeout_s) : s_(std::make_unique<State>()) {
  s_->timeout_s = timeout_s;
  if (timeout_s > 0) s_->thread = std::thread([s = s_.get()] { s->loop(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> g(s_->mu);
    s_->stop = true;
  }
  s_->cv.notify_all();
  if (s_->thread.joinable()) s_->thread.join();
}

Watchdog::Watch::Watch(Watchdog* w, const char* what) : w_(w) {
  if (!w_) return;
  std::lock_guard<std::mutex> g(w_->s_->mu);
  w_->s_->what = what;
  w_->s_->since = std::chrono::steady_clock::now();
  w_->s_->active = true;
}

Watchdog::Watch::~Watch() {
  if (!w_) return;
  std::lock_guard<std::mutex> g(w_->s_->mu);
  w_->s_->active = false;
}

}  // namespace r1dist
