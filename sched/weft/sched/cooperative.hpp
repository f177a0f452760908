// weft: the cooperative executor: one thread, one io_uring ring, a FIFO run queue.
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <weft/executor.hpp>
#include <weft/io/reactor.hpp>
#include <weft/spawn.hpp>
#include <weft/task.hpp>
#include <weft/trace.hpp>

namespace weft::sched {

class run_queue;     // sched/run_queue.hpp (private)
class seeded_order;  // sched/seeded_order.hpp (private)

/// Settings of the cooperative executor.
struct cooperative_options {
  unsigned ring_entries = 256;  ///< submission queue size (the completion queue is 4x)
  /// When set, the next task to run is picked from the first few ready ones by a generator
  /// seeded with it, instead of the oldest one: a reproducible perturbed order for tests
  /// (run_options::seed).
  std::optional<std::uint64_t> seed{};
  /// Pauses weft's clock (`weft::now()`) for the runs of this executor: it jumps to the next
  /// timer when no task is ready and no I/O is in flight (run_options::paused_clock).
  bool paused_clock = false;
};

/// asyncio's model: every task runs on the thread that calls `block_on`, one at a time, in FIFO
/// order; a task runs until it suspends (I/O, sleep, yield, join). A task that never suspends
/// starves the others, by design: this executor shows concurrency without parallelism.
///
/// Each loop turn runs the tasks that were ready when the turn began, then makes at most one
/// io_uring_enter: it submits the turn's SQEs and, when nothing is ready, waits for a completion
/// or the earliest timer deadline.
///
/// Thread-safety: `schedule` and `spawn_on(*this, ...)` may be called from any thread (other
/// threads' handles go through a locked queue and an eventfd wake-up); everything else belongs to
/// the loop's thread. Tasks never move to another executor: wake-ups are scheduled on the
/// executor the task waited on, and a joiner on another executor is scheduled back on its own.
class cooperative final : public executor {
 public:
  /// Creates the ring. Throws std::system_error naming the cause if io_uring is unavailable.
  explicit cooperative(cooperative_options options = {});
  cooperative(const cooperative&) = delete;
  cooperative& operator=(const cooperative&) = delete;
  ~cooperative() override;

  /// Runs `main` to completion on the calling thread and returns its value (or rethrows).
  /// When `main` ends, tasks still running are cancelled and the loop runs until they have
  /// finished, so no task frame is leaked, or until the shutdown timeout has passed (then
  /// `abandoned()`). Not re-entrant: one block_on at a time.
  template <class T>
  T block_on(task<T> main) {
    loop_guard guard(*this);
    join_handle<T> handle = spawn_on(*this, std::move(main));
    run_until([](void* h) { return static_cast<join_handle<T>*>(h)->is_finished(); }, &handle);
    shutdown();
    return handle.take_finished_result();
  }

  void schedule(std::coroutine_handle<> h) noexcept override;
  void defer(std::coroutine_handle<> h) noexcept override;
  void add_timer(detail::timer_node& node) override { reactor_.add_timer(node); }
  void cancel_timer(detail::timer_node& node) noexcept override { reactor_.cancel_timer(node); }
  void task_started(detail::spawn_link& link) noexcept override {
    if (executor::current() == this) [[likely]] {
      link_started(link);
    } else {
      task_started_remote(link);
    }
  }
  void task_finished(detail::spawn_link& link) noexcept override {
    link.prev->next = link.next;
    link.next->prev = link.prev;
    link.prev = link.next = nullptr;
    live_count_.store(live_count_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }

  /// The threads it runs on: one.
  unsigned workers() const noexcept { return 1; }

  /// Tasks spawned on this executor that have not finished yet.
  std::size_t live_tasks() const noexcept { return live_count_.load(std::memory_order_relaxed); }

  /// How long the shutdown waits for cancelled tasks before it gives up on them (see
  /// `run_options::shutdown_timeout`); max (the default here) waits for ever. Not while
  /// `block_on` runs.
  void set_shutdown_timeout(std::chrono::nanoseconds timeout) noexcept {
    shutdown_timeout_ = timeout;
  }
  /// True when the last `block_on` gave up on tasks that ignored cancellation: the executor
  /// (its ring and those tasks' frames) must then never be destroyed (`weft::run` keeps it for
  /// ever). Read after `block_on`.
  bool abandoned() const noexcept { return abandoned_; }
  /// The task dump of the tasks that were still alive when the shutdown gave up.
  const std::string& stuck_tasks() const noexcept { return stuck_tasks_; }

  /// On the loop's thread only (elsewhere false: the list belongs to that thread).
  bool visit_tasks(void (*fn)(detail::spawn_link&, void*), void* context) noexcept override;
  /// Any thread.
  void collect_metrics(runtime_metrics& m) const noexcept override;
  /// The io_uring reactor that this executor's loop polls (its I/O and timers). Like the
  /// reactor itself, only for the loop's thread (except `wake()` and `cancel()`).
  io::reactor& reactor() noexcept { return reactor_; }

 private:
  struct loop_guard {
    explicit loop_guard(cooperative& c);
    ~loop_guard();
    executor* previous_executor;
    io::reactor* previous_reactor;
    detail::trace_thread_scope trace;
    detail::paused_clock* previous_clock;
    detail::deferred_stops* previous_deferred;
  };

  /// How many tasks run between two looks at the ring and the timers (Tokio's event_interval):
  /// I/O is never starved by a long queue, and a busy queue does not pay a poll per task.
  static constexpr std::size_t event_interval = 61;

  /// Loop turns until `done(context)`; it is checked after the ready tasks ran, before the
  /// reactor may block, so the loop never sleeps once the awaited task has finished.
  void run_until(bool (*done)(void*), void* context);
  void run_ready();
  void run_ready_seeded(detail::trampoline_scope& trampoline);
  void shutdown();
  void give_up_shutdown() noexcept;
  void drain_remote() noexcept;
  [[gnu::noinline]] void schedule_slow(std::coroutine_handle<> h) noexcept;
  static void stop(detail::spawn_link& link) noexcept;
  void link_started(detail::spawn_link& link) noexcept {
    link.next = &live_;
    link.prev = live_.prev;
    live_.prev->next = &link;
    live_.prev = &link;
    live_count_.store(live_count_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    spawned_.store(spawned_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (shutting_down_) [[unlikely]]
      stop(link);  // spawned by a task that is being cancelled
  }
  [[gnu::noinline]] void task_started_remote(detail::spawn_link& link) noexcept;
  bool remote_pending();

  // Behind pointers so that they stay private headers; the hot paths that use them (schedule,
  // run_ready) are out of line, as virtual calls they were anyway.
  const std::unique_ptr<run_queue> ready_;
  io::reactor reactor_;
  const std::unique_ptr<seeded_order> order_;
  const bool paused_on_;
  detail::paused_clock paused_{};  // the run's time when paused_on_ (the loop's thread only)

  std::mutex remote_mutex_;
  std::vector<std::coroutine_handle<>> remote_;
  std::vector<detail::spawn_link*> remote_started_;
  bool remote_wake_pending_ = false;  // guarded by remote_mutex_

  detail::deferred_stops deferred_{
      static_cast<executor*>(this)};  // joins' stop waiters not registered yet
  detail::spawn_link live_;           // sentinel of the circular list of live spawned tasks
  // Written by the loop's thread only; atomic so that metrics may be read from any thread.
  std::atomic<std::size_t> live_count_{0};
  std::atomic<std::uint64_t> spawned_{0};
  std::atomic<std::uint64_t> tasks_run_{0};
  bool shutting_down_ = false;
  // The shutdown timeout: the loop's blocking polls end by poll_limit_ (max but during a
  // shutdown that has a timeout).
  std::chrono::nanoseconds shutdown_timeout_ = std::chrono::nanoseconds::max();
  clock::time_point poll_limit_ = clock::time_point::max();
  bool abandoned_ = false;
  std::string stuck_tasks_;
};

}  // namespace weft::sched
