// weft: the multi-thread executor: N worker threads with work stealing (Tokio's model).
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
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

class run_queue;  // sched/run_queue.hpp (private)

/// Settings of the multi-thread executor.
struct multi_thread_options {
  unsigned workers = 0;         ///< worker threads, the calling one included; 0: one per CPU
  unsigned ring_entries = 256;  ///< submission queue size of each worker's ring
};

/// Counters of a multi-thread executor (totals over its workers since it was built).
struct multi_thread_stats {
  std::uint64_t tasks_run = 0;     ///< task resumptions
  std::uint64_t lifo_runs = 0;     ///< of which straight from a LIFO slot
  std::uint64_t steals = 0;        ///< successful steals from another worker's queue
  std::uint64_t stolen = 0;        ///< tasks moved by those steals
  std::uint64_t injected = 0;      ///< tasks taken from the shared (inject) queue
  std::uint64_t inject_locks = 0;  ///< times a worker locked it to take them (one per batch)
  /// Times a full local queue moved half of itself to it (with one worker: times it began to
  /// spill into the worker's private overflow, which the inject queue never sees).
  std::uint64_t overflows = 0;
  std::uint64_t parks = 0;    ///< times a worker slept in its ring
  std::uint64_t wakeups = 0;  ///< times a worker woke another one up
  /// Times a parked worker saw another one run one task for a whole `stall_interval` and asked
  /// it to poll its ring at its next check()...
  std::uint64_t poll_requests = 0;
  /// ...and times a check() did that poll.
  std::uint64_t stall_polls = 0;
};

/// Tokio's model: N worker threads, each with its own io_uring ring, timer heap and local run
/// queue; tasks run in parallel and move between workers.
///
/// - A task woken by the task running on a worker goes to that worker's LIFO slot and runs
///   next (message passing stays on one core, caches stay warm); at most `lifo_limit` times in a
///   row, then the slot's task queues like the others.
/// - Spawned tasks, I/O and timer wake-ups go to the worker's local queue (FIFO, 256 slots;
///   half of it moves to the shared inject queue when it is full). Handles scheduled from a
///   thread that is not one of the workers go to the inject queue.
/// - A worker that runs out of tasks looks in the inject queue and then steals half of another
///   worker's queue, starting at a random victim. At most half of the workers search at once.
/// - A worker with nothing to do parks in its own ring: it keeps waiting for its I/O and its
///   timers, and another thread wakes it with its eventfd. The protocol that rules out lost
///   wake-ups is argued in ARCHITECTURE.md ("Parking").
/// - Budget: after `event_interval` tasks a worker polls its ring (without blocking) and looks
///   at the inject queue first, so always-ready tasks cannot starve I/O, timers or the tasks
///   spawned from outside.
///
/// A task's I/O is submitted to the ring of the worker it runs on, and completes there. A task
/// that never suspends occupies its worker (use `spawn_blocking` for blocking calls); the other
/// workers steal the rest of that worker's queue. If it calls `weft::check()`, the I/O that
/// completes on its worker's ring still gets served: a parked worker that sees it run one task
/// for a whole `stall_interval` asks it to poll its ring at its next check(), and the tasks
/// woken there (and the one in its LIFO slot) go to its stealable queue.
///
/// Thread-safety: `schedule`, `defer`, `start` and `spawn_on(*this, ...)` may be called from any
/// thread; `block_on` from one thread at a time. The executor outlives every task it runs.
class multi_thread final : public threaded_executor {
 public:
  /// Checks the options; rings are created by `block_on`. Throws std::invalid_argument for a
  /// worker count above 1024.
  explicit multi_thread(multi_thread_options options = {});
  ~multi_thread() override;

  void schedule(std::coroutine_handle<> h) noexcept override;
  void defer(std::coroutine_handle<> h) noexcept override;
  void start(std::coroutine_handle<> h) noexcept override;
  void add_timer(detail::timer_node& node) override;
  void cancel_timer(detail::timer_node& node) noexcept override;

  /// Number of worker threads (the calling thread of block_on included).
  unsigned workers() const noexcept { return worker_count_; }
  /// Totals of the workers' counters. Any thread; exact once block_on has returned.
  multi_thread_stats stats() const noexcept;
  /// Per-worker counters (weft::runtime_metrics). Any thread while block_on runs.
  void collect_metrics(runtime_metrics& m) const noexcept override;

  /// Tasks run between two looks at the ring and the inject queue.
  static constexpr std::uint32_t event_interval = 61;
  /// Tasks run in a row from a worker's LIFO slot before it yields to the queue.
  static constexpr std::uint32_t lifo_limit = 3;
  /// How long a task may run on a worker, while another worker is parked, before that worker is
  /// asked to poll its ring at its next check() (ARCHITECTURE.md, "multi-thread").
  static constexpr std::chrono::milliseconds stall_interval{5};
  /// How long a searching worker that found nothing keeps looking before it parks: about the
  /// cost of a park and a wake-up, which it saves when work arrives meanwhile.
  static constexpr std::chrono::microseconds spin_time{10};
  /// Tasks queued on a worker behind its running task from which a push wakes a parked worker
  /// at once (once per resumption); otherwise the worker notifies when the task gives it back.
  static constexpr std::uint32_t notify_backlog = 128;

 private:
  struct worker;

  void run_wrapped(task<void> wrapper) override;
  void run_workers();
  void worker_loop(worker& w);

  std::coroutine_handle<> next_task(worker& w) noexcept;
  std::coroutine_handle<> search(worker& w) noexcept;
  std::coroutine_handle<> spin_search(worker& w) noexcept;
  std::coroutine_handle<> pop_inject() noexcept;
  std::coroutine_handle<> pop_inject_batch(worker& w) noexcept;
  std::coroutine_handle<> refill_from_spill(worker& w) noexcept;
  /// The notify decision after a push another worker could take: with one worker there is
  /// nobody to wake, so not even the fence is paid.
  void notify() noexcept {
    if (worker_count_ > 1) notify_parked();
  }
  void notify_after_task(worker& w) noexcept;
  void push_local(worker& w, std::coroutine_handle<> h) noexcept;
  void push_inject_and_notify(std::coroutine_handle<> h) noexcept;
  void notify_parked() noexcept;
  bool transition_to_searching(worker& w) noexcept;
  void transition_from_searching(worker& w) noexcept;
  void park(worker& w);
  bool work_visible() const noexcept;
  void wake_main_thread() noexcept override;
  bool watch(worker& w) noexcept;
  void recruit_watcher_locked(worker& w) noexcept;
  void resign_watch(worker& w) noexcept;
  std::uint64_t others_task_seq(const worker& w) const noexcept;
  static void check_point();

  const unsigned worker_count_;
  const unsigned ring_entries_;
  std::vector<std::unique_ptr<worker>> workers_;

  // The inject queue: handles from outside the workers, and local-queue overflow.
  alignas(64) std::mutex inject_mutex_;
  const std::unique_ptr<run_queue> inject_;  // a private type, hence the pointer
  std::atomic<std::size_t> inject_size_{0};

  // Parking: the sleepers list and the stall watch (sched/park.hpp). The searching count is
  // read without a lock by the notifiers (see ARCHITECTURE.md, "Parking").
  struct park_state;
  alignas(64) std::atomic<int> searching_{0};
  std::unique_ptr<park_state> park_;

  std::coroutine_handle<> main_;
  multi_thread_stats finished_stats_;
};

}  // namespace weft::sched
