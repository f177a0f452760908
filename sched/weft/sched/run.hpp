// weft: choosing an executor mode and running a program's main task on it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <weft/errc.hpp>
#include <weft/sched/cooperative.hpp>
#include <weft/sched/multi_thread.hpp>
#include <weft/sched/runtime.hpp>
#include <weft/sched/single_lock.hpp>
#include <weft/task.hpp>

namespace weft {

/// The executors `run` can run a program's tasks on (see ARCHITECTURE.md for what each
/// promises). Worker processes (Python's multiprocessing) are not one of them: they run
/// registered functions, not tasks, in a `weft::pool::process_pool` that a task awaits.
enum class mode {
  cooperative,   ///< one thread, one ring (asyncio)
  single_lock,   ///< N threads sharing one global lock (CPython's GIL)
  multi_thread,  ///< N work-stealing worker threads (Tokio)
};

/// What an executor counted during one `run` (see `run_options::report`).
struct run_report {
  weft::mode mode = mode::cooperative;       ///< the mode the program ran in
  unsigned workers = 1;                      ///< threads the executor used
  sched::single_lock_stats single_lock{};    ///< the global lock (single-lock mode only)
  sched::multi_thread_stats multi_thread{};  ///< scheduling counters (multi-thread mode only)
};

/// How `run` builds its executor.
struct run_options {
  /// The executor `run` builds.
  weft::mode mode = mode::cooperative;
  unsigned workers = 0;  ///< threads for the threaded modes; 0: one per CPU
  /// single-lock: how long a thread waits for the lock before asking the holder to drop it
  /// (CPython's sys.setswitchinterval; 5 ms there too). Must be positive: `run` throws
  /// std::invalid_argument for 0 or less in single-lock mode.
  std::chrono::nanoseconds switch_interval = std::chrono::milliseconds(5);
  /// single-lock: the new GIL (interval, the default) or the old one (ticks).
  sched::gil_policy gil = sched::gil_policy::interval;
  unsigned gil_ticks = 100;  ///< single-lock with the ticks policy: check points per release
  /// When not null, filled in with the executor's counters when `run` returns (also when
  /// `main` threw).
  run_report* report = nullptr;
  /// When not empty, `run` records a trace of every executor thread and writes it to this
  /// file, as Chrome Trace Event JSON, when it returns (docs/seeing-inside.md). The
  /// environment variable WEFT_TRACE, when set, wins over this field.
  std::string trace_path{};
  /// The events each thread's trace buffer holds; the rest are counted as dropped and
  /// reported. WEFT_TRACE_EVENTS, when set, wins.
  std::size_t trace_events = detail::default_trace_events;
  /// Called on the spawning thread each time a task is spawned (the main task included), with
  /// its id and name. In the threaded modes it runs on any thread at once: make it thread-safe.
  /// It must not throw (the program terminates) nor spawn.
  std::function<void(const task_info&)> on_task_spawn{};
  /// Called on the thread a task finished on, each time a spawned task ends; the same rules.
  std::function<void(const task_info&)> on_task_exit{};
  /// How long `run` waits, once `main` has finished and the tasks still alive have been
  /// cancelled, for them to end. Past it, `run` gives up on the tasks that ignore
  /// cancellation (a `spawn_blocking` job already running, a task that never reaches a check
  /// point on another thread, one that catches `errc::cancelled` and waits again), names them
  /// on stderr and throws `weft::shutdown_timeout_error`; their executor is then kept for
  /// ever (docs/using-weft.md, "Shutdown"). 0: no wait at all; `nanoseconds::max()`: wait for
  /// ever (weft before 0.2). The default, 5 s, is far above a well-behaved shutdown.
  std::chrono::nanoseconds shutdown_timeout = std::chrono::seconds(5);
  /// Seeded scheduling, for tests: when set, the cooperative and single-lock executors run,
  /// instead of the oldest ready task, one picked among the first few by a generator seeded
  /// with it. On the cooperative executor the same seed gives the same order (a failing seed
  /// replays); on single-lock the threads still race. The multi-thread executor ignores it.
  /// When `main` throws in a seeded run, `run` prints the seed on stderr. The environment
  /// variable WEFT_SEED (a decimal number), when set, wins. Unset: plain FIFO, at no cost.
  std::optional<std::uint64_t> seed{};
  /// A paused clock, for tests (like Tokio's time::pause): `weft::now()`, which sleep,
  /// timeouts, deadlines and intervals measure, starts at the real time and then stands
  /// still; when no task is ready and no I/O operation is in flight, it jumps to the next
  /// timer at once. So `sleep_for(1h)` returns at once and `weft::now()` reads 1 h later.
  /// The cooperative executor, and single-lock with one thread (`workers = 1`): `run` throws
  /// std::invalid_argument otherwise (several threads would race the jumps). A task that
  /// waits on a `spawn_blocking` job does not hold time back (the job is not I/O).
  bool paused_clock = false;
};

/// What `run` throws when its shutdown timeout passed with tasks still alive (see
/// `run_options::shutdown_timeout`). `what()` says so and lists them; `stuck_tasks()` is
/// their task dump (one line per task: id, name, what it waits on). When `main` itself had
/// thrown, its exception is nested in this one (`std::rethrow_if_nested`); a value it
/// returned is dropped. The stuck tasks' executor, ring, threads and frames are never freed:
/// a blocking job or a thread still in a task may touch them at any time.
class shutdown_timeout_error : public std::runtime_error {
 public:
  /// An error whose `what()` is `what` and whose task dump is `stuck_tasks`.
  shutdown_timeout_error(const std::string& what, std::string stuck_tasks)
      : std::runtime_error(what),
        stuck_(std::make_shared<const std::string>(std::move(stuck_tasks))) {}
  /// The task dump of the tasks still alive when `run` gave up on them.
  const std::string& stuck_tasks() const noexcept { return *stuck_; }

 private:
  std::shared_ptr<const std::string> stuck_;  // shared: copying an exception must not throw
};

/// The spelling used on command lines: "cooperative", "single-lock", "multi-thread".
std::string_view to_string(mode m) noexcept;

/// Parses a mode name; nullopt when it names no mode. Never throws.
std::optional<mode> parse_mode(std::string_view name) noexcept;

/// True when `m` is one of the modes above (false only for a value cast from an integer that
/// names none).
bool mode_available(mode m) noexcept;

/// What to tell a user whose `--mode` value `parse_mode` refused: "unknown mode 'NAME'", or for
/// "processes" that worker processes run registered functions in a
/// `weft::pool::process_pool`, not a task. Throws std::bad_alloc only.
std::string unknown_mode_message(std::string_view name);

/// The usage text of the options mode_from_args understands.
std::string mode_usage(std::string_view program);

/// Parses a duration such as "5ms", "250us", "1s", "100ns" or "0.5ms" (a bare number means
/// milliseconds); nullopt when malformed or negative. Never throws.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) noexcept;

/// Parses a `--gil` value into `options`: "interval" (the new GIL) or "ticks:N" (the old GIL
/// releasing every N check points, N >= 1); false when malformed. Never throws.
bool parse_gil(std::string_view text, run_options& options) noexcept;

/// What `mode_from_args` throws instead of exiting: `what()` is the text to print (for a bad
/// argument "PROGRAM: what is wrong" and the usage; for `--help`, the usage) and
/// `exit_status()` the status a `main` should return (2, or 0 for `--help`).
class usage_error : public std::invalid_argument {
 public:
  /// An error whose text is `text` and whose exit status is `status`.
  usage_error(const std::string& text, int status) : std::invalid_argument(text), status_(status) {}
  /// 2 for a bad argument, 0 for `--help`.
  int exit_status() const noexcept { return status_; }

 private:
  int status_;
};

/// Reads `--mode=M`, `--workers=N`, `--switch-interval=D` and `--gil=interval|ticks:N` (also as
/// two words) from a program's arguments, for a `main` whose only options are these and that
/// does not use CLI11 (programs with options of their own use `weft::add_run_options` from
/// <weft/cli.hpp>, as every example does). Never exits: throws `weft::usage_error` for `--help`
/// (exit status 0) and for anything else it does not know, an unknown mode, a mode this build
/// does not have, or a bad worker count (exit status 2); print its `what()` (on stdout for
/// help, on stderr otherwise) and return its `exit_status()`.
run_options mode_from_args(int argc, char** argv);

/// Throws `std::system_error` with `errc::mode_unavailable` unless this build runs `m`.
void require_mode(mode m);

namespace detail {

/// Ties a runtime_state to an executor for one run: registers it (runtime_handle::current),
/// and when the executor has stopped writes the trace and unregisters.
struct runtime_binding {
  runtime_binding(std::shared_ptr<runtime_state> s, executor& ex, weft::mode m, unsigned threads,
                  std::string_view label)
      : state(std::move(s)), executor_(ex) {
    state->attach(ex, m, to_string(m), threads, label);
    register_runtime(ex, state);
  }
  runtime_binding(const runtime_binding&) = delete;
  runtime_binding& operator=(const runtime_binding&) = delete;
  ~runtime_binding() {
    unregister_runtime(executor_);
    if (abandoned) {
      state->abandon();
    } else {
      state->detach();
    }
    tls_current_task = outer_task;  // a run nested in a task: that task runs on
  }
  std::shared_ptr<runtime_state> state;
  executor& executor_;
  promise_base* outer_task = tls_current_task;
  bool abandoned = false;  // the executor's shutdown gave up: its threads may still run
};

/// Keeps an executor whose shutdown gave up (and its runtime state) for ever, reachable from a
/// static (leak checkers see it as in use, which it may be), prints the stuck tasks on stderr,
/// and throws `shutdown_timeout_error` (with `main_error` nested, when there is one).
[[noreturn]] void abandon_run(std::shared_ptr<void> executor, std::shared_ptr<runtime_state> state,
                              const std::string& stuck_tasks, std::chrono::nanoseconds timeout,
                              std::exception_ptr main_error);

/// `seed`, or the one WEFT_SEED gives when it is set (a malformed value is reported on stderr
/// and ignored).
std::optional<std::uint64_t> seed_from_env(std::optional<std::uint64_t> seed);

/// Tells stderr which seed a failed seeded run used, so that it can be replayed.
void report_seed(std::uint64_t seed) noexcept;

/// Runs `main` on `ex` (see `run`): binds the runtime, sets the shutdown timeout, fills the
/// report, and gives up on the executor as `abandon_run` says when its shutdown timed out.
template <class T, class Ex, class Report>
T run_on(std::unique_ptr<Ex> ex, std::shared_ptr<runtime_state> state, weft::mode m,
         std::string_view label, const run_options& options, Report report, task<T> main) {
  ex->set_shutdown_timeout(options.shutdown_timeout);
  outcome<T> result;
  {
    runtime_binding binding(state, *ex, m, ex->workers(), label);
    try {
      if constexpr (std::is_void_v<T>) {
        ex->block_on(run_main(*state, std::move(main)));
        result.set_value();
      } else {
        result.set_value(ex->block_on(run_main(*state, std::move(main))));
      }
    } catch (...) {
      result.set_error(std::current_exception());
    }
    binding.abandoned = ex->abandoned();
  }
  report(*ex);
  if (options.seed && (result.has_error() || ex->abandoned())) [[unlikely]]
    report_seed(*options.seed);
  if (ex->abandoned()) [[unlikely]] {
    const std::string stuck = ex->stuck_tasks();
    abandon_run(std::shared_ptr<void>(std::move(ex)), std::move(state), stuck,
                options.shutdown_timeout, result.has_error() ? result.error() : nullptr);
  }
  if constexpr (std::is_void_v<T>) {
    result.take();
  } else {
    return result.take();
  }
}

inline std::shared_ptr<runtime_state> make_runtime_state(run_options& options) {
  return std::make_shared<runtime_state>(trace_settings_from_env(
      runtime_state::settings{std::move(options.trace_path), options.trace_events,
                              std::move(options.on_task_spawn), std::move(options.on_task_exit)}));
}

}  // namespace detail

/// Builds the executor `options` asks for, runs `main` to completion on it, and returns its
/// value (or rethrows its exception). Throws `errc::mode_unavailable` for a mode this build does
/// not have, and `std::system_error` naming the cause when io_uring cannot be set up.
/// Called from inside a task it runs a separate, nested executor that blocks the outer one
/// until it returns (asyncio forbids that; weft allows it but it is rarely what you want).
/// Inside, `runtime_handle::current()` reaches the runtime from any of its threads.
template <class T>
T run(run_options options, task<T> main) {
  require_mode(options.mode);
  options.seed = detail::seed_from_env(options.seed);
  if (options.paused_clock && options.mode == mode::multi_thread) {
    throw std::invalid_argument(
        "weft: run_options::paused_clock needs the cooperative executor or single-lock with "
        "one thread (its time jumps when its only thread has nothing to do; other threads "
        "would race the jumps)");
  }
  auto state = detail::make_runtime_state(options);
  // On the heap: when the shutdown times out the executor must outlive this call.
  switch (options.mode) {
    case mode::single_lock: {
      auto ex = std::make_unique<sched::single_lock>(
          sched::single_lock_options{options.workers, 256, options.gil, options.switch_interval,
                                     options.gil_ticks, options.seed, options.paused_clock});
      return detail::run_on(
          std::move(ex), std::move(state), mode::single_lock, "single-lock", options,
          [r = options.report](sched::single_lock& e) {
            if (r != nullptr) *r = run_report{mode::single_lock, e.workers(), e.stats(), {}};
          },
          std::move(main));
    }
    case mode::multi_thread: {
      auto ex =
          std::make_unique<sched::multi_thread>(sched::multi_thread_options{options.workers, 256});
      return detail::run_on(
          std::move(ex), std::move(state), mode::multi_thread, "worker", options,
          [r = options.report](sched::multi_thread& e) {
            if (r != nullptr) *r = run_report{mode::multi_thread, e.workers(), {}, e.stats()};
          },
          std::move(main));
    }
    default: {
      if (options.report != nullptr) *options.report = run_report{};
      return detail::run_on(
          std::make_unique<sched::cooperative>(
              sched::cooperative_options{256, options.seed, options.paused_clock}),
          std::move(state), mode::cooperative, "cooperative", options, [](sched::cooperative&) {},
          std::move(main));
    }
  }
}

/// Runs `main` on the executor `m` with its default settings; see the overload above.
template <class T>
T run(mode m, task<T> main) {
  return run(run_options{m, 0}, std::move(main));
}

/// Runs `main` on the cooperative executor.
template <class T>
T run(task<T> main) {
  return run(run_options{}, std::move(main));
}

}  // namespace weft
