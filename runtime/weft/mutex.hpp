// weft: an asynchronous mutex for tasks, with FIFO hand-off, and its RAII guard.
#pragma once

#include <coroutine>
#include <mutex>
#include <stdexcept>
#include <utility>

#include <weft/cancel.hpp>
#include <weft/detail/wait_queue.hpp>
#include <weft/errc.hpp>

namespace weft {

class mutex;
class condition_variable;

/// Owns a locked `weft::mutex` and unlocks it when destroyed (the result of
/// `co_await m.scoped_lock()`). Movable, not copyable; a moved-from or default guard owns nothing.
/// Thread-safety: a guard is used by one task at a time (it may be moved to another thread).
/// Lifetime: the mutex must outlive the guard.
class lock_guard {
 public:
  /// A guard that owns nothing.
  lock_guard() noexcept = default;
  /// Takes over `m`, which the caller has locked (for example after `m.try_lock()`).
  lock_guard(mutex& m, std::adopt_lock_t) noexcept : mutex_(&m) {}
  /// Takes over `other`'s ownership (`other` then owns nothing).
  lock_guard(lock_guard&& other) noexcept : mutex_(std::exchange(other.mutex_, nullptr)) {}
  /// Unlocks the mutex owned so far, then takes over `other`'s.
  lock_guard& operator=(lock_guard&& other) noexcept {
    if (this != &other) {
      reset();
      mutex_ = std::exchange(other.mutex_, nullptr);
    }
    return *this;
  }
  lock_guard(const lock_guard&) = delete;
  lock_guard& operator=(const lock_guard&) = delete;
  /// Unlocks the mutex if the guard owns it.
  ~lock_guard() { reset(); }

  /// True while the guard owns a locked mutex.
  bool owns_lock() const noexcept { return mutex_ != nullptr; }
  /// `owns_lock()`.
  explicit operator bool() const noexcept { return owns_lock(); }
  /// The mutex owned, or null.
  weft::mutex* get_mutex() const noexcept { return mutex_; }

  /// Unlocks now (the guard then owns nothing). Throws std::logic_error when it owns nothing.
  void unlock();
  /// Gives up ownership without unlocking and returns the mutex (the caller must unlock it).
  weft::mutex* release() noexcept { return std::exchange(mutex_, nullptr); }

 private:
  void reset() noexcept;
  weft::mutex* mutex_ = nullptr;
};

/// An asynchronous mutex: `co_await m.lock()` suspends the task (not the thread) until it owns
/// the mutex. Like asyncio.Lock, ownership is not tied to a task: any task or thread may call
/// `unlock()` (`lock_guard` is the safe way to pair them).
///
/// Fairness: waiters are served in FIFO order and `unlock()` hands ownership directly to the
/// first one (the mutex stays locked across the hand-off, so `try_lock()` or a new `lock()` can
/// never barge in ahead of a waiter).
///
/// Cancellation: a `lock()` whose task is stopped (before or while waiting) throws
/// `std::system_error` with `errc::cancelled` and does not own the mutex. If ownership was handed
/// over before the stop won the race, `lock()` returns normally and the caller owns the mutex.
///
/// Thread-safety: every member may be called from any thread; waiters on different executors are
/// each resumed on their own executor. Lifetime: the mutex must outlive every waiter and guard;
/// destroying it while a task waits is undefined. Not movable.
class mutex {
 public:
  mutex() = default;
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  /// The awaitable of `lock()`: returns once the caller owns the mutex; throws
  /// `errc::cancelled` (not owning it).
  class [[nodiscard]] lock_awaitable : public detail::primitive_wait<mutex> {
    friend class mutex;
    lock_awaitable(mutex& m, bool observe_stop) noexcept : primitive_wait(m, observe_stop) {}
  };

  /// The awaitable of `scoped_lock()`: `lock()` that gives a guard.
  class [[nodiscard]] scoped_lock_awaitable : public detail::primitive_wait<mutex> {
   public:
    /// A guard owning the mutex; throws `errc::cancelled` (not owning it).
    lock_guard await_resume() {
      primitive_wait::await_resume();
      return lock_guard(*primitive_, std::adopt_lock);
    }

   private:
    friend class mutex;
    explicit scoped_lock_awaitable(mutex& m) noexcept : primitive_wait(m) {}
  };

  /// `co_await m.lock()` returns once the caller owns the mutex (at once when it is free and
  /// nobody waits). Throws `std::system_error`: `errc::cancelled` when the task's stop is
  /// requested first, `errc::no_runtime` when it would have to wait outside a weft executor.
  lock_awaitable lock() noexcept { return lock_awaitable(*this, true); }

  /// `co_await m.scoped_lock()` locks like `lock()` and returns a `lock_guard` that unlocks on
  /// destruction. Same errors as `lock()`.
  scoped_lock_awaitable scoped_lock() noexcept { return scoped_lock_awaitable(*this); }

  /// Locks if the mutex is free (then nobody waits either); never waits. True when locked.
  bool try_lock() noexcept {
    std::lock_guard lock(mutex_);
    return take_if_free();
  }

  /// Releases the mutex: hands it to the first waiter (which is scheduled on its executor) or
  /// makes it free. Throws std::logic_error when the mutex is not locked.
  void unlock() {
    detail::wake_list wakes;
    std::lock_guard lock(mutex_);
    if (!locked_) throw std::logic_error("weft::mutex::unlock: the mutex is not locked");
    if (detail::wait_node* next = waiters_.grant_next()) {
      wakes.add(*next);  // ownership passes on: locked_ stays true
    } else {
      locked_ = false;
    }
  }

  /// Whether the mutex is locked right now (a snapshot, for diagnostics and assertions).
  bool is_locked() const noexcept {
    std::lock_guard lock(mutex_);
    return locked_;
  }

 private:
  friend class condition_variable;
  friend class detail::primitive_wait<mutex>;
  static constexpr const char* wait_what = "weft::mutex::lock";
  bool wait_ready() noexcept { return take_if_free(); }

  bool take_if_free() noexcept {
    if (locked_) return false;
    locked_ = true;
    return true;
  }
  /// A lock that ignores stop requests: condition_variable re-locks with it before it throws.
  lock_awaitable lock_ignoring_stop() noexcept { return lock_awaitable(*this, false); }

  mutable std::mutex mutex_;
  bool locked_ = false;
  detail::wait_list waiters_;
};

inline void lock_guard::unlock() {
  if (mutex_ == nullptr) throw std::logic_error("weft::lock_guard::unlock: owns no mutex");
  std::exchange(mutex_, nullptr)->unlock();
}

inline void lock_guard::reset() noexcept {
  // The guard owns the lock, so unlock() cannot find it unlocked (unless someone else unlocked
  // it behind the guard's back, a bug that terminates here).
  if (mutex_ != nullptr) std::exchange(mutex_, nullptr)->unlock();
}

}  // namespace weft
