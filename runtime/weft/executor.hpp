// weft: the interface every executor implements, and the thread's current executor.
#pragma once

#include <coroutine>

#include <weft/cancel.hpp>
#include <weft/detail/timer_heap.hpp>

namespace weft {

class executor;
struct runtime_metrics;

namespace detail {

class promise_base;
class trace_session;

/// Told when a task is spawned and when it ends: the runtime's tracing and its hooks. An
/// executor has one only while something asked for it (see `executor::observer`), so a
/// program that traces nothing pays a null check per spawn and per end.
class task_observer {
 public:
  /// `task` was just spawned (its id and name are set). On the spawning thread.
  virtual void task_spawned(promise_base& task) noexcept = 0;
  /// `task` has finished; its frame is still alive. On the thread it finished on.
  virtual void task_ended(promise_base& task) noexcept = 0;
  /// The trace the executor's threads record into, if any (see trace.hpp).
  virtual trace_session* trace() noexcept { return nullptr; }

 protected:
  ~task_observer() = default;
};

/// Links a spawned task into its executor's list of live tasks, so that shutdown can cancel
/// and drain the tasks that nobody joined. It is a base of the task's promise.
struct spawn_link {
  spawn_link* prev = nullptr;
  spawn_link* next = nullptr;
};

/// The cancel scope that the task behind `link` observes (defined in task.hpp).
cancel_scope* scope_of_link(spawn_link& link) noexcept;

}  // namespace detail

/// An executor runs coroutines. `schedule` queues a suspended coroutine to be resumed by it.
/// Timers belong to the thread that runs the executor loop; the spawn registry lets the executor
/// cancel and drain detached tasks when the program's main task ends.
class executor {
 public:
  virtual ~executor() = default;

  /// Queues `h` to be resumed on this executor. Thread-safe: callable from any thread, including
  /// threads that run no executor. `h` must be suspended and owned by nobody else.
  virtual void schedule(std::coroutine_handle<> h) noexcept = 0;

  /// Queues `h` behind every task that is ready now (what `yield_now` does). Executors that run
  /// a woken task next (the multi-thread executor's LIFO slot) must not do that for a yield.
  /// Same contract as `schedule`; by default it is `schedule`.
  virtual void defer(std::coroutine_handle<> h) noexcept { schedule(h); }

  /// Queues a task that was just spawned. The multi-thread executor puts it where an idle
  /// worker can steal it at once, instead of in the LIFO slot meant for wake-ups. Same contract
  /// as `schedule`; by default it is `schedule`.
  virtual void start(std::coroutine_handle<> h) noexcept { schedule(h); }

  /// Arms `node`: its `on_expire` runs on the calling thread's loop once its deadline has
  /// passed. Only on a thread that runs this executor. Throws std::bad_alloc.
  virtual void add_timer(detail::timer_node& node) = 0;

  /// Disarms `node` if it is still armed. On the cooperative executor only on its thread; on
  /// the threaded executors on any of their threads (a task may resume on another worker than
  /// the one whose heap holds its timer).
  virtual void cancel_timer(detail::timer_node& node) noexcept = 0;

  /// Registers a spawned task, so that the executor knows it is live (called by spawn).
  virtual void task_started(detail::spawn_link& link) noexcept = 0;
  /// Unregisters a spawned task (called by the task's completion, on the thread of the executor
  /// it runs on).
  virtual void task_finished(detail::spawn_link& link) noexcept = 0;

  /// Calls `fn(link, context)` for every live spawned task, where that is safe: the threaded
  /// executors from any thread (under the lock of the task's shard, so `fn` must be short and
  /// must not spawn), the cooperative one on its own thread only (elsewhere it does nothing
  /// and returns false). The default visits nothing.
  virtual bool visit_tasks(void (*fn)(detail::spawn_link& link, void* context),
                           void* context) noexcept {
    (void)fn;
    (void)context;
    return false;
  }

  /// Adds this executor's counters to `m` (weft::runtime_metrics). Any thread, while the
  /// executor runs or after; the default adds nothing.
  virtual void collect_metrics(runtime_metrics& m) const noexcept { (void)m; }

  /// Who is told about spawns and ends (null: nobody). Set by `weft::run` before the executor
  /// runs and cleared after; read on every spawn and task end.
  detail::task_observer* observer() const noexcept { return observer_; }
  /// See observer(). Not while the executor runs.
  void set_observer(detail::task_observer* o) noexcept { observer_ = o; }
  /// The trace this executor's threads record into (null: none). Read when a thread starts.
  detail::trace_session* trace_session() const noexcept {
    return observer_ != nullptr ? observer_->trace() : nullptr;
  }

  /// The executor running on the calling thread, or null outside any runtime.
  static executor* current() noexcept { return current_; }

 protected:
  /// Marks the calling thread as running `e` (null to clear). Used by executor loops.
  static void set_current(executor* e) noexcept { current_ = e; }

 private:
  static inline thread_local executor* current_ = nullptr;
  detail::task_observer* observer_ = nullptr;
};

}  // namespace weft
