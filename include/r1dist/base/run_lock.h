// One run per output directory: an exclusive flock(2) on DIR/.r1dist.lock, held for as long as
// the RunLock lives. The kernel drops the lock when the process dies, however it dies, so a
// killed run never leaves a stale lock behind; the file itself stays and names the last holder.
// Why flock and not a pid file: a pid file outlives a SIGKILL and then needs guessing.
#pragma once
#include <string>

namespace r1dist {

class RunLock {
 public:
  // Takes the lock or throws UsageError naming the holder ("host vm, pid 1234, since
  // 2026-12-01 04:40:00, r1dist --cfg ..."). `what` describes this process for the next one.
  static RunLock acquire(const std::string& dir, const std::string& what);
  RunLock() = default;
  ~RunLock();
  RunLock(RunLock&& o) noexcept;
  RunLock& operator=(RunLock&& o) noexcept;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace r1dist
