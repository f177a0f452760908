// weft: check(), the check point that CPU-bound code calls.
#pragma once

namespace weft {

namespace detail {
/// Set by executors that need check points (the single-lock executor hands its lock over
/// there); null everywhere else, so check() is one thread-local load and a branch.
inline thread_local void (*check_hook)() = nullptr;
}  // namespace detail

/// A check point for CPU-bound loops. On the cooperative and multi-thread executors it does next
/// to nothing; on the single-lock executor it is where the global lock may change hands (like
/// CPython's eval-loop check). Never throws and is not a cancellation point: a loop that must
/// stop on cancellation also awaits `yield_now()` now and then, or checks
/// `co_await get_stop_token()`. Callable from any thread.
inline void check() noexcept {
  if (auto hook = detail::check_hook) hook();
}

}  // namespace weft
