// weft: an asynchronous counting semaphore for tasks.
#pragma once

#include <coroutine>
#include <cstddef>
#include <limits>
#include <mutex>
#include <stdexcept>

#include <weft/cancel.hpp>
#include <weft/detail/wait_queue.hpp>
#include <weft/errc.hpp>

namespace weft {

/// A counting semaphore: `co_await s.acquire()` takes a permit, waiting (the task, not the
/// thread) while none is available; `release(n)` gives permits back.
///
/// Fairness: waiters are served in FIFO order and `release` hands each permit directly to the
/// first waiter, so `try_acquire()` or a new `acquire()` never takes a permit ahead of a waiter.
///
/// Cancellation: an `acquire()` whose task is stopped (before or while waiting) throws
/// `std::system_error` with `errc::cancelled` and holds no permit; a permit released to it while
/// the stop raced is never lost: either `acquire()` returns normally with it, or it goes to the
/// next waiter (or back to the count).
///
/// Thread-safety: every member may be called from any thread. Lifetime: the semaphore must
/// outlive every waiter. Not copyable or movable.
class semaphore {
 public:
  /// A semaphore with `initial` permits.
  explicit semaphore(std::size_t initial = 0) noexcept : count_(initial) {}
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  /// The awaitable of `acquire()`: returns holding one permit; throws `errc::cancelled`
  /// (holding none).
  class [[nodiscard]] acquire_awaitable : public detail::primitive_wait<semaphore> {
    friend class semaphore;
    explicit acquire_awaitable(semaphore& s) noexcept : primitive_wait(s) {}
  };

  /// `co_await s.acquire()` returns once the caller holds one permit. Throws
  /// `std::system_error`: `errc::cancelled` when the task's stop is requested first,
  /// `errc::no_runtime` when it would have to wait outside a weft executor.
  acquire_awaitable acquire() noexcept { return acquire_awaitable(*this); }

  /// Takes a permit if one is available; never waits.
  bool try_acquire() noexcept {
    std::lock_guard lock(mutex_);
    return take();
  }

  /// Gives back `n` permits: each goes to the first waiter (scheduled on its executor), the rest
  /// to the count. Throws std::overflow_error (changing nothing) if the count would overflow.
  void release(std::size_t n = 1) {
    detail::wake_list wakes;
    std::lock_guard lock(mutex_);
    // Exact: with permits in the count nobody waits, so all `n` would go to the count.
    if (n > std::numeric_limits<std::size_t>::max() - count_) {
      throw std::overflow_error("weft::semaphore::release: permit count overflow");
    }
    for (; n > 0; --n) {
      detail::wait_node* next = waiters_.grant_next();
      if (next == nullptr) break;
      wakes.add(*next);
    }
    count_ += n;
  }

  /// The permits available right now (a snapshot).
  std::size_t available() const noexcept {
    std::lock_guard lock(mutex_);
    return count_;
  }

 private:
  friend class detail::primitive_wait<semaphore>;
  static constexpr const char* wait_what = "weft::semaphore::acquire";
  bool wait_ready() noexcept { return take(); }
  bool take() noexcept {
    if (count_ == 0) return false;
    --count_;
    return true;
  }

  mutable std::mutex mutex_;
  std::size_t count_;
  detail::wait_list waiters_;
};

}  // namespace weft
