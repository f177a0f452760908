// weft: the parking component shared by the threaded executors (multi-thread, single-lock):
// the sleepers list and its store-load fence, the stall watch, the thread binding, the rings
// and their timers. Private to the library: no installed header includes it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include <weft/check.hpp>
#include <weft/executor.hpp>
#include <weft/io/reactor.hpp>

namespace weft::sched::parking {

using clock = std::chrono::steady_clock;

/// A full (store-load) fence between a write and a read of different variables, the core of the
/// parking protocols' Dekker pattern (see ARCHITECTURE.md, "Parking").
///
/// ThreadSanitizer does not model std::atomic_thread_fence (g++ refuses it under
/// -fsanitize=thread), so there the fence is a seq_cst read-modify-write of one shared word:
/// two such RMWs are ordered in that word's modification order, and the later one
/// synchronizes with the earlier, which gives the same guarantee in terms TSan checks. It is
/// not used in normal builds because every worker writing one cache line on each wake-up
/// check would make the line bounce between cores.
inline void store_load_fence() noexcept {
#if defined(__SANITIZE_THREAD__)
  static std::atomic<unsigned> word{0};
  word.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

/// What every thread of a threaded executor brings to parking: its ring (where it sleeps), its
/// place on the sleepers list, and the task sequence the stall watcher reads. The executors'
/// per-thread states derive from it.
struct park_slot {
  unsigned index = 0;
  std::optional<io::reactor> reactor;
  bool sleeping = false;  // on the sleepers list (guarded by the parking lot's mutex)

  // Odd while a task runs (one resumption); written by this slot's thread only, read by the
  // watcher (another thread).
  std::atomic<std::uint64_t> task_seq{0};
  std::atomic<std::uint64_t> watched_seq{0};  // task_seq at the watcher's last look

  /// Before and after each task resumption (this slot's thread only).
  void bump_task_seq() noexcept {
    task_seq.store(task_seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  /// What the watcher saw at a look at this slot.
  struct look {
    bool running;  // a task was running
    bool stuck;    // the same resumption as at the previous look: it has not polled since
  };
  /// The watcher's look (the watcher only): compares with the previous look and records this
  /// one.
  look look_at() noexcept {
    const std::uint64_t seq = task_seq.load(std::memory_order_relaxed);
    const bool running = (seq & 1) != 0;
    const bool stuck = running && seq == watched_seq.load(std::memory_order_relaxed);
    watched_seq.store(seq, std::memory_order_relaxed);
    return {running, stuck};
  }
};

/// Arms `node` on the ring of `self`, the calling thread's slot of the executor (null when the
/// thread is not one of its threads: std::logic_error, "a timer armed outside `threads`").
/// The node remembers its slot, so that any thread can cancel it (the heap has its own lock).
void add_timer(park_slot* self, weft::detail::timer_node& node, const char* threads);
/// Cancels a node armed by add_timer, from any thread; nothing for a node never armed.
void cancel_timer(weft::detail::timer_node& node) noexcept;

/// The watcher's look at every slot but its own: `on_stuck(slot)` for each that has run one
/// task since the previous look (only its own thread can poll its ring: the callback asks it
/// to). Returns whether any task was running.
template <class Slots, class OnStuck>
bool watch_others(Slots& slots, const park_slot& self, OnStuck&& on_stuck) {
  bool running = false;
  for (auto& s : slots) {
    if (&*s == &self) continue;
    const park_slot::look l = s->look_at();
    if (l.stuck) on_stuck(*s);
    running = running || l.running;
  }
  return running;
}

/// The stall watch's period, carried from one watcher to the next (only the watcher touches
/// it; the role changes hands under the parking lot's mutex). Unset while nobody needs
/// watching; `mark` is what the executor compares at the end of a period to tell a busy
/// period from a quiet one.
struct watch_period {
  clock::time_point until{};
  std::uint64_t mark = 0;

  bool unset() const noexcept { return until == clock::time_point{}; }
  /// A new period from now. Callers start one only when `unset()`: the period goes on from one
  /// watcher to the next (a watcher that keeps waking for its own I/O or timers still looks
  /// once a period; a past deadline ends the wait at once).
  void start(clock::duration length, std::uint64_t m) noexcept {
    until = clock::now() + length;
    mark = m;
  }
  bool over() const noexcept { return clock::now() >= until; }
  /// After a look: another period, or none (an idle executor sleeps).
  void renew(bool keep, clock::duration length) noexcept {
    until = keep ? clock::now() + length : clock::time_point{};
  }
  void reset() noexcept { *this = {}; }
};

/// The sleepers list of one executor: the threads parked in their rings, most recent last, and
/// their count, which notifiers read without the lock after a store-load fence (either the
/// notifier sees the sleeper, or the sleeper sees the notifier's task). A thread leaves its ring
/// only after taking `mutex()`, so a wake-up made under it never finds the ring closed.
///
/// Thread-safety: the `_locked` members under `mutex()`; `sleeping()` from any thread.
class parking_lot {
 public:
  explicit parking_lot(unsigned threads) { sleepers_.reserve(threads); }

  std::mutex& mutex() const noexcept { return mutex_; }
  /// Parked threads (seq_cst: one side of the Dekker pair; call after store_load_fence()).
  int sleeping() const noexcept { return sleeping_.load(std::memory_order_seq_cst); }
  int sleeping_relaxed() const noexcept { return sleeping_.load(std::memory_order_relaxed); }
  bool empty_locked() const noexcept { return sleepers_.empty(); }

  /// `s` goes to sleep: returns the number of parked threads, `s` included. Never allocates
  /// (the list is reserved for every thread).
  int enter_locked(park_slot& s) noexcept;
  /// `s` woke by itself (I/O, a timer, work it saw) and leaves the list.
  void leave_locked(park_slot& s) noexcept;
  /// The most recent sleeper but `skip` (its caches are the warmest), taken off the list;
  /// null if there is none.
  park_slot* take_latest_locked(const park_slot* skip) noexcept;
  /// The most recent sleeper but `skip`, left on the list; null if there is none.
  park_slot* latest_locked(const park_slot* skip) const noexcept;

  /// The stop step of a run: under the lock, `stopping` is set and every sleeper woken. A
  /// thread that parked before sees `stopping` when it wakes, a later one before it parks.
  void stop(std::atomic<bool>& stopping) noexcept;
  /// Wakes `s` if its ring is open (any thread).
  void wake(park_slot& s) noexcept;

  /// Opens every slot's ring on the calling thread, all or none: a failure closes those opened
  /// and rethrows (std::system_error), before anything is queued or any thread starts. Each
  /// ring is enabled by the thread that runs it (SINGLE_ISSUER).
  template <class Slots>
  static void open_rings(Slots& slots, unsigned entries) {
    try {
      for (auto& s : slots) s->reactor.emplace(entries, nullptr, /*shared_timers=*/true);
    } catch (...) {
      for (auto& s : slots) s->reactor.reset();
      throw;
    }
  }
  /// Closes the rings at the end of a run, under the lock (a wake-up from another thread may
  /// be under way); `each(slot)` resets the executor's own state of each slot there too.
  template <class Slots, class Each>
  void close_rings(Slots& slots, Each&& each) noexcept {
    std::lock_guard lock(mutex_);
    for (auto& s : slots) {
      s->reactor.reset();
      each(*s);
    }
  }

 private:
  mutable std::mutex mutex_;
  std::vector<park_slot*> sleepers_;
  std::atomic<int> sleeping_{0};
};

/// Binds the calling thread to an executor for the length of its loop: the current executor,
/// the current reactor, the executor's own thread-local pointer, check()'s and blocking()'s
/// hooks; the destructor puts back what was there (a thread may run executors nested, as
/// block_on inside a test does).
class thread_binding {
 public:
  /// `set_executor` is executor::set_current, which only executors may call.
  using set_executor_fn = void (*)(executor*) noexcept;

  thread_binding(set_executor_fn set_executor, executor* e, io::reactor& r, void*& tls, void* self,
                 weft::detail::check_state check,
                 const weft::detail::blocking_hooks* blocking) noexcept;
  thread_binding(const thread_binding&) = delete;
  thread_binding& operator=(const thread_binding&) = delete;
  ~thread_binding();

 private:
  // What was there before, put back by the destructor.
  set_executor_fn set_executor_;
  executor* previous_executor_;
  io::reactor* previous_reactor_;
  void*& tls_;
  void* previous_tls_;
  weft::detail::check_state previous_check_;
  const weft::detail::blocking_hooks* previous_blocking_;
};

}  // namespace weft::sched::parking
