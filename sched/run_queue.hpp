// weft (private): the FIFO run queue of one executor thread.
#pragma once

#include <coroutine>
#include <cstddef>
#include <memory>
#include <utility>

namespace weft::sched {

/// A growable ring buffer of coroutine handles (power-of-two capacity, so indexing is a mask).
/// Not thread-safe: owned by the executor thread.
class run_queue {
 public:
  /// An empty queue with room for `capacity` handles (rounded up to a power of two, at least
  /// 16) before it grows. Throws std::bad_alloc.
  explicit run_queue(std::size_t capacity = 1024)
      : buffer_(std::make_unique<std::coroutine_handle<>[]>(round_up(capacity))),
        mask_(round_up(capacity) - 1) {}

  /// True when no handle is queued.
  bool empty() const noexcept { return head_ == tail_; }
  /// How many handles are queued.
  std::size_t size() const noexcept { return tail_ - head_; }

  /// Appends `h`. Throws std::bad_alloc when growing fails.
  void push(std::coroutine_handle<> h) {
    if (!try_push(h)) {
      grow();
      buffer_[tail_++ & mask_] = h;
    }
  }

  /// Appends `h` unless the buffer is full (then returns false and changes nothing).
  bool try_push(std::coroutine_handle<> h) noexcept {
    if (size() == mask_ + 1) [[unlikely]]
      return false;
    buffer_[tail_++ & mask_] = h;
    return true;
  }

  /// Removes and returns the oldest handle. Precondition: !empty().
  std::coroutine_handle<> pop() noexcept { return buffer_[head_++ & mask_]; }

  /// Removes and returns the handle `i` places behind the oldest one, which takes its place
  /// (the seeded scheduling's perturbed order). Precondition: i < size().
  std::coroutine_handle<> pop_at(std::size_t i) noexcept {
    std::swap(buffer_[head_ & mask_], buffer_[(head_ + i) & mask_]);
    return pop();
  }

 private:
  static std::size_t round_up(std::size_t n) noexcept {
    std::size_t c = 16;
    while (c < n) c *= 2;
    return c;
  }
  [[gnu::noinline]] void grow() {
    const std::size_t old_capacity = mask_ + 1;
    auto bigger = std::make_unique<std::coroutine_handle<>[]>(old_capacity * 2);
    for (std::size_t i = 0; i < old_capacity; ++i) bigger[i] = buffer_[(head_ + i) & mask_];
    buffer_ = std::move(bigger);
    head_ = 0;
    tail_ = old_capacity;
    mask_ = old_capacity * 2 - 1;
  }

  std::unique_ptr<std::coroutine_handle<>[]> buffer_;
  std::size_t mask_;
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
};

}  // namespace weft::sched
