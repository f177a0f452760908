// weft: sleeping, yielding and time limits.
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <optional>
#include <type_traits>
#include <utility>

#include <weft/cancel.hpp>
#include <weft/detail/children.hpp>
#include <weft/detail/coop.hpp>
#include <weft/detail/timer_heap.hpp>
#include <weft/errc.hpp>
#include <weft/executor.hpp>
#include <weft/task.hpp>

namespace weft {

namespace detail {

/// `now + d`, saturated at the clock's limits (a "practically forever" duration must not
/// overflow into the past).
template <class Rep, class Period>
clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) noexcept {
  const clock::time_point now = weft::now();
  using wide = std::chrono::duration<long double, std::nano>;
  // Computed in floating point: `time_point::min() - now` itself would overflow.
  const wide since_epoch = wide(now.time_since_epoch());
  const wide room_up = wide(clock::time_point::max().time_since_epoch()) - since_epoch;
  const wide room_down = wide(clock::time_point::min().time_since_epoch()) - since_epoch;
  const wide wanted = std::chrono::duration_cast<wide>(d);
  if (wanted >= room_up) return clock::time_point::max();
  if (wanted <= room_down) return clock::time_point::min();
  return now + std::chrono::ceil<clock::duration>(wanted);
}

/// `d` in the clock's units, rounded up and saturated at its limits.
template <class Rep, class Period>
clock::duration saturating(std::chrono::duration<Rep, Period> d) noexcept {
  using wide = std::chrono::duration<long double, std::nano>;
  const wide w = std::chrono::duration_cast<wide>(d);
  if (w >= wide(clock::duration::max())) return clock::duration::max();
  if (w <= wide(clock::duration::min())) return clock::duration::min();
  return std::chrono::ceil<clock::duration>(w);
}

inline executor& current_executor_or_throw(const char* what) {
  executor* ex = executor::current();
  if (ex == nullptr) throw_error(errc::no_runtime, what);
  return *ex;
}

/// The awaitable behind sleep_until/sleep_for. It is its own timer node and its own cancel
/// waiter, so sleeping allocates nothing: the executor's timer heap and the task's cancel scope
/// hold pointers into the sleeping coroutine's frame.
class sleep_awaitable : private timer_node, private cancel_scope::waiter {
 public:
  explicit sleep_awaitable(clock::time_point deadline) noexcept { this->deadline = deadline; }
  /// Movable until awaited (when_any and with_timeout take awaitables by value): the moved-to
  /// sleep starts fresh with the same deadline.
  sleep_awaitable(sleep_awaitable&& other) noexcept : timer_node(), cancel_scope::waiter() {
    this->deadline = other.deadline;
  }
  sleep_awaitable& operator=(const sleep_awaitable&) = delete;

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    cancel_scope* scope = scope_of(h);
    if (scope != nullptr && scope->stop_requested()) {
      state_.store(cancelled, std::memory_order_relaxed);
      return false;
    }
    if (deadline <= weft::now()) return coop_yield(h);  // past: no wait, but budgeted
    executor_ = &current_executor_or_throw("weft::sleep outside weft::run");
    if (promise_base* me = tls_current_task) {
      me->describe_wait(
          "sleep", wait_arg::deadline,
          std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch())
              .count());
    }
    handle_ = h;
    on_expire = &sleep_awaitable::expire;
    executor_->add_timer(*this);
    if (scope != nullptr) {
      on_stop = &sleep_awaitable::stop;
      scope_ = scope;  // before registering: once registered, *this is not touched again
      if (!scope->add_waiter(*this)) {  // stopped in between: do not sleep at all
        scope_ = nullptr;
        executor_->cancel_timer(*this);
        state_.store(cancelled, std::memory_order_relaxed);
        return false;
      }
    }
    return true;
  }

  /// Returns normally at or after the deadline; throws `std::system_error` with
  /// `errc::cancelled` when the task's stop was requested first.
  void await_resume() {
    if (scope_ != nullptr) scope_->remove_waiter(*this);  // waits for a callback in flight
    if (state_.load(std::memory_order_acquire) == cancelled) {
      if (executor_ != nullptr) executor_->cancel_timer(*this);
      throw_error(errc::cancelled, "weft::sleep cancelled");
    }
  }

 private:
  enum : int { waiting, fired, cancelled };
  static void stop(cancel_scope::waiter* w) noexcept {
    auto* self = static_cast<sleep_awaitable*>(w);
    int expected = waiting;
    if (self->state_.compare_exchange_strong(expected, cancelled, std::memory_order_acq_rel)) {
      self->executor_->schedule(self->handle_);
    }
  }
  static void expire(timer_node* node) noexcept {
    auto* self = static_cast<sleep_awaitable*>(node);
    int expected = waiting;
    if (self->state_.compare_exchange_strong(expected, fired, std::memory_order_acq_rel)) {
      self->executor_->schedule(self->handle_);
    }
  }

  // state_ first: it fits in the tail padding of the waiter base.
  std::atomic<int> state_{waiting};
  std::coroutine_handle<> handle_;
  executor* executor_ = nullptr;
  cancel_scope* scope_ = nullptr;
};

class yield_awaitable {
 public:
  static constexpr bool describes_own_wait = true;  // see tracked_awaiter
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    scope_ = scope_of(h);
    if (scope_ != nullptr && scope_->stop_requested()) return false;  // throw without a turn
    executor& ex = current_executor_or_throw("weft::yield_now outside weft::run");
    if (promise_base* me = tls_current_task) me->describe_wait("yield", wait_arg::queued, 0);
    ex.defer(h);
    return true;
  }
  void await_resume() const {
    if (scope_ != nullptr && scope_->stop_requested()) {
      throw_error(errc::cancelled, "weft::yield_now cancelled");
    }
  }

 private:
  cancel_scope* scope_ = nullptr;
};

template <class T>
class timeout_awaitable : private timer_node {
 public:
  timeout_awaitable(clock::duration limit, task<T> t) : limit_(limit), task_(std::move(t)) {}

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> awaiting) {
    parent_scope_ = scope_of(awaiting);
    scope_.emplace(parent_scope_);
    counter_.emplace(1, &*scope_);
    executor_ = &current_executor_or_throw("weft::with_timeout outside weft::run");
    child_ = run_child(std::move(task_), outcome_, *counter_, 0);  // may throw: before the timer
    deadline = deadline_after(limit_);
    on_expire = &timeout_awaitable::expire;
    executor_->add_timer(*this);
    return counter_->start(awaiting, [&] { child_.start(*counter_); });
  }

  /// The task's value if it produced one (even if the time ran out as it finished); otherwise
  /// `errc::timed_out` when the limit caused the stop, or the task's own exception.
  auto await_resume() {
    if (limit_ended_it()) throw_error(errc::timed_out, "weft::with_timeout");
    if constexpr (std::is_void_v<T>) {
      outcome_.take();
    } else {
      return outcome_.take();
    }
  }

 protected:
  // After the wait: true when the limit stopped the task (it ended with errc::cancelled because
  // the time ran out, not because the caller was cancelled).
  bool limit_ended_it() {
    executor_->cancel_timer(*this);
    if (!outcome_.has_error() || !timed_out_ ||
        (parent_scope_ && parent_scope_->stop_requested())) {
      return false;
    }
    try {
      std::rethrow_exception(outcome_.error());
    } catch (const std::system_error& e) {
      return e.code() == errc::cancelled;
    } catch (...) {
      return false;
    }
  }

  static void expire(timer_node* node) noexcept {
    auto* self = static_cast<timeout_awaitable*>(node);
    self->timed_out_ = true;
    self->scope_->request_stop();
  }

  clock::duration limit_;  // from await_suspend on; a deadline awaitable sets it there first
  task<T> task_;
  outcome<T> outcome_;

 private:
  executor* executor_ = nullptr;
  cancel_scope* parent_scope_ = nullptr;
  std::optional<linked_cancel_scope> scope_;
  std::optional<join_counter> counter_;
  child child_;
  bool timed_out_ = false;
};

}  // namespace detail

/// Suspends the calling task until `deadline` (on `weft::clock`, a steady clock).
/// Costs no kernel timer: the executor keeps sleepers in a per-thread heap and gives its ring
/// one wait timeout, the earliest deadline. A deadline in the past returns at once.
/// Throws `std::system_error` with `errc::cancelled` promptly when the task's stop is requested
/// (before or during the sleep), and `errc::no_runtime` outside `weft::run`.
/// Thread-safety: the stop may be requested from any thread.
[[nodiscard]] inline detail::sleep_awaitable sleep_until(clock::time_point deadline) noexcept {
  return detail::sleep_awaitable(deadline);
}

/// Suspends the calling task for `d`; see sleep_until.
template <class Rep, class Period>
[[nodiscard]] detail::sleep_awaitable sleep_for(std::chrono::duration<Rep, Period> d) noexcept {
  return detail::sleep_awaitable(detail::deadline_after(d));
}

/// Puts the calling task at the back of its executor's run queue, letting every task that is
/// ready run first. It is a cancellation point: when the task's stop has been requested it
/// throws `std::system_error` with `errc::cancelled` (so a CPU-bound loop that yields can be
/// cancelled, timed out, and stopped at shutdown). Throws `errc::no_runtime` outside
/// `weft::run`.
[[nodiscard]] inline detail::yield_awaitable yield_now() noexcept {
  return {};
}

/// Runs `t` with a time limit. When `limit` passes first, `t` is cancelled (its waits end with
/// `errc::cancelled`), the call waits for `t` to finish, then throws `std::system_error` with
/// `errc::timed_out`. A value that `t` produced is never dropped: if it finishes with a value,
/// that value is returned even when the limit passed meanwhile. So a task whose cancelled wait
/// yields a value rather than an exception (an io_uring operation gives -ECANCELED) returns that
/// value: check it. If the caller itself is cancelled, `errc::cancelled` propagates unchanged.
template <class T, class Rep, class Period>
[[nodiscard]] auto with_timeout(std::chrono::duration<Rep, Period> limit, task<T> t) {
  return detail::timeout_awaitable<T>(detail::saturating(limit), std::move(t));
}

namespace detail {
template <class T>
inline constexpr bool is_task_v = false;
template <class T>
inline constexpr bool is_task_v<task<T>> = true;

template <class Awaitable>
using await_result_t = decltype(std::declval<Awaitable&>().await_resume());

// Awaits `a` inside a task of its own, so that with_timeout can cancel it.
template <class Awaitable>
task<await_result_t<Awaitable>> await_in_task(Awaitable a) {
  co_return co_await std::move(a);
}
}  // namespace detail

/// Runs one awaitable that is not a task (an I/O operation such as `stream.read(buffer)`) with
/// a time limit; see the overload above. The awaitable is moved into a task of its own (one
/// frame), so it must be movable before it is awaited, as weft's I/O operations are.
/// Example: `auto n = co_await with_timeout(5s, conn.read(buffer));` throws `errc::timed_out`
/// when nothing arrives for 5 s, and the read is cancelled and waited for first.
template <class Rep, class Period, class Awaitable>
requires(!detail::is_task_v<std::remove_cvref_t<Awaitable>> &&
         std::is_move_constructible_v<std::remove_cvref_t<Awaitable>>)
    [[nodiscard]] auto with_timeout(std::chrono::duration<Rep, Period> limit, Awaitable&& a) {
  using A = std::remove_cvref_t<Awaitable>;
  return with_timeout(limit, detail::await_in_task<A>(std::forward<Awaitable>(a)));
}

}  // namespace weft
