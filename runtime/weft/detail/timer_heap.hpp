// weft: the per-thread timer structure (an intrusive binary min-heap ordered by deadline).
#pragma once

#include <chrono>
#include <cstddef>
#include <limits>
#include <vector>

namespace weft {

/// The clock every weft timer runs on.
using clock = std::chrono::steady_clock;

namespace detail {

/// The time of a run whose clock is paused (run_options::paused_clock): it moves only when
/// the loop jumps it to the next timer. Set on the loop's thread while the run lasts.
struct paused_clock {
  clock::time_point now;  ///< the paused run's time
};
inline thread_local paused_clock* tls_paused_clock = nullptr;

}  // namespace detail

/// weft's time, the one sleep, timeouts, deadlines and intervals measure: `clock::now()`, but
/// inside a run whose clock is paused (run_options::paused_clock) that run's time, which
/// moves only when every task waits on a timer. Never throws; any thread (a thread that runs
/// no paused loop reads the real clock).
inline clock::time_point now() noexcept {
  if (detail::paused_clock* p = detail::tls_paused_clock) [[unlikely]]
    return p->now;
  return clock::now();
}

namespace detail {

/// One pending timer. It lives inside the awaitable that waits (in the coroutine frame), so a
/// timer costs no allocation of its own: the heap only stores a pointer to it.
struct timer_node {
  static constexpr std::size_t not_queued = std::numeric_limits<std::size_t>::max();

  clock::time_point deadline{};
  /// Called by the owning executor, on its own thread, once the deadline has passed and the node
  /// has been taken out of the heap.
  void (*on_expire)(timer_node*) noexcept = nullptr;
  std::size_t heap_index = not_queued;
  /// The heap's owner, for executors whose tasks move between threads (the multi-thread and
  /// single-lock executors cancel a timer through the heap that holds it). Null otherwise.
  void* owner = nullptr;

  bool queued() const noexcept { return heap_index != not_queued; }
};

/// A binary min-heap of `timer_node*` with O(log n) insert, pop and removal of any node.
/// Not thread-safe: each executor thread owns one.
class timer_heap {
 public:
  bool empty() const noexcept { return nodes_.empty(); }
  std::size_t size() const noexcept { return nodes_.size(); }
  /// The earliest node. Precondition: !empty().
  timer_node* top() const noexcept { return nodes_.front(); }

  /// Inserts `n`. Precondition: `n` is not queued. Throws std::bad_alloc.
  void push(timer_node& n) {
    nodes_.push_back(&n);  // may throw: before the node claims to be queued
    n.heap_index = nodes_.size() - 1;
    sift_up(n.heap_index);
  }

  /// Removes `n` if it is queued; does nothing otherwise.
  void remove(timer_node& n) noexcept {
    if (!n.queued()) return;
    std::size_t i = n.heap_index;
    n.heap_index = timer_node::not_queued;
    timer_node* last = nodes_.back();
    nodes_.pop_back();
    if (last == &n) return;
    nodes_[i] = last;
    last->heap_index = i;
    if (i > 0 && earlier(i, parent(i))) {
      sift_up(i);
    } else {
      sift_down(i);
    }
  }

  /// Removes and returns the earliest node if its deadline is at or before `now`, else nullptr.
  timer_node* pop_expired(clock::time_point now) noexcept {
    if (nodes_.empty() || nodes_.front()->deadline > now) return nullptr;
    timer_node* n = nodes_.front();
    remove(*n);
    return n;
  }

 private:
  static std::size_t parent(std::size_t i) noexcept { return (i - 1) / 2; }
  bool earlier(std::size_t a, std::size_t b) const noexcept {
    return nodes_[a]->deadline < nodes_[b]->deadline;
  }
  void swap_nodes(std::size_t a, std::size_t b) noexcept {
    std::swap(nodes_[a], nodes_[b]);
    nodes_[a]->heap_index = a;
    nodes_[b]->heap_index = b;
  }
  void sift_up(std::size_t i) noexcept {
    while (i > 0 && earlier(i, parent(i))) {
      swap_nodes(i, parent(i));
      i = parent(i);
    }
  }
  void sift_down(std::size_t i) noexcept {
    const std::size_t n = nodes_.size();
    for (;;) {
      std::size_t smallest = i;
      std::size_t left = 2 * i + 1;
      std::size_t right = left + 1;
      if (left < n && earlier(left, smallest)) smallest = left;
      if (right < n && earlier(right, smallest)) smallest = right;
      if (smallest == i) return;
      swap_nodes(i, smallest);
      i = smallest;
    }
  }

  std::vector<timer_node*> nodes_;
};

}  // namespace detail
}  // namespace weft
