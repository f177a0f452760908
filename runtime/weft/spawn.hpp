// weft: spawn a task onto the current executor, and join_handle<T> to wait for it.
#pragma once

#include <atomic>
#include <coroutine>
#include <utility>

#include <weft/cancel.hpp>
#include <weft/detail/coop.hpp>
#include <weft/errc.hpp>
#include <weft/executor.hpp>
#include <weft/task.hpp>

namespace weft {

/// The owner's view of a spawned task.
///
/// `co_await handle` waits for the task and gives its value, or rethrows its exception (a task
/// stopped by `cancel()` typically ends with `std::system_error` carrying `weft::errc::cancelled`).
/// A handle can be awaited once, by one task; a second await, or a second task awaiting while
/// one already waits, throws `errc::already_joined`. Dropping the handle (or `detach()`) lets the
/// task run on; its frame is freed when it finishes, and an exception it ends with that nobody
/// joined is reported on stderr (cancellation excepted), as asyncio does.
///
/// Thread-safety: one handle is used by one task at a time; `cancel()` and `is_finished()` may be
/// called from any thread while the handle is alive. The join protocol is a single atomic word
/// (completed / detached / joiner-waiting), so completion and joining may race across threads.
template <class T>
class join_handle {
  using promise_type = detail::task_promise<T>;

 public:
  join_handle() noexcept = default;
  /// @cond
  // Made by spawn from the task's coroutine; not for users.
  explicit join_handle(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  /// @endcond
  /// Takes over `other`'s task; `other` becomes empty.
  join_handle(join_handle&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  /// Detaches the task this handle referred to (see `detach()`), then takes over `other`'s.
  join_handle& operator=(join_handle&& other) noexcept {
    if (this != &other) {
      detach();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  join_handle(const join_handle&) = delete;
  join_handle& operator=(const join_handle&) = delete;
  ~join_handle() { detach(); }

  /// True while the handle refers to a task.
  bool valid() const noexcept { return static_cast<bool>(handle_); }

  /// True once the task has run to completion (value or exception).
  bool is_finished() const noexcept { return handle_ && handle_.promise().is_completed(); }

  /// Requests stop: the task's current and future waits end with `errc::cancelled`.
  /// Does nothing to a finished task. Never allocates.
  void cancel() noexcept {
    if (handle_) handle_.promise().own_scope().request_stop();
  }

  /// Lets the task run on without an owner.
  void detach() noexcept {
    if (!handle_) return;
    if (handle_.promise().release_from_handle()) handle_.destroy();
    handle_ = {};
  }

  /// What `co_await handle` does. Its stop waiter is registered in the joiner's scope before
  /// the joiner registers with the task, and the stop callback works on the task's join word
  /// only (`stop_joiner`): it withdraws a waiting joiner and resumes it cancelled, or leaves a
  /// stop pending that the registration then finds. So exactly one party resumes the joiner
  /// (the completion, the stop callback, or await_suspend returning false), and await_suspend
  /// touches nothing once the joiner is registered. On a single-thread loop the stop waiter's
  /// registration is put off until the loop turn ends (detail::deferred_stops; the argument is
  /// in docs/decisions/join-cancel.md).
  struct awaiter : private detail::deferred_stop {
    join_handle* self;
    detail::join_waiter waiter{};
    std::atomic<bool> cancelled{false};  // the joiner's stop ended the wait: await_resume throws

    explicit awaiter(join_handle* h) noexcept : self(h) {}
    awaiter(const awaiter&) = delete;
    awaiter& operator=(const awaiter&) = delete;
    ~awaiter() {
      if (list != nullptr) list->remove(*this);  // the joiner's frame is destroyed while it waits
    }
    /// @cond
    static constexpr bool describes_own_wait = true;  // await_suspend names the join
    /// @endcond

    bool await_ready() const {
      if (!self->handle_ || self->handle_.promise().is_joined()) {
        throw_error(errc::already_joined, "weft::join_handle awaited twice or empty");
      }
      return self->handle_.promise().is_completed();
    }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> joiner) {
      if (detail::promise_base* me = detail::tls_current_task) {
        me->describe_wait("join", detail::wait_arg::task,
                          static_cast<std::int64_t>(self->handle_.promise().id()));
      }
      waiter.handle = joiner;
      waiter.home = executor::current();
      if (self->handle_.promise().has_joiner()) {  // before the stop waiter can touch it
        throw_error(errc::already_joined, "weft::join_handle awaited by two tasks at once");
      }
      cancel_scope* s = detail::scope_of(joiner);
      if (s == nullptr) return register_joiner(joiner);
      on_stop = &awaiter::stop;
      detail::deferred_stops* d = detail::tls_deferred_stops;
      if (d != nullptr && d->owner() == waiter.home) [[likely]] {
        return suspend_deferred(joiner, *s, *d);
      }
      scope = s;
      if (!s->add_waiter(*this)) {  // already stopped: do not wait at all
        scope = nullptr;
        cancelled.store(true, std::memory_order_relaxed);
        return false;
      }
      try {
        return register_joiner(joiner);
      } catch (...) {
        std::exchange(scope, nullptr)->remove_waiter(*this);
        throw;
      }
    }
    decltype(auto) await_resume() {
      if (list != nullptr) {
        // Resumed by the completion within the turn: the waiter never reached the scope. A stop
        // requested meanwhile still ends the wait, as it would have with the waiter registered.
        list->remove(*this);
        if (std::exchange(scope, nullptr)->stop_requested()) {
          cancelled.store(true, std::memory_order_relaxed);
        }
      } else if (scope != nullptr) {
        std::exchange(scope, nullptr)->remove_waiter(*this);  // waits for its callback
      }
      if (cancelled.load(std::memory_order_acquire)) {
        throw_error(errc::cancelled, "weft::join_handle: the joiner was cancelled");
      }
      self->handle_.promise().mark_joined();
      return self->handle_.promise().take_result();
    }

   private:
    // The joiner registers with the task (its stop waiter, if any, is already registered).
    template <class Promise>
    bool register_joiner(std::coroutine_handle<Promise> joiner) {
      using reg = typename promise_type::join_registration;
      const reg r = self->handle_.promise().try_register_joiner(waiter);
      if (r == reg::stop_pending) {
        cancelled.store(true, std::memory_order_relaxed);
        return false;
      }
      // waiting: nothing of *this is touched from here on. Finished in between: no wait, but
      // budgeted (see coop.hpp).
      return r == reg::waiting || detail::coop_yield(joiner);
    }
    // On a single-thread loop: the joiner registers with the task first, and links its stop
    // waiter on the loop's deferred list only when it waits. Touching *this after the joiner is
    // registered is safe here, unlike above: only this thread can resume the joiner (a
    // completion elsewhere schedules it on this loop), and this thread is here.
    template <class Promise>
    bool suspend_deferred(std::coroutine_handle<Promise> joiner, cancel_scope& s,
                          detail::deferred_stops& d) {
      if (s.stop_requested()) {  // already stopped: do not wait at all
        cancelled.store(true, std::memory_order_relaxed);
        return false;
      }
      using reg = typename promise_type::join_registration;
      const reg r = self->handle_.promise().try_register_joiner(waiter);
      if (r == reg::waiting) {
        scope = &s;
        d.push(*this);
        return true;
      }
      if (r == reg::stop_pending) {  // a stale stop of an earlier, eager join: this one ends too
        cancelled.store(true, std::memory_order_relaxed);
        return false;
      }
      return detail::coop_yield(joiner);
    }
    // Any thread, from request_stop (or the loop's flush, when the scope had already stopped).
    static void stop(cancel_scope::waiter* w) noexcept {
      auto* a = static_cast<awaiter*>(w);
      if (!a->self->handle_.promise().stop_joiner()) return;  // see the struct's comment
      a->cancelled.store(true, std::memory_order_release);
      executor* home = a->waiter.home;
      const std::coroutine_handle<> h = a->waiter.handle;
      home->schedule(h);
    }
  };
  /// `co_await handle` waits for the task (on the awaiter's own executor) and gives its value,
  /// or rethrows its exception. Throws `std::system_error` with `errc::already_joined` when the
  /// handle is empty, was already joined, or another task is awaiting it.
  /// A cancellation point: when the joiner's stop is requested (before or while it waits), the
  /// wait ends with `errc::cancelled`; the joined task runs on (cancel it with `cancel()`), and
  /// the handle still refers to it (it may be awaited again).
  awaiter operator co_await() & noexcept { return awaiter{this}; }
  /// Same as the lvalue overload: `co_await std::move(handle)` or `co_await spawn(...)`.
  awaiter operator co_await() && noexcept { return awaiter{this}; }

  /// The result of a finished task, without awaiting (used by run() after its loop ends).
  /// Precondition: is_finished().
  decltype(auto) take_finished_result() {
    handle_.promise().mark_joined();
    return handle_.promise().take_result();
  }

 private:
  std::coroutine_handle<promise_type> handle_;  // the only member: a handle is one pointer
};

/// Starts `t` on executor `ex`: it is queued there and runs concurrently with the caller.
/// Callable from any thread (also one that runs no executor); `t` must not be shared.
template <class T>
join_handle<T> spawn_on(executor& ex, task<T> t) {
  auto h = t.release();
  if (!h) throw std::logic_error("weft::spawn: empty task");
  h.promise().mark_spawned(ex);
  ex.start(h);
  return join_handle<T>(h);
}

/// Starts `t` on executor `ex` with `options` (its name: `weft::this_task::name()`, the task
/// dump, the trace). Same contract as above; also throws std::bad_alloc for the name's copy
/// (the task is then not started).
template <class T>
join_handle<T> spawn_on(executor& ex, task<T> t, const task_options& options) {
  if (!options.name.empty() && t.valid()) {
    task<T> owned = std::move(t);  // destroyed unstarted if the copy throws
    auto h = owned.release();
    try {
      h.promise().set_name(options.name);
    } catch (...) {
      h.destroy();
      throw;
    }
    t = task<T>(h);
  }
  return spawn_on(ex, std::move(t));
}

/// Starts `t` on the calling thread's executor and returns its handle.
/// Throws `std::system_error` with `errc::no_runtime` when called outside a runtime.
template <class T>
join_handle<T> spawn(task<T> t) {
  executor* ex = executor::current();
  if (ex == nullptr) throw_error(errc::no_runtime, "weft::spawn called outside weft::run");
  return spawn_on(*ex, std::move(t));
}

/// Starts `t` on the calling thread's executor with `options`, e.g.
/// `weft::spawn(serve(conn), {.name = "conn 7"})`. Throws `errc::no_runtime` outside a runtime,
/// std::bad_alloc for the name's copy.
template <class T>
join_handle<T> spawn(task<T> t, const task_options& options) {
  executor* ex = executor::current();
  if (ex == nullptr) throw_error(errc::no_runtime, "weft::spawn called outside weft::run");
  return spawn_on(*ex, std::move(t), options);
}

}  // namespace weft
