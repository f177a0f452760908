// weft: a single-use countdown latch for tasks.
#pragma once

#include <coroutine>
#include <cstddef>
#include <mutex>
#include <stdexcept>

#include <weft/cancel.hpp>
#include <weft/detail/wait_queue.hpp>
#include <weft/errc.hpp>

namespace weft {

/// A single-use countdown (std::latch for tasks): `count_down()` decrements the counter, and
/// `co_await l.wait()` returns once it has reached zero, which it never leaves.
///
/// Cancellation: a `wait()` whose task is stopped (before or while waiting) throws
/// `std::system_error` with `errc::cancelled`, unless the count reached zero and woke it first.
///
/// Thread-safety: every member may be called from any thread. Lifetime: the latch must outlive
/// every waiter. Not copyable or movable.
class latch {
 public:
  /// A latch that opens after `count` count-downs (at once when `count` is 0).
  explicit latch(std::size_t count) noexcept : count_(count) {}
  latch(const latch&) = delete;
  latch& operator=(const latch&) = delete;

  /// The awaitable of `wait()`: returns once the count is zero; throws `errc::cancelled`.
  class [[nodiscard]] wait_awaitable : public detail::primitive_wait<latch> {
    friend class latch;
    explicit wait_awaitable(latch& l) noexcept : primitive_wait(l) {}
  };

  /// Decrements the count by `n`; reaching zero wakes every waiter (each on its own executor).
  /// Throws std::logic_error (changing nothing) when `n` exceeds the remaining count.
  void count_down(std::size_t n = 1) {
    detail::wake_list wakes;
    std::lock_guard lock(mutex_);
    if (n > count_)
      throw std::logic_error("weft::latch::count_down: more than the remaining count");
    count_ -= n;
    if (count_ == 0) {
      while (detail::wait_node* w = waiters_.grant_next()) wakes.add(*w);
    }
  }

  /// `co_await l.wait()` returns once the count is zero (at once if it already is). Throws
  /// `std::system_error`: `errc::cancelled` when the task's stop is requested first,
  /// `errc::no_runtime` when it would have to wait outside a weft executor.
  wait_awaitable wait() noexcept { return wait_awaitable(*this); }

  /// True when the count is zero; never waits.
  bool try_wait() const noexcept {
    std::lock_guard lock(mutex_);
    return count_ == 0;
  }

 private:
  friend class detail::primitive_wait<latch>;
  static constexpr const char* wait_what = "weft::latch::wait";
  bool wait_ready() const noexcept { return count_ == 0; }

  mutable std::mutex mutex_;
  std::size_t count_;
  detail::wait_list waiters_;
};

}  // namespace weft
