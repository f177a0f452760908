// weft: the buffer, wait lists and awaitables shared by weft::channel and the queues
// (fifo_queue, lifo_queue, priority_queue). See wait_queue.hpp for the waiter protocol.
#pragma once

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <weft/cancel.hpp>
#include <weft/detail/timer_heap.hpp>
#include <weft/detail/wait_queue.hpp>
#include <weft/errc.hpp>

namespace weft::detail {

/// A receiver's wait: a granted item is moved into `slot`; granted with an empty slot means
/// "closed and drained".
template <class T>
struct get_node : wait_node {
  std::optional<T> slot;
};

/// A sender's wait: a grant moves `*value` into the buffer; `closed` says the grant was a close.
template <class T>
struct put_node : wait_node {
  T* value = nullptr;
  bool closed = false;
};

/// FIFO order: a ring buffer that grows by doubling. A pop followed by a push never allocates
/// (the hand-off from a waiting sender relies on that).
template <class T>
class fifo_store {
 public:
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }
  /// Throws std::bad_alloc (then `v` is untouched).
  void push(T&& v) {
    if (size_ == slots_.size()) grow();
    slots_[(head_ + size_) % slots_.size()].emplace(std::move(v));
    ++size_;
  }
  /// Puts `v` before every other item (an item given back). Throws std::bad_alloc.
  void push_front(T&& v) {
    if (size_ == slots_.size()) grow();
    head_ = (head_ + slots_.size() - 1) % slots_.size();
    slots_[head_].emplace(std::move(v));
    ++size_;
  }
  T pop() noexcept {
    std::optional<T>& slot = slots_[head_];
    T v = std::move(*slot);
    slot.reset();
    head_ = (head_ + 1) % slots_.size();
    --size_;
    return v;
  }

 private:
  void grow() {
    std::vector<std::optional<T>> bigger(slots_.empty() ? 8 : slots_.size() * 2);
    for (std::size_t i = 0; i < size_; ++i) {
      bigger[i].emplace(std::move(*slots_[(head_ + i) % slots_.size()]));
    }
    slots_.swap(bigger);
    head_ = 0;
  }

  std::vector<std::optional<T>> slots_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
};

/// LIFO order (Python's LifoQueue): the last item put is the first one got.
template <class T>
class lifo_store {
 public:
  bool empty() const noexcept { return items_.empty(); }
  std::size_t size() const noexcept { return items_.size(); }
  void push(T&& v) { items_.push_back(std::move(v)); }
  /// An item given back is the next one out again: on top.
  void push_front(T&& v) { push(std::move(v)); }
  T pop() noexcept {
    T v = std::move(items_.back());
    items_.pop_back();
    return v;
  }

 private:
  std::vector<T> items_;
};

/// Priority order (Python's PriorityQueue, heapq): the smallest item by `Compare` comes first.
/// `Compare` must not throw.
template <class T, class Compare>
class heap_store {
 public:
  bool empty() const noexcept { return items_.empty(); }
  std::size_t size() const noexcept { return items_.size(); }
  void push(T&& v) {
    items_.push_back(std::move(v));
    std::push_heap(items_.begin(), items_.end(), later{comp_});
  }
  /// An item given back takes its place by priority again.
  void push_front(T&& v) { push(std::move(v)); }
  T pop() noexcept {
    std::pop_heap(items_.begin(), items_.end(), later{comp_});
    T v = std::move(items_.back());
    items_.pop_back();
    return v;
  }

 private:
  // std's heaps put the largest first; inverting the order puts the smallest first.
  struct later {
    Compare& comp;
    bool operator()(const T& a, const T& b) const { return comp(b, a); }
  };
  std::vector<T> items_;
  [[no_unique_address]] Compare comp_{};
};

/// The state of a channel or queue: items, capacity, closed flag, unfinished count (queues'
/// task_done/join) and the lists of waiting receivers, senders and joiners, under one mutex.
/// Members are public for the awaitables below; users go through channel/queue.
template <class T, class Store>
class item_core {
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T>,
                "weft channels and queues need an item type whose moves do not throw");

 public:
  static constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();
  enum class put_status { done, full, closed };

  explicit item_core(std::size_t capacity) noexcept : capacity_(capacity) {}
  item_core(const item_core&) = delete;
  item_core& operator=(const item_core&) = delete;

  /// Under the lock: gives `v` to the first waiting receiver, or buffers it when there is room.
  /// Moves from `v` only when the result is `done`. Throws std::bad_alloc (nothing changed).
  put_status put_locked(T& v, wake_list& wakes) {
    if (closed_) return put_status::closed;
    if (wait_node* n = getters_.grant_next()) {  // receivers only wait while the buffer is empty
      static_cast<get_node<T>*>(n)->slot.emplace(std::move(v));
      ++unfinished_;
      wakes.add(*n);
      return put_status::done;
    }
    if (items_.size() >= capacity_) return put_status::full;
    items_.push(std::move(v));
    ++unfinished_;
    return put_status::done;
  }

  /// Under the lock: moves the next item into `out`, then lets the first waiting sender's item
  /// into the room made. False when the buffer is empty.
  bool take_locked(std::optional<T>& out, wake_list& wakes) noexcept {
    if (items_.empty()) return false;
    out.emplace(items_.pop());
    if (wait_node* n = putters_.grant_next()) {  // senders only wait while the buffer is full
      auto* sender = static_cast<put_node<T>*>(n);
      items_.push(std::move(*sender->value));  // into the room just made: never allocates
      ++unfinished_;
      wakes.add(*n);
    }
    return true;
  }

  /// Puts back an item that a receive took but must not keep (a receive that lost a
  /// `when_any`): to the first waiting receiver, else at the front of the buffer, also when the
  /// channel is closed (it is then received before the end) or full (the capacity is exceeded by
  /// that item until it is taken). The unfinished count is unchanged: the item was counted when
  /// it was put. Throws std::bad_alloc (the item is then lost).
  void give_back(T&& v) {
    wake_list wakes;
    std::lock_guard lock(mutex_);
    if (wait_node* n = getters_.grant_next()) {  // receivers only wait while the buffer is empty
      static_cast<get_node<T>*>(n)->slot.emplace(std::move(v));
      wakes.add(*n);
      return;
    }
    items_.push_front(std::move(v));
  }

  put_status try_put(T& v) {
    wake_list wakes;
    std::lock_guard lock(mutex_);
    return put_locked(v, wakes);
  }

  std::optional<T> try_get() noexcept {
    wake_list wakes;
    std::lock_guard lock(mutex_);
    std::optional<T> out;
    take_locked(out, wakes);
    return out;
  }

  /// Closes: waiting receivers get "closed" (the buffer is empty while they wait), waiting
  /// senders fail. Buffered items stay receivable. Idempotent.
  void close() noexcept {
    wake_list wakes;
    std::lock_guard lock(mutex_);
    closed_ = true;
    while (wait_node* n = getters_.grant_next()) wakes.add(*n);
    while (wait_node* n = putters_.grant_next()) {
      static_cast<put_node<T>*>(n)->closed = true;
      wakes.add(*n);
    }
  }

  /// One item fewer unfinished; at zero every joiner wakes.
  void task_done(const char* what) {
    wake_list wakes;
    std::lock_guard lock(mutex_);
    if (unfinished_ == 0) {
      throw std::logic_error(std::string(what) + ": called more times than items were put");
    }
    if (--unfinished_ == 0) {
      while (wait_node* n = joiners_.grant_next()) wakes.add(*n);
    }
  }

  /// A thread's put: `full` means the deadline passed.
  put_status put_blocking(T& v, const std::optional<clock::time_point>& deadline,
                          const char* what) {
    wake_list wakes;
    std::unique_lock lock(mutex_);
    const put_status status = put_locked(v, wakes);
    if (status != put_status::full) return status;
    put_node<T> node;
    node.value = &v;
    if (!block(node, putters_, lock, deadline, what)) return put_status::full;
    return node.closed ? put_status::closed : put_status::done;
  }

  /// A thread's get: false when the deadline passed; true with an empty `out` when closed.
  bool get_blocking(std::optional<T>& out, const std::optional<clock::time_point>& deadline,
                    const char* what) {
    wake_list wakes;
    std::unique_lock lock(mutex_);
    if (take_locked(out, wakes) || closed_) return true;
    get_node<T> node;
    if (!block(node, getters_, lock, deadline, what)) return false;
    out = std::move(node.slot);
    return true;
  }

  /// A thread's join: false when the deadline passed.
  bool join_blocking(const std::optional<clock::time_point>& deadline, const char* what) {
    std::unique_lock lock(mutex_);
    if (unfinished_ == 0) return true;
    wait_node node;
    return block(node, joiners_, lock, deadline, what);
  }

  std::size_t size() const noexcept {
    std::lock_guard lock(mutex_);
    return items_.size();
  }
  bool is_closed() const noexcept {
    std::lock_guard lock(mutex_);
    return closed_;
  }
  std::size_t unfinished() const noexcept {
    std::lock_guard lock(mutex_);
    return unfinished_;
  }
  std::size_t capacity() const noexcept { return capacity_; }

  mutable std::mutex mutex_;
  Store items_;
  const std::size_t capacity_;
  bool closed_ = false;
  std::size_t unfinished_ = 0;
  wait_list getters_;
  wait_list putters_;
  wait_list joiners_;
};

/// `co_await` of a send/put: waits for room; throws `errc::channel_closed` when closed.
template <class T, class Store>
class [[nodiscard]] put_awaitable : private put_node<T> {
 public:
  put_awaitable(item_core<T, Store>& core, T item, const char* what) noexcept
      : core_(&core), item_(std::move(item)), what_(what) {}

  /// Awaitable protocol: never ready, the fast path runs in await_suspend under the lock.
  bool await_ready() const noexcept { return false; }
  /// Awaitable protocol: completes at once (false) or queues the task and suspends it (true).
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    return suspend_on(*this, h, scope_of(h), core_->mutex_, core_->putters_, what_,
                      [this](wake_list& wakes) {
                        this->value = &item_;  // the final address: a grant moves from here
                        switch (core_->put_locked(item_, wakes)) {
                          case item_core<T, Store>::put_status::done: return true;
                          case item_core<T, Store>::put_status::closed:
                            this->closed = true;
                            return true;
                          case item_core<T, Store>::put_status::full: break;
                        }
                        return false;
                      });
  }
  /// Returns once the item is in (buffered or received); throws `std::system_error` with
  /// `errc::cancelled` or `errc::channel_closed`, the item then not sent.
  void await_resume() {
    finish_wait(*this, core_->putters_, core_->mutex_, what_);
    if (this->closed) throw_error(errc::channel_closed, what_);
  }

 private:
  item_core<T, Store>* core_;
  T item_;
  const char* what_;
};

/// `co_await` of a receive/get: waits for an item. `Optional`: gives std::optional<T>, nullopt
/// once closed and drained (channels); otherwise gives T (queues, which never close).
template <class T, class Store, bool Optional>
class [[nodiscard]] get_awaitable : private get_node<T> {
 public:
  get_awaitable(item_core<T, Store>& core, const char* what) noexcept : core_(&core), what_(what) {}

  /// Awaitable protocol: never ready, the fast path runs in await_suspend under the lock.
  bool await_ready() const noexcept { return false; }
  /// Awaitable protocol: completes at once (false) or queues the task and suspends it (true).
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    return suspend_on(*this, h, scope_of(h), core_->mutex_, core_->getters_, what_,
                      [this](wake_list& wakes) {
                        return core_->take_locked(this->slot, wakes) || core_->closed_;
                      });
  }
  /// The item (or nullopt: closed and drained); throws `std::system_error` with
  /// `errc::cancelled`, no item then taken.
  std::conditional_t<Optional, std::optional<T>, T> await_resume() {
    finish_wait(*this, core_->getters_, core_->mutex_, what_);
    if constexpr (Optional) {
      return std::move(this->slot);
    } else {
      return std::move(*this->slot);
    }
  }

  /// Returns what this receive gave (and its caller will not keep) to the channel or queue, at
  /// the front: `when_any` calls it for a receive that completed but lost the race, so a
  /// receive that loses never takes an item. Nothing happens for nullopt (the end). Throws
  /// std::bad_alloc. Thread-safety: like a send.
  void give_back(std::conditional_t<Optional, std::optional<T>, T>&& item) {
    if constexpr (Optional) {
      if (item) core_->give_back(std::move(*item));
    } else {
      core_->give_back(std::move(item));
    }
  }

 private:
  item_core<T, Store>* core_;
  const char* what_;
};

/// `co_await` of a queue's join: waits until the unfinished count is zero.
template <class T, class Store>
class [[nodiscard]] join_awaitable : private wait_node {
 public:
  explicit join_awaitable(item_core<T, Store>& core) noexcept : core_(&core) {}
  /// Awaitable protocol: never ready, the fast path runs in await_suspend under the lock.
  bool await_ready() const noexcept { return false; }
  /// Awaitable protocol: completes at once (false) or queues the task and suspends it (true).
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    return suspend_on(*this, h, scope_of(h), core_->mutex_, core_->joiners_, what,
                      [this](wake_list&) { return core_->unfinished_ == 0; });
  }
  /// Returns once every item put was marked done; throws `errc::cancelled`.
  void await_resume() { finish_wait(*this, core_->joiners_, core_->mutex_, what); }

 private:
  static constexpr const char* what = "weft queue join";
  item_core<T, Store>* core_;
};

/// The deadline of a blocking call with a timeout.
template <class Rep, class Period>
std::optional<clock::time_point> blocking_deadline(std::chrono::duration<Rep, Period> d) {
  const clock::time_point now = clock::now();
  if (d <= d.zero()) return now;
  const auto room = clock::time_point::max() - now;
  if (d >= std::chrono::duration_cast<std::chrono::duration<Rep, Period>>(room)) {
    return clock::time_point::max();
  }
  return now + std::chrono::ceil<clock::duration>(d);
}

}  // namespace weft::detail
