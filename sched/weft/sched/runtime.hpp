// weft: the running runtime seen from anywhere: live metrics, a handle for foreign threads,
// and the state behind tracing and the spawn/exit hooks of one `weft::run`.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <weft/errc.hpp>
#include <weft/executor.hpp>
#include <weft/sched/multi_thread.hpp>
#include <weft/sched/single_lock.hpp>
#include <weft/spawn.hpp>
#include <weft/task.hpp>
#include <weft/this_task.hpp>
#include <weft/trace.hpp>

namespace weft {

enum class mode;  // run.hpp

/// Counters of one executor thread (zero where the mode has no such thing).
struct worker_metrics {
  std::uint64_t tasks_run = 0;          ///< task resumptions on this thread
  std::uint64_t polls = 0;              ///< io_uring_enter calls of its ring
  std::uint64_t steals = 0;             ///< multi-thread: successful steals by this worker
  std::uint64_t parks = 0;              ///< times it slept in its ring
  std::uint64_t lock_acquisitions = 0;  ///< single-lock: times it took the global lock
  std::uint64_t handovers = 0;          ///< single-lock: lock hand-overs it made at a check point
  std::uint64_t submissions = 0;        ///< operations submitted to its ring
  std::uint64_t completions = 0;        ///< completions reaped from its ring
  std::uint64_t timers_fired = 0;       ///< timers that expired on it
};

/// A snapshot of a running runtime's counters (see `runtime_handle::metrics`). Each counter is
/// read on its own while the threads run, so two counters may be a few events apart.
struct runtime_metrics {
  weft::mode mode{};                         ///< the executor's mode
  unsigned workers = 0;                      ///< its threads
  std::uint64_t tasks_spawned = 0;           ///< tasks spawned since the run began
  std::uint64_t tasks_alive = 0;             ///< spawned and not finished
  std::uint64_t tasks_finished = 0;          ///< spawned and finished
  std::vector<worker_metrics> per_worker;    ///< one entry per executor thread
  sched::single_lock_stats single_lock{};    ///< single-lock: the lock's counters
  sched::multi_thread_stats multi_thread{};  ///< multi-thread: the scheduler's counters
};

namespace detail {

/// What one `weft::run` keeps beside its executor: the trace, the hooks, and the link that
/// runtime handles follow. Shared by the handles, so a handle that outlives the run is safe
/// (it then says the runtime is gone).
class runtime_state final : public task_observer {
 public:
  /// The hooks and trace settings; see run_options.
  struct settings {
    std::string trace_path;  ///< empty: no trace
    std::size_t trace_events = default_trace_events;
    std::function<void(const task_info&)> on_spawn;
    std::function<void(const task_info&)> on_exit;
  };

  explicit runtime_state(settings s) : settings_(std::move(s)) {}

  /// Binds to `ex` for the run: starts the trace (`threads` buffers named "<label> <i>") and
  /// installs the observer if anything wants it. Throws std::bad_alloc.
  void attach(executor& ex, weft::mode m, std::string_view mode_name, unsigned threads,
              std::string_view label);
  /// The main task ended: handles stop spawning.
  void main_ended() noexcept;
  /// The executor stopped (every thread joined): writes the trace and unbinds. Never throws.
  void detach() noexcept;
  /// The executor's shutdown gave up on stuck tasks, which may still run and tell the
  /// observer: unbinds handles only (the observer stays, the trace is not written, and the
  /// state is kept alive for ever with the executor). Never throws.
  void abandon() noexcept;

  /// The trace being recorded, if any.
  trace_session* trace() noexcept override { return trace_.get(); }

  /// See runtime_handle.
  runtime_metrics metrics() const;
  std::string dump() const;
  template <class T>
  join_handle<T> spawn(task<T> t, const task_options& options) {
    std::lock_guard lock(mutex_);
    if (executor_ == nullptr || !accepting_) {
      throw_error(errc::no_runtime, "weft::runtime_handle::spawn: the runtime has ended");
    }
    return spawn_on(*executor_, std::move(t), options);
  }

  void task_spawned(promise_base& task) noexcept override;
  void task_ended(promise_base& task) noexcept override;

 private:
  settings settings_;
  std::unique_ptr<trace_session> trace_;
  mutable std::mutex mutex_;
  executor* executor_ = nullptr;  // guarded by mutex_; null before and after the run
  bool accepting_ = false;        // guarded by mutex_: main has not ended
  weft::mode mode_{};
  unsigned threads_ = 0;
};

/// The settings run() uses: `trace_path`, unless WEFT_TRACE is set (the environment wins, so a
/// program's trace can be asked for without changing it); WEFT_TRACE_EVENTS likewise.
runtime_state::settings trace_settings_from_env(runtime_state::settings s);

}  // namespace detail

/// The running runtime, from anywhere: its live metrics, its task dump, and `spawn` from a
/// thread that runs no executor. Get one inside a task with `runtime_handle::current()` and
/// hand it to other threads (it is a shared pointer: copies are cheap and thread-safe).
/// Once the run's main task has ended, `spawn` throws `errc::no_runtime`; once `run` has
/// returned, so do `metrics` and `dump`.
class runtime_handle {
 public:
  /// An empty handle (`valid()` is false).
  runtime_handle() = default;

  /// The runtime of the calling thread (inside `weft::run`, on any of its threads); an empty
  /// handle elsewhere (also inside an executor used without `run`).
  static runtime_handle current();

  /// True when the handle refers to a runtime (which may have ended since).
  bool valid() const noexcept { return static_cast<bool>(state_); }

  /// The runtime's counters now. Any thread. Throws `errc::no_runtime` when empty or when the
  /// run is over.
  runtime_metrics metrics() const;

  /// The task dump (see weft::task_dump) of the runtime. Any thread for the threaded modes;
  /// the cooperative executor lists its tasks from its own thread only. Throws
  /// `errc::no_runtime` when empty or when the run is over, std::bad_alloc.
  std::string dump() const;

  /// Spawns `t` on the runtime from any thread (a foreign thread, or one of the runtime's), as
  /// `spawn_on` does. Throws `errc::no_runtime` when empty or once the main task has ended.
  template <class T>
  join_handle<T> spawn(task<T> t, const task_options& options = {}) const {
    if (!state_) throw_error(errc::no_runtime, "weft::runtime_handle::spawn on an empty handle");
    return state_->spawn(std::move(t), options);
  }

  /// @cond
  explicit runtime_handle(std::shared_ptr<detail::runtime_state> s) noexcept
      : state_(std::move(s)) {}
  /// @endcond

 private:
  std::shared_ptr<detail::runtime_state> state_;
};

/// Spawns `t` on the runtime `rt` refers to, from any thread; see runtime_handle::spawn.
template <class T>
join_handle<T> spawn_on(const runtime_handle& rt, task<T> t, const task_options& options = {}) {
  return rt.spawn(std::move(t), options);
}

namespace detail {

/// Registers the runtime of the executor running on this thread (for runtime_handle::current):
/// run() keeps it while the executor runs. Thread-safe.
void register_runtime(executor& ex, std::shared_ptr<runtime_state> state);
void unregister_runtime(executor& ex) noexcept;

/// The main task of a run(), wrapped: named "main", and handles stop spawning when it ends.
template <class T>
task<T> run_main(runtime_state& state, task<T> main) {
  struct on_end {
    runtime_state& s;
    ~on_end() { s.main_ended(); }
  } end{state};
  if (promise_base* self = tls_current_task; self != nullptr && self->name().empty()) {
    self->set_name("main");
    if (trace_session* trace = state.trace()) trace->note_name(self->id(), self->name());
  }
  if constexpr (std::is_void_v<T>) {
    co_await std::move(main);
  } else {
    co_return co_await std::move(main);
  }
}

}  // namespace detail

}  // namespace weft
