// weft: a manual-reset event for tasks.
#pragma once

#include <coroutine>
#include <mutex>

#include <weft/cancel.hpp>
#include <weft/detail/wait_queue.hpp>
#include <weft/errc.hpp>

namespace weft {

/// A manual-reset event (asyncio.Event): `co_await e.wait()` returns once the event is set;
/// `set()` wakes every waiter and lets later waits through until `reset()`.
///
/// A waiter woken by `set()` returns normally even if `reset()` follows before it runs.
/// Cancellation: a `wait()` whose task is stopped (before or while waiting) throws
/// `std::system_error` with `errc::cancelled`, unless `set()` woke it first.
///
/// Thread-safety: every member may be called from any thread. Lifetime: the event must outlive
/// every waiter. Not copyable or movable.
class event {
 public:
  /// An event that starts cleared (or set, with `initially_set`).
  explicit event(bool initially_set = false) noexcept : set_(initially_set) {}
  event(const event&) = delete;
  event& operator=(const event&) = delete;

  /// The awaitable of `wait()`: returns once the event was set; throws `errc::cancelled`.
  class [[nodiscard]] wait_awaitable : public detail::primitive_wait<event> {
    friend class event;
    explicit wait_awaitable(event& e) noexcept : primitive_wait(e) {}
  };

  /// `co_await e.wait()` returns at once when the event is set, otherwise once `set()` is called.
  /// Throws `std::system_error`: `errc::cancelled` when the task's stop is requested first,
  /// `errc::no_runtime` when it would have to wait outside a weft executor.
  wait_awaitable wait() noexcept { return wait_awaitable(*this); }

  /// Sets the event and wakes every waiter (each on its own executor). Idempotent.
  void set() noexcept {
    detail::wake_list wakes;
    std::lock_guard lock(mutex_);
    set_ = true;
    while (detail::wait_node* n = waiters_.grant_next()) wakes.add(*n);
  }

  /// Clears the event: later waits suspend until the next `set()`.
  void reset() noexcept {
    std::lock_guard lock(mutex_);
    set_ = false;
  }

  /// Whether the event is set right now (a snapshot).
  bool is_set() const noexcept {
    std::lock_guard lock(mutex_);
    return set_;
  }

 private:
  friend class detail::primitive_wait<event>;
  static constexpr const char* wait_what = "weft::event::wait";
  bool wait_ready() const noexcept { return set_; }

  mutable std::mutex mutex_;
  bool set_;
  detail::wait_list waiters_;
};

}  // namespace weft
