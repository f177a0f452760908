// weft: spawn_blocking, running blocking code on a separate, bounded thread pool.
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <type_traits>
#include <utility>
#include <variant>

#include <weft/cancel.hpp>
#include <weft/errc.hpp>
#include <weft/executor.hpp>

namespace weft {

/// A snapshot of the blocking pool, for tests and benchmarks (stale as soon as it is read). A job
/// counts in `jobs_run`, and its thread stops counting as busy, before its awaiter is resumed.
struct blocking_stats {
  std::size_t threads = 0;     ///< pool threads alive (busy or idle)
  std::size_t busy = 0;        ///< threads running a job right now
  std::size_t queued = 0;      ///< jobs waiting for a thread (FIFO)
  std::uint64_t jobs_run = 0;  ///< jobs that ran to completion (value or exception) since start
  std::size_t limit = 0;       ///< the current thread limit
};

/// Sets the most threads the blocking pool may have alive at once (default 64). Callable at any
/// time, from any thread, before or after the pool started: a higher limit lets the pool grow
/// at the next job that finds every thread busy; with a lower one, threads above it exit as soon
/// as they are idle (a running job is never interrupted) and no new thread starts until the
/// count is below it. Jobs that find no free thread and the limit reached wait in FIFO order.
/// Throws std::invalid_argument when `max_threads` is 0.
void set_blocking_pool_limit(std::size_t max_threads);

/// Sets how long an idle pool thread waits for a job before it exits (default 10 s); it applies
/// to threads already idle too. Callable at any time, from any thread. A negative duration
/// counts as zero (idle threads exit at once).
void set_blocking_pool_keep_alive(std::chrono::nanoseconds keep_alive) noexcept;

/// The pool's current state (see blocking_stats). Thread-safe; starts no thread.
blocking_stats blocking_pool_stats() noexcept;

namespace detail {

/// One job of the blocking pool: an intrusive node that lives in the awaiting coroutine's frame
/// (the awaitable), so queueing a job allocates nothing. The pool links it into its FIFO under
/// its lock and moves `state` from `queued` to `running` under that same lock when a thread takes
/// it; a job that was cancelled meanwhile is dropped there, untouched afterwards.
struct blocking_job {
  enum : std::uint8_t { queued, running, done, cancelled };

  /// Runs the job on a pool thread (state is `running`) and sets state `done`.
  void (*run)(blocking_job* self) noexcept = nullptr;
  /// Then resumes its awaiter (on the same pool thread, after the pool's bookkeeping). The job
  /// may be gone as soon as it returns.
  void (*complete)(blocking_job* self) noexcept = nullptr;
  blocking_job* prev = nullptr;  // the pool's FIFO (guarded by the pool's lock)
  blocking_job* next = nullptr;
  bool linked = false;  // in the FIFO (guarded by the pool's lock)
  std::atomic<std::uint8_t> state{queued};
};

/// Queues `job` (`run` and `complete` set, state `queued`) on the blocking pool, starting a thread
/// when every thread is busy and the limit allows. Starts the pool on first use. Thread-safe.
/// Throws what std::thread throws (std::system_error) when a thread is needed, none can be
/// created and no thread is alive to take the job later; the job is then not queued.
void submit_blocking(blocking_job& job);

/// Unlinks `job` from the pool's FIFO if it is still there (a cancelled job). On return the pool
/// no longer refers to `job`. Thread-safe.
void withdraw_blocking(blocking_job& job) noexcept;

/// Testing only: while set, creating a pool thread fails as std::thread does when the system
/// is out of threads (std::system_error with `resource_unavailable_try_again`).
void set_blocking_thread_creation_fails_for_testing(bool fail) noexcept;

/// What `co_await spawn_blocking(fn)` awaits. It holds `fn`, its result and the job node, all in
/// the awaiting frame.
///
/// Protocol. `state` (queued / running / done / cancelled) decides who ends the wait: the pool
/// thread that moves it queued -> running runs `fn` and sets `done`; a stop callback that moves
/// it queued -> cancelled cancels the job. Exactly one of them wins, and the winner is the only
/// party that may resume the task. It does so through `arrived_`, a rendezvous with the end of
/// await_suspend: whoever of the two gets there second resumes the task (the winner by
/// scheduling it on its home executor, await_suspend by returning false), so the task is never
/// resumed while await_suspend still touches the awaitable, on any executor.
template <class Fn>
class blocking_awaitable : private blocking_job, private cancel_scope::waiter {
 public:
  using result_type = std::invoke_result_t<Fn>;
  static_assert(!std::is_reference_v<result_type>,
                "weft::spawn_blocking: fn must return a value or void, not a reference");

  explicit blocking_awaitable(Fn fn) noexcept(std::is_nothrow_move_constructible_v<Fn>)
      : fn_(std::move(fn)) {}
  /// Moves an awaitable that was not awaited yet (so that with_timeout can take one).
  blocking_awaitable(blocking_awaitable&& other) noexcept(std::is_nothrow_move_constructible_v<Fn>)
      : fn_(std::move(other.fn_)) {}
  blocking_awaitable(const blocking_awaitable&) = delete;
  blocking_awaitable& operator=(const blocking_awaitable&) = delete;
  blocking_awaitable& operator=(blocking_awaitable&&) = delete;

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    home_ = executor::current();
    if (home_ == nullptr) throw_error(errc::no_runtime, "weft::spawn_blocking outside weft::run");
    cancel_scope* scope = scope_of(h);
    if (scope != nullptr && scope->stop_requested()) {
      state.store(cancelled, std::memory_order_relaxed);
      return false;
    }
    handle_ = h;
    run = &blocking_awaitable::run_job;
    complete = &blocking_awaitable::complete_job;
    state.store(queued, std::memory_order_relaxed);
    if (scope != nullptr) {
      on_stop = &blocking_awaitable::stop;
      scope_ = scope;                   // before registering: await_resume unregisters through it
      if (!scope->add_waiter(*this)) {  // stopped in between: do not queue at all
        scope_ = nullptr;
        state.store(cancelled, std::memory_order_relaxed);
        return false;
      }
    }
    submitted_ = true;
    try {
      submit_blocking(*this);  // from here on a pool thread may run the job
    } catch (...) {
      // Not queued: no thread could be created and none is alive. Unless a stop callback won
      // (it then resumes the task through the rendezvous below), end the wait with the error.
      std::uint8_t expected = queued;
      if (state.compare_exchange_strong(expected, done, std::memory_order_acq_rel)) {
        result_.template emplace<error_index>(std::current_exception());
        return false;
      }
    }
    // Last touch of *this when it returns true: the winner resumes the task after this.
    return !arrived_.exchange(true, std::memory_order_acq_rel);
  }

  /// fn's value (or nothing for void), or fn's exception rethrown. Throws std::system_error with
  /// errc::cancelled when the task's stop was requested before fn started.
  result_type await_resume() {
    if (scope_ != nullptr) scope_->remove_waiter(*this);  // waits for a callback in flight
    if (state.load(std::memory_order_acquire) == cancelled) {
      // Still queued, or dropped by the pool thread that found it cancelled: either way the pool
      // lets go of the node here, before the frame can be freed.
      if (submitted_) withdraw_blocking(*this);
      throw_error(errc::cancelled, "weft::spawn_blocking cancelled before it started");
    }
    if (result_.index() == error_index) std::rethrow_exception(std::get<error_index>(result_));
    if constexpr (!std::is_void_v<result_type>) {
      return std::move(std::get<value_index>(result_));
    }
  }

 private:
  using stored = std::conditional_t<std::is_void_v<result_type>, std::monostate, result_type>;
  static constexpr std::size_t value_index = 1, error_index = 2;

  // On the pool thread, state `running`: nobody else touches the awaitable until resumed.
  static void run_job(blocking_job* job) noexcept {
    auto* self = static_cast<blocking_awaitable*>(job);
    try {
      if constexpr (std::is_void_v<result_type>) {
        std::invoke(std::move(self->fn_));
        self->result_.template emplace<value_index>();
      } else {
        self->result_.template emplace<value_index>(std::invoke(std::move(self->fn_)));
      }
    } catch (...) {
      self->result_.template emplace<error_index>(std::current_exception());
    }
    self->state.store(done, std::memory_order_release);
  }
  static void complete_job(blocking_job* job) noexcept {
    static_cast<blocking_awaitable*>(job)->finish();
  }

  // Any thread, from request_stop: only a CAS and, maybe, a schedule.
  static void stop(cancel_scope::waiter* w) noexcept {
    auto* self = static_cast<blocking_awaitable*>(w);
    std::uint8_t expected = queued;
    if (self->state.compare_exchange_strong(expected, cancelled, std::memory_order_acq_rel)) {
      self->finish();
    }
  }

  // Called once, by whoever won `state`. Resumes the task on its home executor, unless
  // await_suspend has not finished yet (it then returns false and the task goes on there).
  void finish() noexcept {
    executor* home = home_;
    const std::coroutine_handle<> h = handle_;
    if (arrived_.exchange(true, std::memory_order_acq_rel)) home->schedule(h);
  }

  Fn fn_;
  std::variant<std::monostate, stored, std::exception_ptr> result_;
  executor* home_ = nullptr;
  std::coroutine_handle<> handle_;
  cancel_scope* scope_ = nullptr;
  std::atomic<bool> arrived_{false};
  bool submitted_ = false;  // handed to the pool (only the awaiting thread touches it)
};

}  // namespace detail

/// Runs `fn()` on the blocking pool, a process-wide pool of threads kept apart from every
/// executor, and gives what it returns: `co_await weft::spawn_blocking([&] { return read_db();
/// })`. Meant for code that blocks its thread (synchronous system calls, C libraries, long
/// computations) and would otherwise stall every task of the executor. Like Tokio's
/// spawn_blocking.
///
/// `fn`: any callable taking no arguments (move-only allowed; it is moved or copied into the
/// awaiting frame and called once, as an rvalue, on a pool thread, where no executor runs: it
/// must not await or touch non-thread-safe state that tasks share). It returns a value (moved
/// out to the awaiter, move-only allowed) or void; not a reference. Nothing is allocated per
/// call: the job is a node in the awaiting frame.
///
/// The awaiting task is resumed on its own executor (never on the pool thread). The pool starts
/// on first use, grows a thread when a job finds every thread busy, up to
/// set_blocking_pool_limit (64 by default), and queues jobs FIFO beyond that; idle threads exit
/// after set_blocking_pool_keep_alive (10 s by default).
///
/// Errors: rethrows what `fn` throws. Throws `std::system_error` with `errc::no_runtime` outside
/// a weft executor, and what std::thread throws when the pool has no thread and cannot create
/// one (the job is then not run).
///
/// Cancellation: if the task's stop is requested before `fn` starts, `fn` never runs and the
/// await throws `std::system_error` with `errc::cancelled`. Once `fn` has started it cannot be
/// interrupted: the task waits for it to finish (the frame holds `fn` and its result) and then
/// gets its value or exception as usual, cancelled or not. So with_timeout around a started job
/// waits for it and returns its value; a job that must stop early needs its own signal.
///
/// Lifetime: the returned awaitable must be awaited in the coroutine that keeps it (as
/// `co_await spawn_blocking(...)` does). `fn` is destroyed with the awaitable, on the awaiting
/// task's thread. At process exit the pool is never destroyed: its threads are detached, idle
/// ones simply end with the process, and a job still queued then is never run (a job can only
/// be in flight while its awaiting task is, and weft::run returns only once its tasks ended).
///
/// fork(): the child starts with an empty pool (threads are not inherited; jobs queued or running
/// in the parent are not run in the child, and a task of the forking thread that awaited one
/// then never resumes there).
///
/// Thread-safety: callable from any task on any executor (it only needs executor::schedule);
/// stop may be requested from any thread.
///
/// g++ 12 caveat (a compiler bug, not weft's): a lambda whose captures have destructors
/// (`[p = std::move(ptr)]`, `[s]` with a std::string) written inside the co_await expression is
/// destroyed twice, a double free. Name it first: `auto job = [p = std::move(ptr)] {...};
/// co_await weft::spawn_blocking(std::move(job));`. Captures by reference or of plain values
/// are unaffected.
template <class Fn>
[[nodiscard]] detail::blocking_awaitable<std::decay_t<Fn>> spawn_blocking(Fn&& fn) {
  return detail::blocking_awaitable<std::decay_t<Fn>>(std::forward<Fn>(fn));
}

}  // namespace weft
