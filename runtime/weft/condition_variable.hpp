// weft: a condition variable for tasks, used with weft::mutex.
#pragma once

#include <coroutine>
#include <mutex>
#include <stdexcept>
#include <utility>

#include <weft/cancel.hpp>
#include <weft/detail/wait_queue.hpp>
#include <weft/errc.hpp>
#include <weft/mutex.hpp>
#include <weft/task.hpp>

namespace weft {

/// A condition variable for tasks holding a `weft::mutex` (asyncio.Condition with the lock
/// passed to each wait): `co_await cv.wait(guard)` atomically unlocks the mutex and waits for a
/// notification, then locks the mutex again before it returns.
///
/// "Atomically": a `notify_*()` that follows the unlock (from whoever locks the mutex next, or
/// any other thread) always finds the waiter registered. Waiters are notified in FIFO order.
/// There are no spurious wake-ups of weft's own making, but a woken task competes for the mutex
/// with others, so re-check the condition: use the predicate overloads.
///
/// Cancellation: a `wait()` whose task is stopped (before or while waiting) re-locks the mutex
/// (ignoring the stop for that) and then throws `std::system_error` with `errc::cancelled`, so
/// the caller's guard still owns the mutex as it unwinds. A notification that raced the stop is
/// not lost: either the wait returns normally, or `notify_one` passes it to the next waiter.
///
/// Allocation: each `wait()` is a small task, one frame from weft's frame allocator (the wait
/// itself allocates nothing more).
///
/// Thread-safety: every member may be called from any thread; notifiers need not hold the mutex.
/// Lifetime: the condition variable and the mutex must outlive every waiter. Not movable.
class condition_variable {
 public:
  condition_variable() = default;
  condition_variable(const condition_variable&) = delete;
  condition_variable& operator=(const condition_variable&) = delete;

  /// Unlocks `m` (which the caller must have locked), waits for a notification and locks `m`
  /// again. Throws std::logic_error when `m` is not locked, `std::system_error` with
  /// `errc::cancelled` (after re-locking `m`) or `errc::no_runtime` (outside a weft executor, `m`
  /// still locked).
  task<> wait(mutex& m) {
    if (!m.is_locked()) {
      throw std::logic_error("weft::condition_variable::wait: the mutex is not locked");
    }
    const wait_outcome outcome = co_await wait_awaitable(*this, m);
    if (outcome != wait_outcome::cancelled_still_locked) co_await m.lock_ignoring_stop();
    if (outcome != wait_outcome::notified) {
      throw_error(errc::cancelled, "weft::condition_variable::wait cancelled");
    }
  }

  /// `wait(*guard.get_mutex())`: the guard owns the mutex again when this returns or throws.
  /// Throws std::logic_error when the guard owns no mutex.
  task<> wait(lock_guard& guard) { return wait(owned_mutex(guard)); }

  /// Waits until `pred()` is true: `while (!pred()) co_await wait(m);`. `pred` is called with the
  /// mutex locked. Same errors as `wait(m)`, and what `pred` throws.
  template <class Predicate>
  task<> wait(mutex& m, Predicate pred) {
    while (!pred()) co_await wait(m);
  }

  /// Waits until `pred()` is true, with `guard`'s mutex; see the overload above.
  template <class Predicate>
  task<> wait(lock_guard& guard, Predicate pred) {
    return wait(owned_mutex(guard), std::move(pred));
  }

  /// Wakes the first waiter, if any (it then re-locks the mutex on its own executor).
  void notify_one() noexcept {
    detail::wake_list wakes;
    std::lock_guard lock(mutex_);
    if (detail::wait_node* n = waiters_.grant_next()) wakes.add(*n);
  }

  /// Wakes every waiter.
  void notify_all() noexcept {
    detail::wake_list wakes;
    std::lock_guard lock(mutex_);
    while (detail::wait_node* n = waiters_.grant_next()) wakes.add(*n);
  }

 private:
  enum class wait_outcome { notified, cancelled, cancelled_still_locked };

  static mutex& owned_mutex(lock_guard& guard) {
    if (!guard.owns_lock()) {
      throw std::logic_error("weft::condition_variable::wait: the guard owns no mutex");
    }
    return *guard.get_mutex();
  }

  // Registers the waiter, then unlocks the user's mutex; resumes on notify or stop.
  class wait_awaitable : private detail::wait_node {
   public:
    wait_awaitable(condition_variable& cv, mutex& m) noexcept : cv_(&cv), mutex_(&m) {}
    /// Awaitable protocol: never ready, the fast path runs in await_suspend under the lock.
    bool await_ready() const noexcept { return false; }
    /// Awaitable protocol: completes at once (false) or queues the task and suspends it (true).
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) {
      cancel_scope* stop_scope = detail::scope_of(h);
      if (stop_scope != nullptr && stop_scope->stop_requested()) {
        outcome_ = wait_outcome::cancelled_still_locked;
        return false;
      }
      mutex* user_mutex = mutex_;  // *this may be resumed elsewhere once published
      {
        std::lock_guard lock(cv_->mutex_);
        if (!detail::park(*this, cv_->waiters_, h, stop_scope, what)) {
          outcome_ = wait_outcome::cancelled_still_locked;
          return false;
        }
      }
      user_mutex->unlock();  // after registering: a notify that follows it finds this waiter
      return true;
    }
    wait_outcome await_resume() noexcept {
      if (outcome_ == wait_outcome::cancelled_still_locked) return outcome_;
      if (scope != nullptr) {
        scope->remove_waiter(*this);
        scope = nullptr;
      }
      if (state.load(std::memory_order_acquire) == cancelled) {
        std::lock_guard lock(cv_->mutex_);
        if (linked) cv_->waiters_.remove(*this);
        return wait_outcome::cancelled;
      }
      return wait_outcome::notified;
    }

   private:
    static constexpr const char* what = "weft::condition_variable::wait";
    condition_variable* cv_;
    mutex* mutex_;
    wait_outcome outcome_ = wait_outcome::notified;
  };

  std::mutex mutex_;
  detail::wait_list waiters_;
};

}  // namespace weft
