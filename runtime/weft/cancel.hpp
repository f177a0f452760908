// weft: cooperative cancellation built on std::stop_token.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <thread>

namespace weft {

/// The cancellation state that a task (and every task it awaits) shares.
///
/// A spawned task owns one; awaited tasks, `when_all` and `when_any` children see their parent's
/// (or a linked child scope). The underlying `std::stop_source` is created lazily, on the first
/// call to `token()` or `request_stop()`, so a task that never waits and is never cancelled pays
/// for no allocation.
///
/// Thread-safety: every member may be called from any thread.
class cancel_scope {
 public:
  cancel_scope() = default;
  cancel_scope(const cancel_scope&) = delete;
  cancel_scope& operator=(const cancel_scope&) = delete;

  /// The stop token of this scope. Throws std::bad_alloc if the shared state cannot be created.
  std::stop_token token() { return source().get_token(); }

  /// Requests stop: every wait in this scope ends with `weft::errc::cancelled`.
  /// Throws std::bad_alloc if the shared state cannot be created.
  void request_stop() { source().request_stop(); }

  /// True once stop has been requested. Never allocates.
  bool stop_requested() const noexcept {
    return state_.load(std::memory_order_acquire) == ready && source_.stop_requested();
  }

 private:
  static constexpr std::uint8_t empty = 0, creating = 1, ready = 2;

  std::stop_source& source() {
    if (state_.load(std::memory_order_acquire) == ready) return source_;
    std::uint8_t expected = empty;
    if (state_.compare_exchange_strong(expected, creating, std::memory_order_acquire)) {
      try {
        source_ = std::stop_source();
      } catch (...) {
        state_.store(empty, std::memory_order_release);
        throw;
      }
      state_.store(ready, std::memory_order_release);
      return source_;
    }
    while (state_.load(std::memory_order_acquire) != ready) std::this_thread::yield();
    return source_;
  }

  std::atomic<std::uint8_t> state_{empty};
  std::stop_source source_{std::nostopstate};
};

/// A scope that also stops when its parent scope stops (used by when_any, with_timeout and
/// task_group to cancel a set of children without cancelling the caller).
class linked_cancel_scope : public cancel_scope {
 public:
  /// Links to `parent`; a null parent gives an independent scope. Throws std::bad_alloc.
  explicit linked_cancel_scope(cancel_scope* parent) {
    if (parent != nullptr) link_.emplace(parent->token(), forward{this});
  }

 private:
  struct forward {
    cancel_scope* self;
    void operator()() const noexcept {
      try {
        self->request_stop();
      } catch (...) {  // bad_alloc while stopping: nothing better to do than not stop
      }
    }
  };
  std::optional<std::stop_callback<forward>> link_;
};

namespace detail {

/// The cancel scope of the coroutine behind `h`, or null when its promise type has none
/// (a coroutine type that is not weft's).
template <class Promise>
cancel_scope* scope_of(std::coroutine_handle<Promise> h) noexcept {
  if constexpr (requires { h.promise().scope(); }) {
    return h.promise().scope();
  } else {
    return nullptr;
  }
}

}  // namespace detail

/// `co_await weft::get_stop_token()` gives the calling task's stop token (an empty token when the
/// caller is not a weft task). Never suspends.
struct get_stop_token {
  std::stop_token token_;
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    if (cancel_scope* s = detail::scope_of(h)) token_ = s->token();
    return false;
  }
  std::stop_token await_resume() noexcept { return std::move(token_); }
};

}  // namespace weft
