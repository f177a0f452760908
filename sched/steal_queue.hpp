// weft: the local run queue of a multi-thread worker: its owner pushes and pops, others steal.
#pragma once

#include <array>
#include <atomic>
#include <coroutine>
#include <cstdint>

namespace weft::sched {

/// A bounded single-producer, multi-consumer ring of coroutine handles (Tokio's local queue).
///
/// The owning worker pushes at the tail and pops at the head (FIFO, so that tasks queued on a
/// worker take turns); idle workers steal half of it from the head. Only the owner writes
/// `tail_`; every consumer (the owner popping, thieves stealing) claims items by a CAS on
/// `head_`. A thief copies the items it wants first and then claims them with one CAS: the
/// owner never overwrites a slot in [head, tail), so if the CAS succeeds the copies are the
/// items it claimed; if it fails, another consumer moved the head and the copies are dropped.
/// Slots are atomics because a thief with a stale head may read a slot the owner is rewriting
/// (a benign race whose value the failed CAS discards).
///
/// Thread-safety: `try_push`, `pop` and `claim_half` by the owner only; `steal_into` by any
/// thread into a queue the caller owns; `size_hint` anywhere.
class steal_queue {
 public:
  /// How many handles the queue holds at most (a power of two, so indexing is a mask).
  static constexpr std::uint32_t capacity = 256;

  /// Appends `h`; false when the queue is full (the caller then moves half of it to the shared
  /// queue with `claim_half`). Owner only.
  bool try_push(std::coroutine_handle<> h) noexcept {
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    // Acquire: the consumers' reads of the slots we may now reuse happened before.
    if (tail - head_.load(std::memory_order_acquire) >= capacity) return false;
    slots_[tail & mask].store(h.address(), std::memory_order_relaxed);
    tail_.store(tail + 1, std::memory_order_release);
    return true;
  }

  /// Removes the oldest handle, or returns a null handle when empty. Owner only.
  std::coroutine_handle<> pop() noexcept {
    std::uint32_t head = head_.load(std::memory_order_acquire);
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    while (head != tail) {
      void* item = slots_[head & mask].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(head, head + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return std::coroutine_handle<>::from_address(item);
      }
    }
    return {};
  }

  /// Claims the older half of the queue for the caller, which moves it to the shared queue
  /// (done when the queue is full). Writes up to capacity/2 handles to `out`; returns how many.
  /// Owner only.
  std::uint32_t claim_half(std::array<std::coroutine_handle<>, capacity / 2>& out) noexcept {
    std::uint32_t head = head_.load(std::memory_order_acquire);
    for (;;) {
      const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
      const std::uint32_t n = (tail - head) / 2;
      if (n == 0) return 0;
      for (std::uint32_t i = 0; i < n; ++i) {
        out[i] = std::coroutine_handle<>::from_address(
            slots_[(head + i) & mask].load(std::memory_order_relaxed));
      }
      if (head_.compare_exchange_weak(head, head + n, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return n;
      }
    }
  }

  /// Moves about half of this queue's handles into `dst` (which the caller owns and which must
  /// be empty) and returns one more to run at once, or a null handle when there was nothing to
  /// steal. Any thread.
  std::coroutine_handle<> steal_into(steal_queue& dst) noexcept {
    std::uint32_t head = head_.load(std::memory_order_acquire);
    for (int attempt = 0; attempt < 16; ++attempt) {
      const std::uint32_t tail = tail_.load(std::memory_order_acquire);
      std::uint32_t n = tail - head;
      if (n == 0 || n > capacity) return {};  // empty, or a stale head: nothing sure to take
      n -= n / 2;                             // the larger half: a single item is stolen too
      const std::uint32_t dst_tail = dst.tail_.load(std::memory_order_relaxed);
      // Copy all but the first into dst beyond its tail (invisible to others until the tail
      // moves); the first is run by the thief directly.
      void* first = slots_[head & mask].load(std::memory_order_relaxed);
      for (std::uint32_t i = 1; i < n; ++i) {
        dst.slots_[(dst_tail + i - 1) & mask].store(
            slots_[(head + i) & mask].load(std::memory_order_relaxed), std::memory_order_relaxed);
      }
      if (head_.compare_exchange_strong(head, head + n, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
        if (n > 1) dst.tail_.store(dst_tail + n - 1, std::memory_order_release);
        return std::coroutine_handle<>::from_address(first);
      }
      // Another consumer moved the head (now in `head`): try again with the new range.
    }
    return {};
  }

  /// How many handles are queued; exact for the owner, a hint for others.
  std::uint32_t size_hint() const noexcept {
    const std::uint32_t tail = tail_.load(std::memory_order_acquire);
    const std::uint32_t head = head_.load(std::memory_order_acquire);
    const std::uint32_t n = tail - head;
    return n > capacity ? 0 : n;
  }
  /// `size_hint() == 0`: exact for the owner, a hint for others.
  bool empty_hint() const noexcept { return size_hint() == 0; }

 private:
  static constexpr std::uint32_t mask = capacity - 1;

  alignas(64) std::atomic<std::uint32_t> head_{0};
  alignas(64) std::atomic<std::uint32_t> tail_{0};
  alignas(64) std::array<std::atomic<void*>, capacity> slots_{};
};

}  // namespace weft::sched
