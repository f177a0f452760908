// weft: the waiter nodes and wait lists behind the synchronisation primitives, channels and
// queues (mutex.hpp, semaphore.hpp, event.hpp, latch.hpp, condition_variable.hpp, channel.hpp,
// queue.hpp).
#pragma once

#include <atomic>
#include <condition_variable>
#include <coroutine>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include <weft/cancel.hpp>
#include <weft/detail/coop.hpp>
#include <weft/detail/intrusive_list.hpp>
#include <weft/detail/timer_heap.hpp>
#include <weft/errc.hpp>
#include <weft/executor.hpp>
#include <weft/task_info.hpp>

namespace weft::detail {

// The protocol, shared by every primitive:
//
// - Each primitive keeps its state and its wait lists under one std::mutex of its own.
// - A waiter is a `wait_node` inside the awaiting coroutine's frame (or on a blocked thread's
//   stack). Its `state` word goes waiting -> granted or waiting -> cancelled exactly once, by a
//   compare-and-swap; whoever wins that CAS is the only one who may wake the waiter.
// - A grant (lock hand-off, permit, item, notification) happens under the primitive's lock: pop
//   the first node, CAS waiting -> granted, and only if that succeeds hand the resource over (move
//   the item into the node's slot, ...). A node whose CAS fails was cancelled: it is dropped and
//   the resource goes to the next node (or stays in the primitive). So a resource is never lost
//   and never given twice.
// - A cancel callback (any thread, no primitive lock) only does the CAS waiting -> cancelled and,
//   if it won, schedules the coroutine on its home executor. The coroutine then unlinks its node
//   under the primitive's lock (if a grantor has not dropped it already) and throws
//   `errc::cancelled`. If the grant won, the cancel does nothing and the wait completes normally.
// - Nobody resumes a coroutine inline or under a lock: granted coroutine nodes are collected in a
//   `wake_list` and scheduled on their home executor (`executor::current()` when they suspended)
//   once the primitive's lock is released. Blocked threads are notified under the lock (their
//   condition variable lives on their stack, and the lock keeps them from returning meanwhile).
// - A coroutine publishes its node (wait list, then cancel scope) while holding the primitive's
//   lock and touches nothing of its frame afterwards: another thread may resume it at once.

/// One wait on a primitive: a coroutine's (handle + home executor) or a blocked thread's
/// (condition variable). Also the cancel-scope waiter of that wait, so a wait allocates nothing.
struct wait_node : cancel_scope::waiter {
  static constexpr int waiting = 0, granted = 1, cancelled = 2;

  wait_node() = default;
  /// Awaitables are moved only before they are awaited (with_timeout moves its awaitable into a
  /// task): the moved-to node starts fresh.
  wait_node(wait_node&&) noexcept {}
  wait_node& operator=(wait_node&&) = delete;

  /// waiting -> granted; false when the node was cancelled first. Under the primitive's lock.
  bool try_grant() noexcept {
    int expected = waiting;
    return state.compare_exchange_strong(expected, granted, std::memory_order_acq_rel,
                                         std::memory_order_relaxed);
  }

  std::atomic<int> state{waiting};
  bool linked = false;  // in a wait_list (guarded by the primitive's lock)
  wait_node* q_prev = nullptr;
  wait_node* q_next = nullptr;
  std::coroutine_handle<> handle;              // a coroutine's wait
  executor* home = nullptr;                    // ... and where it is scheduled when woken
  std::condition_variable* blocked = nullptr;  // a blocked thread's wait
  cancel_scope* scope = nullptr;               // where the node is registered as a waiter
};

/// The links of a wait node, in a wait_list or (once granted) a wake_list.
inline void link_back(wait_node*& head, wait_node*& tail, wait_node& n) noexcept {
  list_push_back<&wait_node::q_prev, &wait_node::q_next>(head, tail, n);
}

/// An intrusive FIFO of wait nodes. Not thread-safe: guarded by the primitive's lock.
class wait_list {
 public:
  bool empty() const noexcept { return head_ == nullptr; }

  void push_back(wait_node& n) noexcept {
    link_back(head_, tail_, n);
    n.linked = true;
  }

  void remove(wait_node& n) noexcept {
    list_remove<&wait_node::q_prev, &wait_node::q_next>(head_, tail_, n);
    n.linked = false;
  }

  wait_node* pop_front() noexcept {
    wait_node* n = head_;
    if (n != nullptr) remove(*n);
    return n;
  }

  /// Pops nodes until one accepts a grant; cancelled nodes are dropped on the way (their
  /// coroutine is already scheduled and will not unlink them again). Null when none is left.
  wait_node* grant_next() noexcept {
    while (wait_node* n = pop_front()) {
      if (n->try_grant()) return n;
    }
    return nullptr;
  }

  /// True when some node is still waiting (not cancelled).
  bool has_live() const noexcept {
    for (wait_node* n = head_; n != nullptr; n = n->q_next) {
      if (n->state.load(std::memory_order_relaxed) == wait_node::waiting) return true;
    }
    return false;
  }

 private:
  wait_node* head_ = nullptr;
  wait_node* tail_ = nullptr;
};

/// Granted nodes to wake. Declare it *before* the std::unique_lock of the primitive: its
/// destructor then runs after the lock is released and schedules the coroutines in grant order.
class wake_list {
 public:
  wake_list() = default;
  wake_list(const wake_list&) = delete;
  wake_list& operator=(const wake_list&) = delete;
  ~wake_list() { flush(); }

  /// Wakes granted node `n`. Under the primitive's lock: a blocked thread is notified now (the
  /// lock keeps it, and its condition variable, from going away); a coroutine is scheduled later.
  void add(wait_node& n) noexcept {
    if (n.blocked != nullptr) {
      n.blocked->notify_one();
      return;
    }
    link_back(head_, tail_, n);
  }

  /// Schedules every collected coroutine (after the primitive's lock was released).
  void flush() noexcept {
    while (wait_node* n = head_) {
      head_ = n->q_next;
      executor* home = n->home;
      const std::coroutine_handle<> h = n->handle;
      home->schedule(h);  // last touch of *n: it may be resumed and freed at once
    }
    tail_ = nullptr;
  }

 private:
  wait_node* head_ = nullptr;
  wait_node* tail_ = nullptr;
};

/// The cancel callback of every coroutine wait: runs on the thread that requests stop.
inline void cancel_wait(cancel_scope::waiter* w) noexcept {
  auto* n = static_cast<wait_node*>(w);
  int expected = wait_node::waiting;
  if (n->state.compare_exchange_strong(expected, wait_node::cancelled, std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
    executor* home = n->home;
    const std::coroutine_handle<> h = n->handle;
    home->schedule(h);
  }
}

/// Publishes coroutine `h`'s node `n` in `list` and in `scope`. Under the primitive's lock, after
/// its fast path failed. True: suspend (and touch nothing of the frame any more). False: stop was
/// requested meanwhile, the node is cancelled and unlinked, resume at once. Throws `no_runtime`
/// (nothing published) when the thread runs no executor.
inline bool park(wait_node& n, wait_list& list, std::coroutine_handle<> h, cancel_scope* scope,
                 const char* what) {
  executor* home = executor::current();
  if (home == nullptr) throw_error(errc::no_runtime, what);
  if (tls_current_task != nullptr) describe_current_wait(what);  // for the task dump
  n.handle = h;
  n.home = home;
  list.push_back(n);
  if (scope != nullptr) {
    n.on_stop = &cancel_wait;
    n.scope = scope;
    if (!scope->add_waiter(n)) {
      n.scope = nullptr;
      list.remove(n);
      n.state.store(wait_node::cancelled, std::memory_order_relaxed);
      return false;
    }
  }
  return true;
}

/// The common await_suspend: observes `scope` (already stopped: no wait at all), then under
/// `m` runs `ready(wakes)`, the primitive's fast path (true: done without waiting), and parks
/// `n` in `list` otherwise. Nodes granted by the fast path are woken after `m` is released.
template <class Ready>
bool suspend_on(wait_node& n, std::coroutine_handle<> h, cancel_scope* scope, std::mutex& m,
                wait_list& list, const char* what, Ready&& ready) {
  if (scope != nullptr && scope->stop_requested()) {
    n.state.store(wait_node::cancelled, std::memory_order_relaxed);
    return false;
  }
  {
    wake_list wakes;  // before the lock: flushed after it is released
    std::unique_lock lock(m);
    if (!ready(wakes)) return park(n, list, h, scope, what);
  }
  return coop_yield(h);  // done at once: a check point, and now and then a yield
}

/// The common await_resume part: unregisters `n` from its scope (waiting for a cancel callback
/// in flight) and, when it was cancelled, unlinks it under `m` and throws `errc::cancelled`.
/// Returns normally when the wait was granted or never suspended.
inline void finish_wait(wait_node& n, wait_list& list, std::mutex& m, const char* what) {
  if (n.scope != nullptr) {
    n.scope->remove_waiter(n);
    n.scope = nullptr;
  }
  if (n.state.load(std::memory_order_acquire) == wait_node::cancelled) {
    {
      std::lock_guard lock(m);
      if (n.linked) list.remove(n);
    }
    throw_error(errc::cancelled, what);
  }
}

/// The awaitable of a primitive's wait (event::wait, latch::wait, semaphore::acquire,
/// mutex::lock): never ready up front; `await_suspend` observes the task's cancel scope (unless
/// `observe_stop` is false), runs the primitive's fast path under its lock and parks the task
/// otherwise (suspend_on); `await_resume` returns once the wait was granted or never suspended,
/// and throws `errc::cancelled` when the stop won (finish_wait). Thread-safety: as the primitive's
/// (any thread); the awaitable itself belongs to the awaiting task.
///
/// `Primitive` befriends it and names its lock `mutex_`, its waiters `waiters_`, the wait in
/// errors and the task dump `wait_what`, and its fast path `bool wait_ready() noexcept` (called
/// under the lock; true: the wait is over without suspending, having taken what it waits for).
template <class Primitive>
class primitive_wait : private wait_node {
 public:
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    return suspend_on(*this, h, observe_stop_ ? scope_of(h) : nullptr, primitive_->mutex_,
                      primitive_->waiters_, Primitive::wait_what,
                      [this](wake_list&) { return primitive_->wait_ready(); });
  }
  void await_resume() {
    finish_wait(*this, primitive_->waiters_, primitive_->mutex_, Primitive::wait_what);
  }

 protected:
  explicit primitive_wait(Primitive& p, bool observe_stop = true) noexcept
      : primitive_(&p), observe_stop_(observe_stop) {}
  Primitive* primitive_;
  bool observe_stop_;
};

/// A plain thread's wait: parks node `n` in `list` and blocks on a condition variable until it
/// is granted, or until `deadline` (then the node is withdrawn and the result is false). `lock`
/// holds the primitive's mutex. Throws std::logic_error on a thread that runs an executor
/// (blocking it would stall every task on it, or deadlock: use the awaitable instead).
inline bool block(wait_node& n, wait_list& list, std::unique_lock<std::mutex>& lock,
                  const std::optional<clock::time_point>& deadline, const char* what) {
  if (executor::current() != nullptr) {
    throw std::logic_error(std::string(what) +
                           ": a blocking call would block a weft executor thread; co_await the "
                           "asynchronous call instead");
  }
  std::condition_variable cv;
  n.blocked = &cv;
  list.push_back(n);
  auto done = [&n] { return n.state.load(std::memory_order_relaxed) != wait_node::waiting; };
  if (!deadline) {
    cv.wait(lock, done);
    return true;
  }
  if (cv.wait_until(lock, *deadline, done)) return true;
  n.state.store(wait_node::cancelled, std::memory_order_relaxed);  // grants need the lock: no race
  list.remove(n);
  return false;
}

}  // namespace weft::detail
