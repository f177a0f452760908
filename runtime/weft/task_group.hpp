// weft: task_group, structured concurrency for a dynamic set of children.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>

#include <weft/cancel.hpp>
#include <weft/errc.hpp>
#include <weft/executor.hpp>
#include <weft/spawn.hpp>
#include <weft/task.hpp>

namespace weft {

/// A set of child tasks that end together.
///
/// `spawn` starts a child on the current executor; `co_await group.join()` waits until every
/// child has finished, then rethrows the first child failure, if any. The first failure cancels
/// the other children (their waits end with `errc::cancelled`), and so does cancelling the task
/// that is waiting in `join()`. Children observe the group's cancel scope, not their spawner's.
///
/// A group that failed stays failed: its scope is stopped, so children spawned afterwards are
/// cancelled at their first wait and `join()` rethrows the same failure. Use a new group.
///
/// Always `co_await join()` before the group goes out of scope. If the group is destroyed with
/// children still running (an exception unwound the owner before it joined), the destructor
/// cancels them; they finish on their own and touch nothing of the owner, since the state they
/// share with the group is reference-counted.
///
/// Thread-safety: `spawn`, `cancel` and `running` may be called from any task of the runtime;
/// children may finish on any thread. `join` is awaited by one task at a time.
class task_group {
  struct state {
    std::mutex mutex;
    std::size_t running = 0;
    std::exception_ptr first_failure;
    std::coroutine_handle<> waiter;
    executor* waiter_executor = nullptr;
    cancel_scope scope;

    void stop() noexcept { scope.request_stop(); }
    void child_finished(std::exception_ptr failure) noexcept {
      std::coroutine_handle<> to_wake;
      executor* wake_on = nullptr;
      bool stop_siblings = false;
      {
        std::lock_guard lock(mutex);
        if (failure && !first_failure) {
          first_failure = std::move(failure);
          stop_siblings = true;
        }
        if (--running == 0 && waiter) {
          to_wake = std::exchange(waiter, {});
          wake_on = waiter_executor;
        }
      }
      if (stop_siblings) stop();
      if (to_wake) wake_on->schedule(to_wake);
    }
  };

 public:
  task_group() : state_(std::make_shared<state>()) {}
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;
  ~task_group() {
    if (running() > 0) state_->stop();
  }

  /// Starts `child` on the current executor as a member of this group. Its value, if any, is
  /// discarded; its exception becomes the group's failure. Throws `errc::no_runtime` outside
  /// `weft::run`, std::bad_alloc.
  template <class T>
  void spawn(task<T> child) {
    executor* ex = executor::current();
    if (ex == nullptr) throw_error(errc::no_runtime, "weft::task_group::spawn outside weft::run");
    auto wrapper = run_member(state_, std::move(child));  // may throw: before counting it
    {
      std::lock_guard lock(state_->mutex);
      ++state_->running;
    }
    auto handle = wrapper.release();
    handle.promise().mark_spawned(*ex, &state_->scope);
    ex->start(handle);
    join_handle<void>(handle).detach();
  }

  /// Number of children that have not finished yet.
  std::size_t running() const {
    std::lock_guard lock(state_->mutex);
    return state_->running;
  }

  /// Cancels every child (present and future ones).
  void cancel() noexcept { state_->stop(); }

  /// The awaitable of `join()`.
  class join_awaitable : private cancel_scope::waiter {
   public:
    /// @cond
    // Made by join() from the group's private state; not for users.
    explicit join_awaitable(state& s) noexcept : state_(s) {}
    /// @endcond
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) {
      // Cancelling the joining task cancels the children (it still waits for them to end).
      if (cancel_scope* outer = detail::scope_of(h)) {
        on_stop = [](cancel_scope::waiter* w) noexcept {
          static_cast<join_awaitable*>(w)->state_.stop();
        };
        outer_ = outer;  // before registering: once registered, *this may be resumed elsewhere
        if (!outer->add_waiter(*this)) {
          outer_ = nullptr;
          state_.stop();
        }
      }
      std::lock_guard lock(state_.mutex);
      if (state_.running == 0) return false;
      state_.waiter = h;
      state_.waiter_executor = executor::current();
      return true;
    }
    /// Rethrows the first child failure.
    void await_resume() {
      if (outer_ != nullptr) outer_->remove_waiter(*this);
      std::exception_ptr failure;
      {
        std::lock_guard lock(state_.mutex);
        failure = state_.first_failure;
      }
      if (failure) std::rethrow_exception(failure);
    }

   private:
    state& state_;
    cancel_scope* outer_ = nullptr;
  };

  /// Waits for every child; see the class comment for errors and cancellation.
  [[nodiscard]] join_awaitable join() noexcept { return join_awaitable(*state_); }

 private:
  template <class T>
  static task<void> run_member(std::shared_ptr<state> s, task<T> child) {
    std::exception_ptr failure;
    try {
      co_await std::move(child);
    } catch (...) {
      failure = std::current_exception();
    }
    s->child_finished(std::move(failure));
  }

  std::shared_ptr<state> state_;
};

}  // namespace weft
