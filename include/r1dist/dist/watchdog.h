// The collective watchdog: one thread per process that ends it when a watched collective
// (MPI or NCCL) has not finished after a timeout. A dead peer (SIGKILL, OOM) otherwise
// leaves the other ranks waiting forever; ending the rank lets mpirun tear the job down.
#pragma once
#include <cstdint>
#include <memory>

namespace r1dist {

class Watchdog {
 public:
  // timeout_s <= 0: no thread, nothing is ever ended.
  explicit Watchdog(int64_t timeout_s);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Marks a collective as in progress for the lifetime of the object.
  class Watch {
   public:
    Watch(Watchdog* w, const char* what);
    ~Watch();
    Watch(const Watch&) = delete;
    Watch& operator=(const Watch&) = delete;

   private:
    Watchdog* w_;
  };

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace r1dist
