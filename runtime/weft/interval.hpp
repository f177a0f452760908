// weft: interval, a periodic timer for tasks.
#pragma once

#include <chrono>
#include <stdexcept>

#include <weft/task.hpp>
#include <weft/time.hpp>

namespace weft {

/// What `interval::tick()` does about ticks missed while the task was busy (or its executor
/// was), the names of Tokio's MissedTickBehavior.
enum class missed_tick {
  /// The default (Go's time.Ticker does the same): missed ticks are dropped; the next tick is
  /// the next point of the original schedule after now. A stall never causes a burst.
  skip,
  /// Every missed tick fires, at once, one per `tick()`, until the schedule is caught up.
  burst,
  /// The schedule restarts: the next tick is one period after the late tick fired.
  delay,
};

/// A periodic timer: `weft::interval every(5ms); for (;;) { co_await every.tick(); ... }`.
///
/// The first `tick()` completes at once; the following ones at `start + k * period` on
/// `weft::clock` (a steady clock), with missed ticks handled as `missed_tick` says (`skip` by
/// default). Each tick is a sleep (see `sleep_until`): it costs no kernel timer, and a stop
/// request ends it with `std::system_error` / `errc::cancelled` (the schedule is then
/// unchanged). Errors: `std::invalid_argument` from the constructor for a period <= 0;
/// `errc::no_runtime` when a tick must wait outside `weft::run`.
/// Thread-safety: one task at a time per interval.
class interval {
 public:
  /// An interval of `period` whose first tick is now.
  template <class Rep, class Period>
  explicit interval(std::chrono::duration<Rep, Period> period,
                    missed_tick behavior = missed_tick::skip)
      : period_(detail::saturating(period)), behavior_(behavior), next_(weft::now()) {
    if (period_ <= clock::duration::zero()) {
      throw std::invalid_argument("weft::interval: the period must be positive");
    }
  }

  /// Waits for the next tick and gives the time it was scheduled for (the real time may be
  /// later, by the scheduling delay or a stall).
  task<clock::time_point> tick() {
    co_await sleep_until(next_);
    const clock::time_point scheduled = next_;
    const clock::time_point now = weft::now();
    switch (behavior_) {
      case missed_tick::burst: next_ = scheduled + period_; break;
      case missed_tick::delay: next_ = now + period_; break;
      case missed_tick::skip:
        next_ = scheduled + period_ * ((now - scheduled) / period_ + 1);
        break;
    }
    co_return scheduled;
  }

  /// Restarts the schedule: the next tick is one period from now.
  void reset() noexcept { next_ = weft::now() + period_; }

  /// The period.
  clock::duration period() const noexcept { return period_; }
  /// The missed-tick behaviour.
  missed_tick behavior() const noexcept { return behavior_; }

 private:
  clock::duration period_;
  missed_tick behavior_;
  clock::time_point next_;  // when the next tick is due
};

}  // namespace weft
