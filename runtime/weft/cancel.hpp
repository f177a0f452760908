// weft: cooperative cancellation, observable as a std::stop_token.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <stop_token>
#include <thread>

#include "detail/intrusive_list.hpp"

namespace weft {

class executor;

/// The cancellation state that a task (and every task it awaits) shares.
///
/// A spawned task owns one; awaited tasks and `when_all` children use their parent's, and
/// `when_any`, `with_timeout` and `task_group` give their children a linked child scope.
///
/// Waits inside weft (sleep, I/O, joins) register an intrusive `waiter` here, which costs no
/// allocation; `token()` gives a `std::stop_token` view for user code, whose shared state is
/// created on first use only. Why not a `std::stop_callback` per wait: with a million sleeping
/// tasks, the stop state (one allocation per task) and the 64-byte callback took a third of
/// the memory of a sleeping task.
///
/// Thread-safety: every member may be called from any thread. Stop callbacks run on the thread
/// that requests stop; weft's callbacks only queue work, they never resume a task inline.
class cancel_scope {
 public:
  /// One registered wait. `on_stop` runs at most once, if stop is requested while registered.
  struct waiter {
    /// Set by the owner before `add_waiter`. Called with this waiter at most once, on the thread
    /// that requests stop, once the waiter is unregistered and the scope's lock released; it
    /// should only queue work (weft's callbacks never resume a task inline).
    void (*on_stop)(waiter* self) noexcept = nullptr;
    /// @cond
    // The scope's intrusive list and the firing flag: public because a waiter is a plain
    // aggregate that derived waiters extend, but only cancel_scope touches them.
    waiter* prev = nullptr;
    waiter* next = nullptr;
    std::atomic<bool> firing{false};  // on_stop is running on some thread
    /// @endcond
  };

  cancel_scope() = default;
  cancel_scope(const cancel_scope&) = delete;
  cancel_scope& operator=(const cancel_scope&) = delete;

  /// True once stop has been requested. Never allocates.
  bool stop_requested() const noexcept { return stopped_.load(std::memory_order_acquire); }

  /// Requests stop: runs the registered waiters' callbacks, then stops the std::stop_token view.
  /// Idempotent.
  void request_stop() noexcept {
    lock();
    if (stopped_.load(std::memory_order_relaxed)) {
      unlock();
      return;
    }
    stopped_.store(true, std::memory_order_seq_cst);
    while (waiter* w = head_) {
      unlink(*w);
      w->firing.store(true, std::memory_order_relaxed);
      unlock();
      w->on_stop(w);
      w->firing.store(false, std::memory_order_release);  // last touch of *w
      lock();
    }
    unlock();
    if (source_state_.load(std::memory_order_seq_cst) == source_ready) source_.request_stop();
  }

  /// Registers `w`; false (and `w` not registered) when stop was already requested.
  bool add_waiter(waiter& w) noexcept {
    lock();
    if (stopped_.load(std::memory_order_relaxed)) {
      unlock();
      return false;
    }
    detail::list_push_front<&waiter::prev, &waiter::next>(head_, w);
    unlock();
    return true;
  }

  /// Unregisters `w`. On return its callback is not running and will not run, so `w` may be
  /// freed. Must not be called from inside `w`'s own callback.
  void remove_waiter(waiter& w) noexcept {
    lock();
    if (w.prev != nullptr || head_ == &w) {  // still registered
      unlink(w);
      unlock();
      return;
    }
    unlock();
    while (w.firing.load(std::memory_order_acquire)) std::this_thread::yield();
  }

  /// A std::stop_token that is stopped when this scope is. Throws std::bad_alloc (the shared
  /// state is created on the first call).
  std::stop_token token() {
    if (source_state_.load(std::memory_order_acquire) != source_ready) {
      for (;;) {
        std::uint8_t expected = source_empty;
        if (source_state_.compare_exchange_strong(expected, source_creating,
                                                  std::memory_order_acquire)) {
          try {
            source_ = std::stop_source();
          } catch (...) {
            source_state_.store(source_empty, std::memory_order_release);
            throw;
          }
          source_state_.store(source_ready, std::memory_order_seq_cst);
          break;
        }
        if (expected == source_ready) break;
        std::this_thread::yield();  // another thread is creating it (or failed: try again)
      }
      // A stop that raced with the creation: whichever side saw the other's store stops it.
      if (stopped_.load(std::memory_order_seq_cst)) source_.request_stop();
    }
    return source_.get_token();
  }

 private:
  static constexpr std::uint8_t source_empty = 0, source_creating = 1, source_ready = 2;

  void lock() noexcept {
    while (locked_.exchange(true, std::memory_order_acquire)) {
      while (locked_.load(std::memory_order_relaxed)) std::this_thread::yield();
    }
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }
  void unlink(waiter& w) noexcept { detail::list_unlink<&waiter::prev, &waiter::next>(head_, w); }

  // The one-byte flags come last, so that a class holding a scope as a [[no_unique_address]]
  // member can put a small field in the tail padding (a task frame is 16 bytes smaller).
  waiter* head_ = nullptr;
  std::stop_source source_{std::nostopstate};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> locked_{false};
  std::atomic<std::uint8_t> source_state_{source_empty};
};

/// A scope that also stops when its parent scope stops (used by when_any, with_timeout and
/// task_group to cancel a set of children without cancelling the caller). Never allocates.
class linked_cancel_scope : public cancel_scope {
 public:
  /// Links to `parent`; a null parent gives an independent scope.
  explicit linked_cancel_scope(cancel_scope* parent) noexcept : parent_(parent) {
    link_.on_stop = [](waiter* w) noexcept { static_cast<link_waiter*>(w)->self->request_stop(); };
    link_.self = this;
    if (parent_ != nullptr && !parent_->add_waiter(link_)) {
      parent_ = nullptr;
      request_stop();
    }
  }
  ~linked_cancel_scope() {
    if (parent_ != nullptr) parent_->remove_waiter(link_);
  }

 private:
  struct link_waiter : waiter {
    cancel_scope* self = nullptr;
  };
  cancel_scope* parent_;
  link_waiter link_;
};

namespace detail {

/// A stop waiter whose registration in its scope can be put off (a join's; see
/// docs/decisions/join-cancel.md). While `list` is set, the waiter is on that loop's deferred
/// list, linked through its own prev/next (it is in no scope then, so they are free).
struct deferred_stop : cancel_scope::waiter {
  cancel_scope* scope = nullptr;  // the scope it observes (registered there once flushed)
  class deferred_stops* list = nullptr;
};

/// The stop waiters that a single-thread loop's tasks have not registered in their scopes yet.
///
/// A join that suspends on a loop that has this list (the cooperative executor's) links its
/// stop waiter here, with plain stores, instead of taking its scope's lock twice. A join whose
/// task completes within the loop turn (the usual case) unlinks it when resumed: no scope was
/// touched. Otherwise the loop registers it at the end of the turn (`flush`), before it polls or
/// parks, so a stop requested meanwhile ends the wait one loop turn later at the most.
///
/// Thread-safety: the loop's thread only. A waiter on the list belongs to a task of this loop,
/// which is resumed only on this thread, so its resumption and the flush never race.
class deferred_stops {
 public:
  explicit deferred_stops(const executor* owner) noexcept : owner_(owner) {}
  deferred_stops(const deferred_stops&) = delete;
  deferred_stops& operator=(const deferred_stops&) = delete;

  /// The executor whose loop flushes this list.
  const executor* owner() const noexcept { return owner_; }

  void push(deferred_stop& w) noexcept {
    using waiter = cancel_scope::waiter;
    list_push_front<&waiter::prev, &waiter::next>(head_, static_cast<waiter&>(w));
    w.list = this;
  }
  void remove(deferred_stop& w) noexcept {
    using waiter = cancel_scope::waiter;
    list_unlink<&waiter::prev, &waiter::next>(head_, static_cast<waiter&>(w));
    w.list = nullptr;
  }
  /// Registers every waiter in its scope; one whose scope already stopped has its callback run
  /// here instead (it only queues work).
  void flush() noexcept {
    while (head_ != nullptr) {
      auto& w = static_cast<deferred_stop&>(*head_);
      remove(w);
      if (!w.scope->add_waiter(w)) {
        w.scope = nullptr;
        w.on_stop(&w);
      }
    }
  }

 private:
  cancel_scope::waiter* head_ = nullptr;
  const executor* owner_;
};

/// The deferred list of the loop running on this thread (null where the loop has none).
inline thread_local deferred_stops* tls_deferred_stops = nullptr;

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
/// caller is not a weft task). Never suspends. Throws std::bad_alloc.
struct get_stop_token {
  /// @cond
  // The awaitable's state between await_suspend and await_resume, not API.
  std::stop_token token_;
  /// @endcond
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    if (cancel_scope* s = detail::scope_of(h)) token_ = s->token();
    return false;
  }
  std::stop_token await_resume() noexcept { return std::move(token_); }
};

}  // namespace weft
