// weft: the machinery shared by when_all, when_any and with_timeout: child coroutines that run a
// task inside a scope and report to a counter, and the storage for each child's outcome.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <limits>
#include <utility>
#include <variant>

#include <weft/cancel.hpp>
#include <weft/detail/transfer.hpp>
#include <weft/task.hpp>

namespace weft::detail {

/// What a task's result becomes when stored: void -> std::monostate, T& -> T* (wrapped back).
template <class T>
struct stored_type {
  using type = T;
};
template <>
struct stored_type<void> {
  using type = std::monostate;
};
template <class T>
struct stored_type<T&> {
  using type = std::reference_wrapper<T>;
};
template <class T>
using stored_t = typename stored_type<T>::type;

/// A child's result: nothing yet, a value, or an exception.
template <class T>
class outcome {
 public:
  bool has_value() const noexcept { return data_.index() == 1; }
  bool has_error() const noexcept { return data_.index() == 2; }
  const std::exception_ptr& error() const noexcept { return std::get<2>(data_); }
  template <class... Args>
  void set_value(Args&&... args) {
    data_.template emplace<1>(std::forward<Args>(args)...);
  }
  void set_error(std::exception_ptr e) noexcept { data_.template emplace<2>(std::move(e)); }
  /// The stored value, or rethrows the stored exception.
  stored_t<T> take() {
    if (has_error()) std::rethrow_exception(error());
    return std::move(std::get<1>(data_));
  }

 private:
  std::variant<std::monostate, stored_t<T>, std::exception_ptr> data_;
};

/// Counts the children still running; the last one to finish resumes the parent.
struct join_counter {
  static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();

  explicit join_counter(std::size_t children, cancel_scope* scope) noexcept
      : remaining(children + 1), child_scope(scope) {}

  std::atomic<std::size_t> remaining;  // children + 1 for the parent while it starts them
  std::atomic<std::size_t> first_done{none};
  std::atomic<std::size_t> first_failed{none};
  cancel_scope* child_scope;              // the scope the children observe
  cancel_scope* stop_on_first = nullptr;  // when_any: stop the others when one finishes
  std::coroutine_handle<> parent;

  void child_finished(std::size_t index, bool failed) noexcept {
    std::size_t expected = none;
    if (first_done.compare_exchange_strong(expected, index, std::memory_order_acq_rel) &&
        stop_on_first != nullptr) {
      stop_on_first->request_stop();
    }
    if (failed) {
      expected = none;
      first_failed.compare_exchange_strong(expected, index, std::memory_order_acq_rel);
    }
  }

  /// Called by a finishing child: the last one to finish hands control to the parent.
  void release_one() noexcept {
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) transfer_to(parent);
  }

  /// Starts the children (via `start`) then drops the parent's own count. Returns whether the
  /// parent must stay suspended (false: every child already finished).
  template <class StartAll>
  bool start(std::coroutine_handle<> awaiting, StartAll&& start_all) {
    parent = awaiting;
    start_all();
    return remaining.fetch_sub(1, std::memory_order_acq_rel) != 1;
  }
};

/// The coroutine type that wraps one child. Lazy; its frame is owned by a `child` object.
class child {
 public:
  struct promise_type {
    join_counter* counter = nullptr;

    child get_return_object() noexcept {
      return child(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    struct final_awaiter {
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        h.promise().counter->release_one();
      }
      void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }  // bodies catch everything
    cancel_scope* scope() const noexcept { return counter->child_scope; }
  };

  child() noexcept = default;
  explicit child(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
  child(child&& o) noexcept : handle_(std::exchange(o.handle_, {})) {}
  child& operator=(child&& o) noexcept {
    if (this != &o) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(o.handle_, {});
    }
    return *this;
  }
  ~child() {
    if (handle_) handle_.destroy();
  }

  /// Runs the child until its first suspension, reporting to `counter`.
  void start(join_counter& counter) {
    handle_.promise().counter = &counter;
    resume(handle_);
  }

 private:
  std::coroutine_handle<promise_type> handle_;
};

/// Awaits `t` and stores its outcome in `out`, then tells the counter which child it was.
template <class T>
child run_child(task<T> t, outcome<T>& out, join_counter& counter, std::size_t index) {
  bool failed = false;
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(t);
      out.set_value();
    } else {
      out.set_value(co_await std::move(t));
    }
  } catch (...) {
    out.set_error(std::current_exception());
    failed = true;
  }
  counter.child_finished(index, failed);
}

}  // namespace weft::detail
