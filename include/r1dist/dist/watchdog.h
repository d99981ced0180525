// The deadline of dist.timeout_s (dist/process_group.h) for a blocking call that cannot be
// polled (ncclCommInitRank): one thread that ends the process (exit code 1, the deadline's
// message) when the watched call has not returned in time; mpirun then tears the job down.
// Every other collective is polled against the deadline in process_group.cpp.
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
