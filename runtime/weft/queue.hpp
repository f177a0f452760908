// weft: Python's `queue` module for tasks and threads: fifo_queue, lifo_queue, priority_queue.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <utility>

#include <weft/detail/item_queue.hpp>
#include <weft/errc.hpp>

namespace weft {

/// A queue shared by tasks and plain threads, modelled on Python's `queue.Queue` (and
/// `asyncio.Queue`); `fifo_queue`, `lifo_queue` and `priority_queue` below are this template with
/// the order as `Store`.
///
/// Tasks use the awaitables: `co_await q.put(v)` (waits while the queue is full: back-pressure),
/// `co_await q.get()`, `co_await q.join()`. Threads that run no weft executor use the blocking
/// calls: `put_blocking`, `get_blocking`, `join_blocking` (and their `_for` versions with a
/// timeout). Both kinds share one queue: a thread's `put_blocking` wakes a task waiting in
/// `get()`, a task's `put` wakes a thread blocked in `get_blocking()`, and so on. Either kind can
/// use `try_put` / `try_get` (Python's `put_nowait` / `get_nowait`, reporting full/empty by their
/// result rather than an exception).
///
/// `task_done()` and `join()` work as in Python: every item put counts as unfinished until a
/// consumer calls `task_done()` for it; `join()` waits until none is unfinished.
///
/// Waiting getters and putters are served in FIFO order, and an item goes straight to a waiting
/// getter, so no one barges ahead of a waiter. A `maxsize` of 0 means unbounded.
///
/// Cancellation: a put, get or join whose task is stopped (before or while waiting) throws
/// `std::system_error` with `errc::cancelled`; the item was then not put (put) or not taken
/// (get). An item that raced a stop is never lost or duplicated. Blocking calls have no
/// cancellation: use the `_for` versions to bound them.
///
/// Ownership: one non-movable object shared by reference, which must outlive every task and
/// thread using it. Thread-safety: every member may be called from any thread; the blocking calls
/// throw std::logic_error instead of blocking a thread that runs a weft executor. `T`'s moves
/// must not throw.
template <class T, class Store>
class basic_queue {
  using core_type = detail::item_core<T, Store>;

 public:
  /// The item type.
  using value_type = T;
  /// The awaitable of `put()`.
  using put_awaitable = detail::put_awaitable<T, Store>;
  /// The awaitable of `get()`: gives a `T`.
  using get_awaitable = detail::get_awaitable<T, Store, false>;
  /// The awaitable of `join()`.
  using join_awaitable = detail::join_awaitable<T, Store>;

  /// A queue holding at most `maxsize` items; 0 (the default) means unbounded.
  explicit basic_queue(std::size_t maxsize = 0) noexcept
      : core_(maxsize == 0 ? core_type::unlimited : maxsize), maxsize_(maxsize) {}
  basic_queue(const basic_queue&) = delete;
  basic_queue& operator=(const basic_queue&) = delete;

  /// `co_await q.put(v)` puts `v`, waiting while the queue is full. Throws `std::system_error`:
  /// `errc::cancelled` when the task's stop is requested first (`v` not put), `errc::no_runtime`
  /// when it would have to wait outside a weft executor.
  put_awaitable put(T value) noexcept {
    return put_awaitable(core_, std::move(value), "weft queue put");
  }

  /// `co_await q.get()` removes and gives the next item, waiting while the queue is empty.
  /// Throws `std::system_error`: `errc::cancelled` when the task's stop is requested first (no
  /// item taken), `errc::no_runtime` when it would have to wait outside a weft executor.
  get_awaitable get() noexcept { return get_awaitable(core_, "weft queue get"); }

  /// Python's `put_nowait`: puts `value` if there is room; false (`value` untouched) when full.
  /// Throws std::bad_alloc.
  bool try_put(T&& value) { return core_.try_put(value) == core_type::put_status::done; }
  /// Puts a copy of `value` if there is room; see the overload above.
  bool try_put(const T& value) {
    T copy(value);
    return try_put(std::move(copy));
  }

  /// Python's `get_nowait`: the next item, or nullopt when the queue is empty. Never waits.
  std::optional<T> try_get() noexcept { return core_.try_get(); }

  /// Marks one item got earlier as processed. Throws std::logic_error (Python's ValueError) when
  /// called more times than items were put.
  void task_done() { core_.task_done("weft queue task_done"); }

  /// `co_await q.join()` returns once every item put has been marked with `task_done()` (at once
  /// if none is unfinished). Throws `errc::cancelled`, `errc::no_runtime` like `get()`.
  join_awaitable join() noexcept { return join_awaitable(core_); }

  /// Blocking put for a plain thread: waits (blocking the thread) while the queue is full.
  /// Throws std::logic_error when it would block a thread that runs a weft executor.
  void put_blocking(T value) { core_.put_blocking(value, std::nullopt, "weft queue put_blocking"); }

  /// `put_blocking` with a time limit: false (and `value` untouched) when the queue stayed full
  /// for `timeout`.
  template <class Rep, class Period>
  bool put_blocking_for(T&& value, std::chrono::duration<Rep, Period> timeout) {
    return core_.put_blocking(value, detail::blocking_deadline(timeout),
                              "weft queue put_blocking_for") == core_type::put_status::done;
  }
  /// Puts a copy of `value`, with a time limit; see the overload above.
  template <class Rep, class Period>
  bool put_blocking_for(const T& value, std::chrono::duration<Rep, Period> timeout) {
    T copy(value);
    return put_blocking_for(std::move(copy), timeout);
  }

  /// Blocking get for a plain thread: waits (blocking the thread) while the queue is empty.
  /// Throws std::logic_error when it would block a thread that runs a weft executor.
  T get_blocking() {
    std::optional<T> out;
    core_.get_blocking(out, std::nullopt, "weft queue get_blocking");
    return std::move(*out);
  }

  /// `get_blocking` with a time limit: nullopt when the queue stayed empty for `timeout`.
  template <class Rep, class Period>
  std::optional<T> get_blocking_for(std::chrono::duration<Rep, Period> timeout) {
    std::optional<T> out;
    core_.get_blocking(out, detail::blocking_deadline(timeout), "weft queue get_blocking_for");
    return out;
  }

  /// Blocking join for a plain thread: returns once every item put was marked done.
  /// Throws std::logic_error when it would block a thread that runs a weft executor.
  void join_blocking() { core_.join_blocking(std::nullopt, "weft queue join_blocking"); }

  /// `join_blocking` with a time limit: false when items were still unfinished after `timeout`.
  template <class Rep, class Period>
  bool join_blocking_for(std::chrono::duration<Rep, Period> timeout) {
    return core_.join_blocking(detail::blocking_deadline(timeout), "weft queue join_blocking_for");
  }

  /// Python's `qsize()`: the number of items in the queue (a snapshot).
  std::size_t size() const noexcept { return core_.size(); }
  /// True when the queue holds no item (a snapshot).
  bool empty() const noexcept { return size() == 0; }
  /// True when a bounded queue holds `maxsize` items (a snapshot); never for an unbounded one.
  bool full() const noexcept { return maxsize_ != 0 && size() >= maxsize_; }
  /// The `maxsize` given at construction (0: unbounded).
  std::size_t maxsize() const noexcept { return maxsize_; }
  /// Items put and not yet marked done (Python's `unfinished_tasks`; a snapshot).
  std::size_t unfinished_tasks() const noexcept { return core_.unfinished(); }

 private:
  core_type core_;
  std::size_t maxsize_;
};

/// Python's `queue.Queue` / `asyncio.Queue`: first in, first out.
template <class T>
using fifo_queue = basic_queue<T, detail::fifo_store<T>>;

/// Python's `queue.LifoQueue`: last in, first out.
template <class T>
using lifo_queue = basic_queue<T, detail::lifo_store<T>>;

/// Python's `queue.PriorityQueue` (heapq order): the smallest item by `Compare` comes out first
/// (`std::less<T>`: smallest first; `std::greater<T>`: largest first). Items that compare equal
/// come out in no particular order (use (priority, sequence) pairs for FIFO among equals, as in
/// Python). `Compare` must not throw.
template <class T, class Compare = std::less<T>>
using priority_queue = basic_queue<T, detail::heap_store<T, Compare>>;

}  // namespace weft
