// leasefs/lock/clock.h — the one source of time for lease logic.
//
// Lease safety rests on a single rule: a host judges time only by its own monotonic clock
// (no wall clock, no clock shared between hosts is trusted). Everything that measures a lease,
// a deadline or an idle period asks a Clock, so tests drive time by hand instead of sleeping.
#pragma once

#include <chrono>
#include <mutex>

namespace leasefs::lock {

using Duration = std::chrono::nanoseconds;
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

// CLOCK_MONOTONIC: never jumps, does not advance while the machine is suspended.
class SteadyClock final : public Clock {
 public:
  TimePoint now() const override { return std::chrono::steady_clock::now(); }
};

// A clock that moves only when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start = TimePoint(std::chrono::hours(1))) : now_(start) {}
  TimePoint now() const override {
    std::lock_guard<std::mutex> guard(mutex_);
    return now_;
  }
  void advance(Duration by) {
    std::lock_guard<std::mutex> guard(mutex_);
    now_ += by;
  }

 private:
  mutable std::mutex mutex_;
  TimePoint now_;
};

}  // namespace leasefs::lock
