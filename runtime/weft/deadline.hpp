// weft: time limits as values (try_with_timeout) and limits given as a point in time
// (with_deadline, try_with_deadline).
#pragma once

#include <chrono>
#include <coroutine>
#include <optional>
#include <type_traits>
#include <utility>

#include <weft/detail/children.hpp>
#include <weft/errc.hpp>
#include <weft/task.hpp>
#include <weft/time.hpp>
#include <weft/when.hpp>

namespace weft {

namespace detail {

/// with_timeout's awaitable, with the limit given as a deadline (fixed when the call is made,
/// not when it is awaited), and, when `AsOptional`, the expiry given as `std::nullopt`.
template <class T, bool AsOptional>
class limit_awaitable : private timeout_awaitable<T> {
  using base = timeout_awaitable<T>;

 public:
  limit_awaitable(std::optional<clock::time_point> deadline, clock::duration limit, task<T> t)
      : base(limit, std::move(t)), deadline_(deadline) {}

  using base::await_ready;

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> awaiting) {
    if (deadline_) this->limit_ = saturating(*deadline_ - weft::now());
    return base::await_suspend(awaiting);
  }

  auto await_resume() {
    if constexpr (AsOptional) {
      using value = std::optional<stored_t<T>>;
      if (this->limit_ended_it()) return value();
      if constexpr (std::is_void_v<T>) {
        this->outcome_.take();
        return value(std::monostate{});
      } else {
        return value(this->outcome_.take());
      }
    } else {
      return base::await_resume();
    }
  }

 private:
  std::optional<clock::time_point> deadline_;
};

template <class A>
task<awaited_t<A>> await_ref_in_task(A& a) {
  co_return co_await a;
}
template <class A>
task<awaited_t<A>> await_owned_in_task(A a) {
  co_return co_await std::move(a);
}

template <bool AsOptional, class Source>
auto make_limit(std::optional<clock::time_point> deadline, clock::duration limit, Source&& source) {
  using S = std::remove_cvref_t<Source>;
  if constexpr (is_task_v<S>) {
    return limit_awaitable<typename S::value_type, AsOptional>(deadline, limit,
                                                               std::forward<Source>(source));
  } else if constexpr (std::is_lvalue_reference_v<Source>) {
    // An lvalue (a join_handle, an awaitable the caller keeps): awaited where it is.
    auto t = await_ref_in_task(source);
    return limit_awaitable<typename decltype(t)::value_type, AsOptional>(deadline, limit,
                                                                         std::move(t));
  } else {
    auto t = await_owned_in_task(std::move(source));
    return limit_awaitable<typename decltype(t)::value_type, AsOptional>(deadline, limit,
                                                                         std::move(t));
  }
}

}  // namespace detail

/// `with_timeout` with the expiry as a value: `co_await try_with_timeout(10ms, ch.recv())` gives
/// `std::optional<R>` (R: what the task or awaitable gives; `std::monostate` for void), and
/// `std::nullopt` when `limit` passed first (the task or awaitable was then cancelled and
/// waited for). Everything else is as for `with_timeout`: a value produced even as the limit
/// passed is returned, never dropped (so a channel receive that raced the limit loses no item);
/// the task's own exceptions and the caller's cancellation (`errc::cancelled`) propagate.
/// An awaitable given as an rvalue is moved into a task of their own (one frame); one given as
/// an lvalue (a `join_handle`) is awaited in place and must outlive the call.
template <class Rep, class Period, class Source>
[[nodiscard]] auto try_with_timeout(std::chrono::duration<Rep, Period> limit, Source&& source) {
  return detail::make_limit<true>(std::nullopt, detail::saturating(limit),
                                  std::forward<Source>(source));
}

/// `with_timeout` with the limit as a point on `weft::clock`: throws `std::system_error` with
/// `errc::timed_out` when `deadline` passes first (one already past: the task or awaitable gets
/// a stop at once, before or as it starts). Useful when several steps share one deadline.
template <class Source>
[[nodiscard]] auto with_deadline(clock::time_point deadline, Source&& source) {
  return detail::make_limit<false>(deadline, clock::duration::zero(), std::forward<Source>(source));
}

/// `with_deadline` with the expiry as a value (`std::nullopt`), as `try_with_timeout`.
template <class Source>
[[nodiscard]] auto try_with_deadline(clock::time_point deadline, Source&& source) {
  return detail::make_limit<true>(deadline, clock::duration::zero(), std::forward<Source>(source));
}

}  // namespace weft
