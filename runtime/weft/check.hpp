// weft: check() and blocking(), the points where the single-lock executor's lock may change hands.
#pragma once

#include <atomic>
#include <type_traits>
#include <utility>

namespace weft {

namespace detail {
/// A flag nobody ever sets: what check() reads where no executor needs check points.
inline constinit const std::atomic<bool> check_never{false};
/// A flag that is always set: makes every check() call `slow` (the old GIL counts ticks there).
inline constinit const std::atomic<bool> check_always{true};

/// What check() looks at: a flag, and what to call when it is set. Every mode runs the same
/// instructions (a thread-local load, a relaxed load, a branch): on the cooperative executor,
/// and outside any runtime, `request` points at `check_never`; the single-lock executor points
/// it at its drop-request flag (CPython's eval_breaker works the same way), or at
/// `check_always` for the ticks policy; the multi-thread executor at a flag of the worker's own
/// (set when an idle worker wants it to poll its ring).
struct check_state {
  const std::atomic<bool>* request = &check_never;
  void (*slow)() = nullptr;
};
inline constinit thread_local check_state check_hook{};

/// Set by the single-lock executor on its threads: `release` drops the global lock before a
/// blocking call, `reacquire` takes it back after. Null elsewhere.
struct blocking_hooks {
  void (*release)();
  void (*reacquire)();
};
inline constinit thread_local const blocking_hooks* blocking_hook = nullptr;
}  // namespace detail

/// A check point for CPU-bound loops. On the cooperative executor it does next to nothing; on
/// the single-lock executor it is where the global lock may change hands (like CPython's
/// eval-loop check). On both threaded executors it is also where the thread, when an idle one
/// has seen it run the same task for a switch interval (`stall_interval`), polls its own ring
/// without blocking, so I/O that completed there (and its timers) gets served by another
/// thread while the loop goes on: the woken tasks are queued, never run inside check().
/// Never throws and is not a cancellation point: a loop that must stop on cancellation also
/// awaits `yield_now()` now and then, or checks `co_await get_stop_token()`. Callable from any
/// thread; its fast path is a load and a branch.
inline void check() noexcept {
  const detail::check_state& state = detail::check_hook;
  if (state.request->load(std::memory_order_relaxed)) [[unlikely]]
    state.slow();
}

/// Runs `fn()` (a blocking call: a read(2), a sleep, a computation in a C library that never
/// calls check()) and returns what it returns. On the single-lock executor the global lock is
/// dropped while `fn` runs, so the other threads run tasks meanwhile (CPython releases the GIL
/// around blocking system calls the same way); `fn` must not touch weft tasks or
/// non-thread-safe state that tasks share. Elsewhere it simply calls `fn`, which then blocks its
/// thread: on the cooperative and multi-thread executors prefer `co_await spawn_blocking(fn)`.
/// Rethrows what `fn` throws (the lock is taken back first). Callable from any thread.
template <class Fn>
decltype(auto) blocking(Fn&& fn) {
  const detail::blocking_hooks* hooks = detail::blocking_hook;
  if (hooks == nullptr) return std::forward<Fn>(fn)();
  struct reacquire_on_exit {
    const detail::blocking_hooks* hooks;
    ~reacquire_on_exit() { hooks->reacquire(); }
  };
  hooks->release();
  reacquire_on_exit guard{hooks};
  return std::forward<Fn>(fn)();
}

}  // namespace weft
