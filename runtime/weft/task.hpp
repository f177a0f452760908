// weft: task<T>, the lazy coroutine type of every weft program.
#pragma once

#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>

#include <weft/cancel.hpp>
#include <weft/detail/frame_allocator.hpp>
#include <weft/detail/transfer.hpp>
#include <weft/errc.hpp>
#include <weft/executor.hpp>
#include <weft/task_info.hpp>

namespace weft {

template <class T = void>
class task;

template <class T>
class join_handle;

namespace detail {

/// Prints one line on stderr for an exception that a detached task ended with and that nobody
/// can observe any more (cancellation is not reported: it is how tasks are stopped).
void report_unobserved(const std::exception_ptr& error) noexcept;

/// Who waits on a spawned task: lives in the joiner's frame (the join_handle's awaiter), so the
/// task's frame needs one pointer for it. The joiner is resumed on its own executor.
struct join_waiter {
  std::coroutine_handle<> handle;
  executor* home = nullptr;
};

/// What a finished task (or child) holds for its awaiter.
template <class T>
struct value_slot {
  using stored = T;
  static T&& get(stored& s) noexcept { return std::move(s); }
};
template <class T>
struct value_slot<T&> {
  using stored = T*;
  static T& get(stored& s) noexcept { return *s; }
};

#ifdef WEFT_FAULT_INJECTION
// Task frames alive now, in a fault-injection build only (weft::io::testing::fault_totals).
inline std::atomic<long long> live_task_frames{0};
inline void count_frame(long long delta) noexcept {
  live_task_frames.fetch_add(delta, std::memory_order_relaxed);
}
#else
inline void count_frame(long long) noexcept {}
#endif

/// The part of every task promise that does not depend on T: the awaiter to resume, the cancel
/// scope, and the state used when the task is spawned rather than awaited.
class promise_base : public spawn_link {
 public:
  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    void await_suspend(std::coroutine_handle<Promise> h) noexcept {
      promise_base& p = h.promise();
      if (!p.is_spawned()) {
        if (p.continuation_ != nullptr) {
          transfer_to(std::coroutine_handle<>::from_address(p.continuation_));
        }
        return;
      }
      p.finish_spawned(h);
    }
    void await_resume() const noexcept {}
  };

  /// Starts suspended (tasks are lazy); when first resumed, the task it belongs to is the one
  /// running on this thread.
  struct initial_awaiter {
    promise_base* self;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<>) const noexcept {}
    void await_resume() const noexcept { self->resumed(); }
  };

  initial_awaiter initial_suspend() noexcept { return {this}; }
  final_awaiter final_suspend() const noexcept { return {}; }

  /// Every `co_await` in a task goes through a tracked_awaiter (task_info.hpp's bookkeeping:
  /// which task runs on this thread, what it waits on); see tracked_awaiter below.
  template <class A>
  auto await_transform(A&& awaitable);
  void unhandled_exception() noexcept { error_ = std::current_exception(); }

  /// Frames come from the per-thread recycling allocator (see frame_allocator.hpp).
  static void* operator new(std::size_t size) {
    void* p = frame_allocator::allocate(size);
    count_frame(1);
    return p;
  }
  static void operator delete(void* p, std::size_t size) noexcept {
    count_frame(-1);
    frame_allocator::deallocate(p, size);
  }

  /// The scope whose stop token every wait of this task observes (null: not cancellable).
  cancel_scope* scope() const noexcept { return scope_; }

  void set_awaiter(std::coroutine_handle<> awaiter, cancel_scope* scope) noexcept {
    continuation_ = awaiter.address();
    scope_ = scope;
    root_ = tls_current_task;  // the spawned task that awaits this one, when it is a weft task
  }
  ~promise_base() {
    if ((join_state_.load(std::memory_order_relaxed) & named) != 0) erase_task_name(id_);
  }
  promise_base() noexcept = default;
  promise_base(const promise_base&) = delete;
  promise_base& operator=(const promise_base&) = delete;

  // --- identity and waits (task_info.hpp; the task dump reads them from any thread) ---

  /// The task's id (0 for a task that was never spawned).
  std::uint64_t id() const noexcept {
    return (join_state_.load(std::memory_order_relaxed) & (spawned | named)) != 0 ? id_ : 0;
  }
  /// The task's name (empty when none was given). Valid while the task's frame lives.
  std::string_view name() const noexcept {
    if ((join_state_.load(std::memory_order_relaxed) & named) == 0) return {};
    return task_name(id_);
  }
  /// Names the task: a copy of `name` goes into the process's name table under the task's id
  /// (names are rare: the frame has no room for one). A task not spawned yet gets its id now.
  /// On the task's own thread, or before it is spawned. Throws std::bad_alloc.
  void set_name(std::string_view name) {
    if (name.empty()) return;
    const std::uint32_t state = join_state_.load(std::memory_order_relaxed);
    const bool has_id = (state & (spawned | named)) != 0;
    const std::uint64_t id = has_id ? id_ : next_task_id();
    set_task_name(id, name);
    id_ = id;
    if ((state & spawned) != 0) {
      join_state_.fetch_or(named, std::memory_order_relaxed);  // others may touch the word
    } else {
      join_state_.store(named, std::memory_order_relaxed);
    }
  }
  /// The spawned task this frame's code runs for: itself when spawned, else its awaiter's.
  promise_base* root() noexcept { return is_spawned() ? this : root_; }
  /// This task's code runs on the calling thread from now on.
  void resumed() noexcept {
    promise_base* r = root();
    tls_current_task = r;
    if (r != nullptr) {
      r->wait_what_.store(nullptr, std::memory_order_relaxed);
      if constexpr (WEFT_TRACING != 0) {
        if (tls_span_task == 0) [[unlikely]]
          tls_span_task = r->id_;  // a traced run span begins with this task
      }
    }
  }
  /// The task suspends in a wait that `what` names (a static string); since: this loop turn.
  void note_wait(const char* what) noexcept {
    wait_since_.store(tls_turn_now & ~std::int64_t{7}, std::memory_order_relaxed);
    wait_what_.store(what, std::memory_order_relaxed);
  }
  /// Refines the current wait, or describes it alone for an awaiter that marks itself
  /// `describes_own_wait` (see tracked_awaiter): I/O and its fd, a sleep's deadline, a join.
  /// Only on the task's own thread, while it suspends (since: this loop turn, as note_wait).
  void describe_wait(const char* what, wait_arg kind, std::int64_t arg) noexcept {
    wait_arg_.store(arg, std::memory_order_relaxed);
    wait_since_.store((tls_turn_now & ~std::int64_t{7}) | static_cast<std::int64_t>(kind),
                      std::memory_order_relaxed);
    wait_what_.store(what, std::memory_order_relaxed);
  }
  /// What the task waits on now: `what` is null while it runs. Fields are read one by one
  /// (a dump taken while the task moves on may mix two waits).
  struct wait_snapshot {
    const char* what = nullptr;
    wait_arg kind = wait_arg::none;
    std::int64_t arg = 0;
    std::int64_t since_ns = 0;  // coarse_now_ns() when the wait began
  };
  wait_snapshot wait() const noexcept {
    wait_snapshot w;
    w.what = wait_what_.load(std::memory_order_relaxed);
    w.arg = wait_arg_.load(std::memory_order_relaxed);
    const std::int64_t since = wait_since_.load(std::memory_order_relaxed);
    w.kind = static_cast<wait_arg>(since & 7);
    w.since_ns = since & ~std::int64_t{7};
    return w;
  }

  // --- spawned tasks (see spawn.hpp for the protocol) ---
  // The join word. completed, detached and joiner_waiting follow the protocol in spawn.hpp;
  // spawned is set once before the task is published; joined only by the handle's owner after
  // completion (no other writer then).
  // named: the task has an id from set_name and an entry in the name table (set before spawn).
  static constexpr std::uint32_t completed = 1, detached = 2, joiner_waiting = 4, spawned = 8,
                                 joined = 16, joiner_stop_pending = 32, named = 64;

  /// Turns this task into a spawned one on `ex`. Its waits observe `observed` (a task_group's
  /// scope) or, by default, its own scope.
  void mark_spawned(executor& ex, cancel_scope* observed = nullptr) noexcept {
    const std::uint32_t was = join_state_.load(std::memory_order_relaxed);
    join_state_.store(spawned | (was & named), std::memory_order_relaxed);
    scope_ = observed != nullptr ? observed : &own_scope_;
    if ((was & named) == 0) id_ = next_task_id();
    wait_since_.store(static_cast<std::int64_t>(wait_arg::queued), std::memory_order_relaxed);
    wait_what_.store("start", std::memory_order_relaxed);
    if (task_observer* o = ex.observer()) [[unlikely]]
      o->task_spawned(*this);
    ex.task_started(*this);
  }
  cancel_scope& own_scope() noexcept { return own_scope_; }
  /// Whether the join_handle already took the result (only the handle's owner reads this).
  bool is_joined() const noexcept {
    return (join_state_.load(std::memory_order_relaxed) & joined) != 0;
  }
  // A plain load and store, not a locked read-modify-write: the task has completed, so the
  // handle's owner is the word's only writer by now (saves ~20 cycles per join).
  void mark_joined() noexcept {
    join_state_.store(join_state_.load(std::memory_order_relaxed) | joined,
                      std::memory_order_relaxed);
  }
  bool is_spawned() const noexcept {
    return (join_state_.load(std::memory_order_relaxed) & spawned) != 0;
  }
  bool is_completed() const noexcept {
    return (join_state_.load(std::memory_order_acquire) & completed) != 0;
  }
  /// True while a joiner waits on this task.
  bool has_joiner() const noexcept {
    return (join_state_.load(std::memory_order_acquire) & joiner_waiting) != 0;
  }
  /// What `try_register_joiner` found.
  enum class join_registration { waiting, completed, stop_pending };
  /// The joiner registers itself: `waiting` (suspend: the completion, or `stop_joiner`, resumes
  /// it), `completed` (resume at once with the result), or `stop_pending` (the joiner's stop
  /// came first: resume at once, cancelled; the pending mark is cleared). Throws
  /// `errc::already_joined` when another task is already waiting on this one.
  join_registration try_register_joiner(join_waiter& joiner) {
    std::uint32_t w = join_state_.load(std::memory_order_acquire);
    if ((w & joiner_waiting) != 0) {
      throw_error(errc::already_joined, "weft::join_handle awaited by two tasks at once");
    }
    continuation_ = &joiner;
    for (;;) {  // (the word's other bits, such as `named`, may change meanwhile)
      if ((w & completed) != 0) return join_registration::completed;
      if ((w & joiner_stop_pending) != 0) {
        join_state_.fetch_and(~joiner_stop_pending, std::memory_order_acq_rel);
        return join_registration::stop_pending;
      }
      if ((w & joiner_waiting) != 0) {
        throw_error(errc::already_joined, "weft::join_handle awaited by two tasks at once");
      }
      if (join_state_.compare_exchange_weak(w, w | joiner_waiting, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
        return join_registration::waiting;
      }
    }
  }
  /// The joiner's stop (any thread, while the joiner's stop waiter is registered): true when it
  /// withdrew a waiting joiner, which the caller must then resume (cancelled). Otherwise the
  /// task completed (its completion resumes the joiner, or the joiner never waits), or no
  /// joiner is registered yet: the stop is left pending for `try_register_joiner` to find.
  bool stop_joiner() noexcept {
    std::uint32_t w = join_state_.load(std::memory_order_acquire);
    for (;;) {
      if ((w & completed) != 0) return false;
      const bool waiting = (w & joiner_waiting) != 0;
      const std::uint32_t next = waiting ? (w & ~joiner_waiting) : (w | joiner_stop_pending);
      if (join_state_.compare_exchange_weak(w, next, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
        return waiting;
      }
    }
  }
  /// The handle lets go; true means the task already completed and the caller must destroy it.
  bool release_from_handle() noexcept {
    // Once completed, the handle is the frame's only user: no read-modify-write needed.
    if (is_completed() ||
        (join_state_.fetch_or(detached, std::memory_order_acq_rel) & completed) != 0) {
      if (!is_joined() && error_) report_unobserved(error_);  // nobody will see it otherwise
      return true;
    }
    return false;
  }

 private:
  // A spawned task finishes on its own executor (tasks never migrate between executors: every
  // wake-up is scheduled on the executor the task waited on). The joiner continues right here
  // when it belongs to the same executor, and is scheduled on its own otherwise.
  void finish_spawned(std::coroutine_handle<> self) noexcept {
    executor* here = executor::current();
    left_thread(id_);  // the frame may be freed below
    if (task_observer* o = here->observer()) [[unlikely]]
      o->task_ended(*this);
    here->task_finished(*this);
    const std::uint32_t prev = join_state_.fetch_or(completed, std::memory_order_acq_rel);
    if ((prev & detached) != 0) {
      if (error_) [[unlikely]]
        report_unobserved(error_);
      self.destroy();
      return;
    }
    if ((prev & joiner_waiting) != 0) {
      auto* joiner = static_cast<join_waiter*>(continuation_);
      if (joiner->home == here || joiner->home == nullptr) {
        transfer_to(joiner->handle);
      } else {
        joiner->home->schedule(joiner->handle);
      }
    }
  }

  // The awaiting coroutine's address (awaited task) or a join_waiter* (spawned task).
  void* continuation_ = nullptr;
  cancel_scope* scope_ = nullptr;
  [[no_unique_address]] cancel_scope own_scope_;
  std::atomic<std::uint32_t> join_state_{0};  // fits in own_scope_'s tail padding
  // Identity and the current wait. The wait fields are written by the task's own thread when
  // it suspends and resumes (relaxed: a dump is a snapshot) and read by the task dump.
  // A spawned (or named) task's id; another task's root (see root()): one word for both.
  union {
    std::uint64_t id_;
    promise_base* root_ = nullptr;
  };
  std::atomic<const char*> wait_what_{nullptr};
  std::atomic<std::int64_t> wait_arg_{0};
  std::atomic<std::int64_t> wait_since_{0};  // coarse ns, the wait_arg kind in the low 3 bits

 protected:
  std::exception_ptr error_;  // what the body ended with, if anything (values: derived promise)
};

template <class T>
class task_promise final : public promise_base {
 public:
  task<T> get_return_object() noexcept;
  template <class U>
  requires std::is_convertible_v<U&&, T>
  void return_value(U&& v) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.emplace(std::forward<U>(v));
  }

  /// Moves the value out, or rethrows the task's exception.
  T take_result() {
    if (error_) std::rethrow_exception(error_);
    assert(value_.has_value());
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <class T>
class task_promise<T&> final : public promise_base {
 public:
  task<T&> get_return_object() noexcept;
  void return_value(T& v) noexcept { value_ = std::addressof(v); }
  T& take_result() {
    if (error_) std::rethrow_exception(error_);
    return *value_;
  }

 private:
  T* value_ = nullptr;
};

template <>
class task_promise<void> final : public promise_base {
 public:
  task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take_result() {
    if (error_) std::rethrow_exception(error_);
  }
};

inline cancel_scope* scope_of_link(spawn_link& link) noexcept {
  return static_cast<promise_base&>(link).scope();
}

/// The awaiter of `a` as `co_await a` would find it: its member or free `operator co_await`'s
/// result (a value), or `a` itself (a reference: it lives until the end of the full expression).
template <class A>
decltype(auto) get_awaiter(A&& a) {
  if constexpr (requires { std::forward<A>(a).operator co_await(); }) {
    return std::forward<A>(a).operator co_await();
  } else if constexpr (requires { operator co_await(std::forward<A>(a)); }) {
    return operator co_await(std::forward<A>(a));
  } else {
    return std::forward<A>(a);
  }
}

/// Wraps every awaiter a task awaits, for the bookkeeping that `this_task`, the task dump and
/// the trace read: before suspending, the task's wait is noted (the awaiter's type, refined by
/// awaiters that know more); after suspending, no task runs on this thread; when resumed, the
/// task runs here again. One thread-local store per resume, a few relaxed stores per suspend.
template <class Aw>
struct tracked_awaiter {
  Aw inner;            // the awaiter itself, or a reference to an awaitable that is one
  promise_base* root;  // the spawned task that awaits (null outside spawned tasks)

  decltype(auto) await_ready() { return inner.await_ready(); }

  template <class P>
  decltype(auto) await_suspend(std::coroutine_handle<P> h) {
    using inner_type = std::remove_cvref_t<Aw>;
    using result = decltype(inner.await_suspend(h));
    std::uint64_t id = 0;
    if (root != nullptr) {
      // An awaiter that always describes its wait before suspending (`describes_own_wait`)
      // spares the generic note: a yield or a join pays for one description, not two.
      if constexpr (!requires { inner_type::describes_own_wait; })
        root->note_wait(type_label<inner_type>());
      id = root->id();
    }
    // Once suspended, *this and *root may already be resumed elsewhere (or gone): only
    // thread-locals after it. A throwing await_suspend resumes the task with the exception.
    if constexpr (std::is_void_v<result>) {
      inner.await_suspend(h);
      left_thread(id);
    } else {
      result r = inner.await_suspend(h);
      if constexpr (std::is_same_v<result, bool>) {
        if (r) left_thread(id);  // false: resumes at once (await_resume)
      } else {
        left_thread(id);
      }
      return r;
    }
  }

  decltype(auto) await_resume() {
    if (root != nullptr) {
      root->resumed();
    } else {
      tls_current_task = nullptr;
    }
    return inner.await_resume();
  }
};

template <class A>
auto promise_base::await_transform(A&& awaitable) {
  using awaiter_type = decltype(get_awaiter(std::forward<A>(awaitable)));
  return tracked_awaiter<awaiter_type>{get_awaiter(std::forward<A>(awaitable)), tls_current_task};
}

}  // namespace detail

/// A lazy, move-only coroutine that produces a `T` (or `void`, or a reference).
///
/// Nothing runs until the task is awaited (`co_await std::move(t)` or `co_await t`), spawned
/// (`weft::spawn`) or run (`weft::run`). Awaiting starts the task by symmetric transfer and
/// resumes the awaiter the same way when it finishes, so chains of tasks that complete
/// synchronously never grow the stack. An exception thrown in the task is rethrown from the
/// `co_await`. An awaited task inherits its awaiter's cancel scope: cancelling the outer task
/// cancels the waits of the inner one.
///
/// A task is awaited at most once. Destroying a task that never started frees its frame.
/// Thread-safety: a task object is not shared; its frame may be resumed on any thread that its
/// executor uses.
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  /// What `co_await` on this task gives.
  using value_type = T;

  task() noexcept = default;
  /// @cond
  // Made by the promise's get_return_object; not for users.
  explicit task(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  /// @endcond
  /// Takes over `other`'s coroutine; `other` becomes empty (not `valid()`).
  task(task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  /// Destroys the coroutine this task held, then takes over `other`'s.
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() {
    if (handle_) handle_.destroy();
  }

  /// True when this task holds a coroutine (false after a move or for a default task).
  bool valid() const noexcept { return static_cast<bool>(handle_); }

  struct awaiter {
    std::coroutine_handle<promise_type> handle;
    bool await_ready() const {
      if (!handle) throw std::logic_error("weft::task: awaiting an empty task");
      // Tasks are lazy, so a finished one was awaited before: its value is gone.
      if (handle.done()) throw std::logic_error("weft::task: awaited a second time");
      return false;
    }
    template <class Promise>
    void await_suspend(std::coroutine_handle<Promise> awaiting) noexcept {
      handle.promise().set_awaiter(awaiting, detail::scope_of(awaiting));
      detail::transfer_to(handle);
    }
    decltype(auto) await_resume() { return handle.promise().take_result(); }
  };

  /// `co_await t` starts the task (by symmetric transfer, in the awaiter's cancel scope) and
  /// gives its value, or rethrows its exception. Throws `std::logic_error` when the task is empty
  /// or was already awaited.
  awaiter operator co_await() const& noexcept { return awaiter{handle_}; }
  /// Same as the lvalue overload: `co_await std::move(t)` or `co_await f()`.
  awaiter operator co_await() && noexcept { return awaiter{handle_}; }

  /// Gives up ownership of the coroutine (used by spawn and the combinators).
  std::coroutine_handle<promise_type> release() noexcept { return std::exchange(handle_, {}); }

 private:
  std::coroutine_handle<promise_type> handle_;
};

namespace detail {
template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
template <class T>
task<T&> task_promise<T&>::get_return_object() noexcept {
  return task<T&>(std::coroutine_handle<task_promise<T&>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}
}  // namespace detail

/// Calls `fn`, a callable that returns a task (typically a lambda coroutine), and returns a task
/// that owns `fn` until the coroutine `fn` started has finished.
///
/// Why: a lambda's captures live in the closure object, not in the coroutine frame, so a
/// capturing lambda coroutine reads freed memory after its first suspension once the closure is
/// gone (`spawn([x]() -> task<> {...}())` is that bug). `spawn(weft::invoke([x]() -> task<>
/// {...}))` moves the closure into the returned task's frame, where it lives as long as it is
/// needed. Throws what `fn` throws.
template <class Fn>
auto invoke(Fn fn) -> task<typename std::invoke_result_t<Fn&>::value_type> {
  co_return co_await fn();
}

}  // namespace weft
