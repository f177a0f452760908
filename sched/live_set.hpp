// weft: the set of live spawned tasks of an executor whose tasks run on several threads.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>

#include <weft/executor.hpp>

namespace weft::sched {

/// The spawned tasks of a threaded executor that have not finished, so that shutdown can cancel
/// them. A task is added on the thread that spawns it and removed on the thread it finishes on,
/// which may be another one: the set is sharded by the task's address (16 intrusive lists, each
/// behind a spin lock) so that workers spawning and finishing tasks rarely meet on one lock,
/// and it costs no field beyond the links every spawned task already has.
///
/// Thread-safety: every member may be called from any thread.
class live_set {
 public:
  live_set() noexcept {
    for (shard& s : shards_) s.head.prev = s.head.next = &s.head;
  }
  live_set(const live_set&) = delete;
  live_set& operator=(const live_set&) = delete;

  /// Adds `link`, a spawned task that is not in any set.
  void add(detail::spawn_link& link) noexcept {
    shard& s = shard_of(link);
    s.lock();
    link.next = &s.head;
    link.prev = s.head.prev;
    s.head.prev->next = &link;
    s.head.prev = &link;
    s.added.store(s.added.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    s.unlock();
    size_.fetch_add(1, std::memory_order_relaxed);
  }

  /// Removes `link`; returns how many tasks are left.
  std::size_t remove(detail::spawn_link& link) noexcept {
    shard& s = shard_of(link);
    s.lock();
    link.prev->next = link.next;
    link.next->prev = link.prev;
    link.prev = link.next = nullptr;
    s.unlock();
    // seq_cst, like the shutdown flag the caller reads next and the executor's reads of size():
    // the last task and the shutdown cannot both miss each other (see task_finished).
    return size_.fetch_sub(1, std::memory_order_seq_cst) - 1;
  }

  /// Calls `fn(link)` for every task in the set, under the lock of its shard: `fn` must not
  /// add or remove tasks (requesting stop is fine: stop callbacks only schedule), and a task
  /// cannot finish, so its frame cannot go away, while `fn` runs on it.
  template <class Fn>
  void for_each(Fn&& fn) noexcept {
    for (shard& s : shards_) {
      s.lock();
      for (detail::spawn_link* l = s.head.next; l != &s.head; l = l->next) fn(*l);
      s.unlock();
    }
  }

  /// How many tasks were ever added (a snapshot when others add).
  std::uint64_t added() const noexcept {
    std::uint64_t n = 0;
    for (const shard& s : shards_) n += s.added.load(std::memory_order_relaxed);
    return n;
  }

  /// How many tasks are in the set (a snapshot when others add or remove).
  std::size_t size() const noexcept { return size_.load(std::memory_order_seq_cst); }

 private:
  struct alignas(64) shard {
    detail::spawn_link head;
    std::atomic<bool> locked{false};
    std::atomic<std::uint64_t> added{0};  // written under the lock, read by added()
    void lock() noexcept {
      while (locked.exchange(true, std::memory_order_acquire)) {
        while (locked.load(std::memory_order_relaxed)) std::this_thread::yield();
      }
    }
    void unlock() noexcept { locked.store(false, std::memory_order_release); }
  };

  shard& shard_of(const detail::spawn_link& link) noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(&link);
    return shards_[((address >> 4) * 0x9E3779B97F4A7C15ull) >> 60];
  }

  std::array<shard, 16> shards_;
  std::atomic<std::size_t> size_{0};
};

}  // namespace weft::sched
