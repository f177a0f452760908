// weft: channels between tasks and threads: channel<T> (MPMC, bounded or unbounded) and
// oneshot<T> (one value, once).
#pragma once

#include <coroutine>
#include <cstddef>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <weft/cancel.hpp>
#include <weft/detail/item_queue.hpp>
#include <weft/detail/wait_queue.hpp>
#include <weft/errc.hpp>

namespace weft {

/// A multi-producer multi-consumer channel of `T` (Go's channels, Tokio's mpsc, with close).
///
/// `co_await ch.send(v)` puts `v` in: at once when a receiver waits or there is room, otherwise
/// (bounded channels) it waits for room, which gives back-pressure. `co_await ch.recv()` gives
/// the next item in FIFO order, waiting while the channel is empty, and `std::nullopt` once the
/// channel is closed and every buffered item was received. `close()` ends it: sends fail with
/// `errc::channel_closed` from then on (waiting senders too), receivers drain what is buffered.
/// Waiting senders and receivers are each served in FIFO order; an item goes straight to a
/// waiting receiver, so no one barges ahead of a waiter.
///
/// Cancellation: a send or recv whose task is stopped (before or while waiting) throws
/// `std::system_error` with `errc::cancelled`; the item was then not sent (send) or not taken
/// (recv). An item that raced a stop is never lost or duplicated: either the wait completes with
/// it, or it goes to the next receiver (or stays buffered).
///
/// Ownership: the channel is one non-movable object shared by reference. Keep it alive longer
/// than every task or thread that uses it (typically a local of the task that spawns and joins
/// the producers and consumers, or a `std::shared_ptr<channel<T>>` captured by each of them);
/// destroying it while someone waits is undefined.
///
/// Thread-safety: every member may be called from any thread: tasks on any executor, and plain
/// threads through `send_blocking` / `recv_blocking`. `T`'s moves must not throw.
template <class T>
class channel {
  using store_type = detail::fifo_store<T>;
  using core_type = detail::item_core<T, store_type>;

 public:
  /// The item type.
  using value_type = T;
  /// The awaitable of `send()`: gives nothing; throws as documented on `send()`.
  using send_awaitable = detail::put_awaitable<T, store_type>;
  /// The awaitable of `recv()`: gives `std::optional<T>`; throws as documented on `recv()`.
  using recv_awaitable = detail::get_awaitable<T, store_type, true>;

  /// The capacity of an unbounded channel.
  static constexpr std::size_t unlimited = core_type::unlimited;

  /// A channel that buffers up to `capacity` items (`unlimited`: unbounded). Throws
  /// std::invalid_argument for a capacity of 0 (rendezvous channels are not supported).
  explicit channel(std::size_t capacity = unlimited) : core_(checked(capacity)) {}
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;

  /// `channel<T>::bounded(n)`: a channel of capacity `n` >= 1 (sends wait while it is full).
  static channel bounded(std::size_t capacity) { return channel(capacity); }
  /// `channel<T>::unbounded()`: sends never wait.
  static channel unbounded() { return channel(unlimited); }

  /// `co_await ch.send(v)` returns once `v` is buffered or received. Throws `std::system_error`:
  /// `errc::channel_closed` when the channel is or gets closed before `v` is in,
  /// `errc::cancelled` when the task's stop is requested first, `errc::no_runtime` when it would
  /// have to wait outside a weft executor; `v` is dropped in each case.
  send_awaitable send(T value) noexcept {
    return send_awaitable(core_, std::move(value), "weft::channel::send");
  }

  /// Sends without waiting: false (and `value` untouched) when the channel is full. Throws
  /// `std::system_error` with `errc::channel_closed` when it is closed, std::bad_alloc.
  bool try_send(T&& value) { return try_put(value); }
  /// Sends a copy of `value` without waiting; see the overload above.
  bool try_send(const T& value) {
    T copy(value);
    return try_put(copy);
  }

  /// `co_await ch.recv()` gives the next item, or `std::nullopt` once the channel is closed and
  /// drained. Throws `std::system_error`: `errc::cancelled` when the task's stop is requested
  /// first, `errc::no_runtime` when it would have to wait outside a weft executor.
  recv_awaitable recv() noexcept { return recv_awaitable(core_, "weft::channel::recv"); }

  /// The next item if one is buffered; never waits. nullopt when empty (see `is_closed()`).
  std::optional<T> try_recv() noexcept { return core_.try_get(); }

  /// `send` for a plain thread (one that runs no weft executor): blocks the thread while the
  /// channel is full. Throws `errc::channel_closed` like `send`, std::logic_error when it would
  /// have to block a thread that runs a weft executor.
  void send_blocking(T value) {
    if (core_.put_blocking(value, std::nullopt, "weft::channel::send_blocking") ==
        core_type::put_status::closed) {
      throw_error(errc::channel_closed, "weft::channel::send_blocking");
    }
  }

  /// `recv` for a plain thread: blocks the thread while the channel is empty; nullopt once it is
  /// closed and drained. Throws std::logic_error when it would have to block a thread that runs
  /// a weft executor.
  std::optional<T> recv_blocking() {
    std::optional<T> out;
    core_.get_blocking(out, std::nullopt, "weft::channel::recv_blocking");
    return out;
  }

  /// Closes the channel: later and waiting sends fail with `errc::channel_closed`; receivers get
  /// the buffered items, then nullopt. Idempotent.
  void close() noexcept { core_.close(); }

  /// Whether `close()` was called.
  bool is_closed() const noexcept { return core_.is_closed(); }

  /// The number of buffered items (a snapshot; senders waiting for room are not counted).
  std::size_t size() const noexcept { return core_.size(); }

  /// The capacity given at construction (`unlimited` for an unbounded channel).
  std::size_t capacity() const noexcept { return core_.capacity(); }

 private:
  static std::size_t checked(std::size_t capacity) {
    if (capacity == 0) {
      throw std::invalid_argument("weft::channel: capacity 0 (rendezvous) is not supported");
    }
    return capacity;
  }
  bool try_put(T& value) {
    switch (core_.try_put(value)) {
      case core_type::put_status::done: return true;
      case core_type::put_status::full: return false;
      case core_type::put_status::closed: break;
    }
    throw_error(errc::channel_closed, "weft::channel::try_send");
  }

  core_type core_;
};

/// One value, sent once and received once (Tokio's oneshot, a promise/future pair for tasks).
///
/// `send(v)` never waits; `co_await o.recv()` waits for the value. When the sending side gives up
/// without sending (`close()`, or dropping the `sender` handle from `get_sender()` unsent), the
/// receiver gets `std::system_error` with `errc::channel_closed`, so a producer that fails can
/// never leave the receiver waiting forever.
///
/// Cancellation: a `recv()` whose task is stopped (before or while waiting) throws
/// `errc::cancelled`; a value sent meanwhile is kept, and a later `recv()` gets it.
///
/// Ownership: a non-movable object shared by reference; keep it alive longer than the sender
/// handle and every task that receives. Thread-safety: every member may be called from any
/// thread. `T`'s move constructor must not throw.
template <class T>
class oneshot {
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "weft::oneshot needs an item type whose moves do not throw");

 public:
  /// The item type.
  using value_type = T;

  oneshot() = default;
  oneshot(const oneshot&) = delete;
  oneshot& operator=(const oneshot&) = delete;

  /// The awaitable of `recv()`.
  class [[nodiscard]] recv_awaitable : private detail::get_node<T> {
   public:
    /// Awaitable protocol: never ready, the fast path runs in await_suspend under the lock.
    bool await_ready() const noexcept { return false; }
    /// Awaitable protocol: completes at once (false) or queues the task and suspends it (true).
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) {
      return detail::suspend_on(*this, h, detail::scope_of(h), owner_->mutex_, owner_->waiters_,
                                what, [this](detail::wake_list&) { return owner_->take(*this); });
    }
    /// The value; throws as documented on `recv()`.
    T await_resume() {
      detail::finish_wait(*this, owner_->waiters_, owner_->mutex_, what);
      if (!this->slot) throw_error(errc::channel_closed, "weft::oneshot::recv: closed unsent");
      return std::move(*this->slot);
    }

   private:
    friend class oneshot;
    static constexpr const char* what = "weft::oneshot::recv";
    explicit recv_awaitable(oneshot& o) noexcept : owner_(&o) {}
    oneshot* owner_;
  };

  /// The sending side as a move-only handle: `send(v)` sends; destroying it unsent closes the
  /// oneshot (the receiver then gets `errc::channel_closed`). Thread-safety: one handle is used
  /// by one thread or task at a time. Lifetime: the oneshot must outlive it.
  class sender {
   public:
    /// A handle that sends nothing and closes nothing.
    sender() noexcept = default;
    /// Takes over `other`'s duty to send (`other` then sends and closes nothing).
    sender(sender&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
    /// Closes the oneshot this handle held unsent, then takes over `other`'s.
    sender& operator=(sender&& other) noexcept {
      if (this != &other) {
        if (owner_ != nullptr) owner_->close();
        owner_ = std::exchange(other.owner_, nullptr);
      }
      return *this;
    }
    sender(const sender&) = delete;
    sender& operator=(const sender&) = delete;
    /// Closes the oneshot if this handle did not send.
    ~sender() {
      if (owner_ != nullptr) owner_->close();
    }

    /// Sends `value` (see `oneshot::send`); the handle is spent afterwards. Throws
    /// std::logic_error when spent, and what `oneshot::send` throws.
    void send(T value) {
      if (owner_ == nullptr) throw std::logic_error("weft::oneshot::sender: already spent");
      std::exchange(owner_, nullptr)->send(std::move(value));
    }
    /// True until the handle sent or was moved from.
    bool valid() const noexcept { return owner_ != nullptr; }

   private:
    friend class oneshot;
    explicit sender(oneshot& o) noexcept : owner_(&o) {}
    oneshot* owner_ = nullptr;
  };

  /// The sending handle; one per oneshot. Throws std::logic_error on a second call.
  sender get_sender() {
    std::lock_guard lock(mutex_);
    if (sender_taken_) throw std::logic_error("weft::oneshot::get_sender: called twice");
    sender_taken_ = true;
    return sender(*this);
  }

  /// Sends the value (to the waiting receiver, or kept for the next `recv()`); never waits.
  /// Throws `std::system_error` with `errc::channel_closed` after `close()`, std::logic_error
  /// when a value was already sent.
  void send(T value) {
    detail::wake_list wakes;
    std::lock_guard lock(mutex_);
    if (status_ == status::closed) {
      throw_error(errc::channel_closed, "weft::oneshot::send: closed");
    }
    if (status_ != status::empty) throw std::logic_error("weft::oneshot::send: already sent");
    if (detail::wait_node* n = waiters_.grant_next()) {
      static_cast<detail::get_node<T>*>(n)->slot.emplace(std::move(value));
      status_ = status::taken;
      wakes.add(*n);
    } else {
      value_.emplace(std::move(value));
      status_ = status::full;
    }
  }

  /// `co_await o.recv()` gives the value, waiting until it is sent. Throws `std::system_error`:
  /// `errc::channel_closed` when closed without a value, `errc::cancelled` when the task's stop
  /// is requested first, `errc::no_runtime` when it would have to wait outside a weft executor;
  /// std::logic_error when the value was already received or another task is receiving.
  recv_awaitable recv() noexcept { return recv_awaitable(*this); }

  /// The value if it was sent and not yet received; nullopt if not sent yet. Never waits.
  /// Throws like `recv()` when closed or already received.
  std::optional<T> try_recv() {
    std::lock_guard lock(mutex_);
    detail::get_node<T> probe;
    if (!take(probe)) return std::nullopt;
    if (!probe.slot) throw_error(errc::channel_closed, "weft::oneshot::try_recv: closed unsent");
    return std::move(probe.slot);
  }

  /// Gives up sending: a waiting or later `recv()` throws `errc::channel_closed`. No effect once
  /// a value was sent. Idempotent.
  void close() noexcept {
    detail::wake_list wakes;
    std::lock_guard lock(mutex_);
    if (status_ != status::empty) return;
    status_ = status::closed;
    while (detail::wait_node* n = waiters_.grant_next()) wakes.add(*n);
  }

  /// True when closed without a value.
  bool is_closed() const noexcept {
    std::lock_guard lock(mutex_);
    return status_ == status::closed;
  }

 private:
  enum class status { empty, full, taken, closed };

  // Under the lock: true when the receive completes now (value in `node.slot`, or closed: empty).
  bool take(detail::get_node<T>& node) {
    switch (status_) {
      case status::full:
        node.slot.emplace(std::move(*value_));
        value_.reset();
        status_ = status::taken;
        return true;
      case status::closed: return true;
      case status::taken: throw std::logic_error("weft::oneshot::recv: value already received");
      case status::empty: break;
    }
    if (waiters_.has_live()) {
      throw std::logic_error("weft::oneshot::recv: another task is already receiving");
    }
    return false;
  }

  mutable std::mutex mutex_;
  status status_ = status::empty;
  bool sender_taken_ = false;
  std::optional<T> value_;
  detail::wait_list waiters_;
};

}  // namespace weft
