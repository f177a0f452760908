// weft: the single-lock executor: N threads that share one global lock (CPython's GIL).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <weft/detail/children.hpp>
#include <weft/executor.hpp>
#include <weft/io/reactor.hpp>
#include <weft/sched/threaded_executor.hpp>
#include <weft/spawn.hpp>
#include <weft/task.hpp>

namespace weft::sched {

class run_queue;     // sched/run_queue.hpp (private)
class seeded_order;  // sched/seeded_order.hpp (private)

/// How the global lock changes hands at `weft::check()`.
enum class gil_policy {
  /// CPython 3.2+ ("new GIL"): a thread that has waited for the lock longer than the switch
  /// interval asks the holder to drop it; the holder drops it at its next check point and waits
  /// until another thread has taken it (a forced switch).
  interval,
  /// CPython 2 ("old GIL"): the holder drops the lock every `ticks` check points and takes it
  /// straight back; nobody is forced to switch, so on a multicore machine the same thread
  /// usually wins again while the woken waiter is still getting scheduled.
  ticks,
};

/// Settings of the single-lock executor.
struct single_lock_options {
  unsigned workers = 0;         ///< threads, the calling one included; 0: one per CPU
  unsigned ring_entries = 256;  ///< submission queue size of each thread's ring
  /// When the holder gives the lock up (see gil_policy).
  gil_policy policy = gil_policy::interval;
  /// Interval policy: how long a thread waits for the lock before asking for it. Both
  /// policies: how often a parked thread looks for a holder stuck in one task, whose ring it
  /// then asks to be polled at its next check point (never less often than every 1 ms).
  /// Must be positive (0 would make waiting threads spin): the constructor throws
  /// std::invalid_argument otherwise.
  std::chrono::nanoseconds switch_interval = std::chrono::milliseconds(5);
  unsigned ticks = 100;  ///< ticks policy: check points between two releases
  /// When set, the next task is picked from the first few of the shared queue by a generator
  /// seeded with it (run_options::seed). The threads still race for the lock, so the order
  /// is perturbed but not reproducible when several threads run.
  std::optional<std::uint64_t> seed{};
  /// Pauses weft's clock (`weft::now()`) for the runs of this executor, as the cooperative
  /// executor does (run_options::paused_clock). One thread only: the constructor throws
  /// std::invalid_argument with more (the threads would race the jumps).
  bool paused_clock = false;
};

/// What the global lock did during a run (totals over the threads).
struct single_lock_stats {
  std::uint64_t acquisitions = 0;       ///< times a thread took the lock
  std::uint64_t switches = 0;           ///< acquisitions by another thread than the last holder
  std::uint64_t drop_requests = 0;      ///< interval policy: waiters that asked the holder to drop
  std::uint64_t forced_switches = 0;    ///< hand-overs at a check point because of such a request
  std::uint64_t releases_at_check = 0;  ///< ticks policy: releases at a check point
  std::chrono::nanoseconds lock_wait{0};  ///< total time threads spent waiting for the lock
  std::uint64_t tasks_run = 0;            ///< task resumptions
  /// Interval policy: times an idle thread saw the holder run one task for a whole interval
  /// and asked it to look at its ring at its next check point.
  std::uint64_t poll_requests = 0;
  /// Hand-overs at a check point because that look made tasks ready (I/O that completed on the
  /// holder's ring, which only the holder reaps).
  std::uint64_t io_handoffs = 0;
};

/// CPython's threading model made visible: N threads, one global lock. A thread holds the lock
/// while it runs task code, and drops it while it waits on its ring (I/O, timers) and inside
/// `weft::blocking(fn)`. So tasks get I/O concurrency across threads but never run in
/// parallel: CPU-bound code is no faster than on one thread, and slower when the lock changes
/// hands often. `weft::check()` is the check point where the lock may change hands (see
/// gil_policy); the executor counts the hand-overs and the time threads waited (`stats()`).
///
/// Tasks wait in one shared FIFO queue; whichever thread holds the lock runs the next one, so
/// tasks move between threads. A task's I/O goes to the ring of the thread it runs on. A
/// thread whose queue is empty drops the lock and parks in its ring; a thread is woken when a
/// task becomes ready and no other thread is already on its way to the lock.
///
/// Thread-safety: `schedule`, `defer`, `start` and `spawn_on(*this, ...)` may be called from any
/// thread; `block_on` from one thread at a time; `stats()` from any thread.
class single_lock final : public threaded_executor {
 public:
  /// Checks the options (std::invalid_argument for 0 or more than 1024 workers given
  /// explicitly as such, a negative interval or zero ticks); rings are created by block_on.
  explicit single_lock(single_lock_options options = {});
  ~single_lock() override;

  void schedule(std::coroutine_handle<> h) noexcept override;
  void add_timer(detail::timer_node& node) override;
  void cancel_timer(detail::timer_node& node) noexcept override;

  /// The number of threads, the calling one included (options' 0: one per CPU). Any thread.
  unsigned workers() const noexcept { return worker_count_; }
  /// The lock's counters so far. Any thread.
  single_lock_stats stats() const noexcept;
  /// Per-thread and lock counters (weft::runtime_metrics). Any thread while block_on runs.
  void collect_metrics(runtime_metrics& m) const noexcept override;

  /// Tasks run between two looks at the thread's ring.
  static constexpr std::uint32_t event_interval = 61;

 private:
  struct thread_state;

  void run_wrapped(task<void> wrapper) override;
  void run_threads();
  void thread_loop(thread_state& t);
  void wake_one() noexcept;
  void wake_main_thread() noexcept override;

  // The lock itself.
  enum class drop_kind {
    plain,      // drop and go on (park, blocking(), the ticks policy)
    forced,     // a waiter asked: wait until another thread has taken the lock
    hand_over,  // this thread's ring made tasks ready: wait a while for a woken thread
  };
  void take_lock(thread_state& t);
  void drop_lock(thread_state& t, drop_kind kind);
  static void check_point();
  void serve_request(thread_state& t, bool waiter, bool poll);
  bool poll_at_check(thread_state& t);
  void poll_ring(thread_state& t, bool block, clock::time_point limit = clock::time_point::max(),
                 bool run_timers = true);

  // Parking, and the watcher (see ARCHITECTURE.md, "single-lock: I/O behind a busy holder").
  void park(thread_state& t);
  bool start_watching(thread_state& t);
  bool watch(thread_state& t);
  clock::duration watch_period() const noexcept;  // how often the watcher looks
  void recruit_watcher() noexcept;
  static void blocking_release();
  static void blocking_reacquire();

  const unsigned worker_count_;
  const unsigned ring_entries_;
  const gil_policy policy_;
  const std::chrono::nanoseconds switch_interval_;
  const unsigned ticks_;
  std::vector<std::unique_ptr<thread_state>> threads_;

  // The global lock (CPython's ceval_gil.c, rebuilt on std::mutex/condition_variable).
  mutable std::mutex gil_mutex_;
  std::condition_variable gil_released_;  // a waiter may take it
  std::condition_variable gil_switched_;  // FORCE_SWITCHING: someone else took it
  bool gil_locked_ = false;
  const thread_state* gil_holder_ = nullptr;
  const thread_state* gil_last_holder_ = nullptr;
  std::uint64_t gil_switch_number_ = 0;
  // What check() reads: raised by a thread waiting for the lock (waiter_request_) or by the
  // watcher for a holder it saw stuck in one task (that thread's poll_wanted).
  std::atomic<bool> drop_request_{false};
  bool waiter_request_ = false;  // a thread waiting for the lock asked for it (drop, forced)
  std::atomic<std::uint64_t> gil_epoch_{0};  // acquisitions (written under gil_mutex_)
  std::atomic<bool> gil_held_{false};        // gil_locked_, for the watcher's Dekker check
  single_lock_stats gil_stats_;              // guarded by gil_mutex_

  // The shared run queue (private types, hence the pointers).
  std::mutex queue_mutex_;
  const std::unique_ptr<run_queue> ready_;
  std::atomic<std::size_t> ready_size_{0};
  const std::unique_ptr<seeded_order> order_;  // guarded by queue_mutex_
  const bool paused_on_;
  detail::paused_clock paused_{};  // the run's time when paused_on_ (its one thread only)

  // Parking: the sleepers list and the watch period (sched/park.hpp).
  struct park_state;
  std::unique_ptr<park_state> park_;
  std::atomic<int> waking_{0};  // threads woken for work that have not looked at the queue yet
  // The parked thread that bounds its wait by the switch interval, to notice a holder stuck in
  // one task (changed under the parking lock; see ARCHITECTURE.md, "single-lock").
  std::atomic<thread_state*> watcher_{nullptr};

  std::atomic<std::uint64_t> tasks_run_{0};
};

}  // namespace weft::sched
