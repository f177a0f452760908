// weft: task identity (ids and names) and the record of what a suspended task waits on.
#pragma once

#include <cstdint>
#include <string_view>

/// 1 (the default): the trace recorder is built in, and its hooks test a thread-local pointer
/// when off. 0 (meson -Dtracing=false): the hooks are compiled out, and WEFT_TRACE is ignored.
#ifndef WEFT_TRACING
#define WEFT_TRACING 1
#endif

namespace weft {

/// How `spawn` starts a task (see `weft::spawn(task, task_options)`).
struct task_options {
  /// The task's name, copied at spawn: shown by `this_task::name()`, the task dump, the trace
  /// and the spawn/exit hooks. Empty: no name (costs nothing).
  std::string_view name{};
};

/// What the spawn and exit hooks of `run_options` are told about a task.
struct task_info {
  std::uint64_t id = 0;     ///< the task's id (unique in the process, never 0)
  std::string_view name{};  ///< its name; empty when it was spawned without one
};

namespace detail {

class promise_base;

/// What kind of value `promise_base::wait_arg` holds, for the task dump.
enum class wait_arg : std::uint8_t {
  none,      ///< nothing
  fd,        ///< a file descriptor (I/O)
  deadline,  ///< a steady-clock deadline in nanoseconds (sleep)
  task,      ///< another task's id (join)
  queued,    ///< not a wait: the task is in a run queue (spawned, yielded)
};

/// The spawned task whose code runs on this thread now (null between tasks and outside weft
/// tasks). Kept by the task promise: set when a task resumes, cleared when it ends.
inline thread_local promise_base* tls_current_task = nullptr;

/// The id of the task that last suspended or ended on this thread: the trace's `run` span that
/// just ended belongs to it (see trace.hpp).
inline thread_local std::uint64_t tls_last_task_id = 0;

/// The task `id` no longer runs on this thread (it suspended or ended): the trace's `run`
/// span that ends now belongs to it.
inline void left_thread(std::uint64_t id) noexcept {
  tls_current_task = nullptr;
  if constexpr (WEFT_TRACING != 0) tls_last_task_id = id;
}

/// The first task to run in the trace's current `run` span: 0 while a traced resumption waits
/// for its first task, ~0 otherwise (so the check in promise_base::resumed never fires when
/// nothing traces). A resumption can run several tasks in a row (a task that ends continues
/// its joiner); the span is the first one's.
inline thread_local std::uint64_t tls_span_task = ~std::uint64_t{0};

/// A fresh block of task ids (the per-thread cache below is empty). Thread-safe.
std::uint64_t refill_task_ids() noexcept;

/// The next id of this thread's block: ids come from one process-wide counter in blocks of
/// 1024, so spawning tasks on several threads does not share a cache line per spawn.
inline thread_local std::uint64_t tls_next_id = 0;
inline thread_local std::uint64_t tls_id_end = 0;

inline std::uint64_t next_task_id() noexcept {
  if (tls_next_id == tls_id_end) [[unlikely]]
    return refill_task_ids();
  return tls_next_id++;
}

/// The name table: a named task's name, by id (names live here, not in every frame).
/// Thread-safe. `set_task_name` throws std::bad_alloc; `task_name` gives a view that stays
/// valid until `erase_task_name(id)`, empty for an id without a name.
void set_task_name(std::uint64_t id, std::string_view name);
std::string_view task_name(std::uint64_t id) noexcept;
void erase_task_name(std::uint64_t id) noexcept;

/// coarse_now_ns() at this thread's last reactor poll: when a wait began, as the task dump
/// shows it, for the price of a thread-local load (a clock read per suspension cost more than
/// the rest of a task switch). Behind the true time by at most one loop turn.
inline thread_local std::int64_t tls_turn_now = 0;

/// CLOCK_MONOTONIC_COARSE in nanoseconds: when a wait began, at a few ns per read (a tick of
/// resolution, 1 to 4 ms, is plenty for "waiting for 3.2 s").
std::int64_t coarse_now_ns() noexcept;

/// The name of an io_uring opcode for the task dump ("recv", "accept", ...).
const char* io_op_name(unsigned opcode) noexcept;

/// The running task waits on `what` (a static string naming a primitive's wait, such as
/// "weft::mutex::lock"). Only where tls_current_task is set.
void describe_current_wait(const char* what) noexcept;

/// An io_uring operation is being submitted for the running task: notes it as the task's wait
/// (the dump) and as a trace event. Called by the reactor only when either is wanted.
void note_io_submit(unsigned opcode, int fd) noexcept;

/// `__PRETTY_FUNCTION__` of this function names `T`: what the dump shows for a wait whose
/// awaiter does not describe itself. Parsed when the dump is written.
template <class T>
const char* type_label() noexcept {
  return __PRETTY_FUNCTION__;
}

}  // namespace detail

}  // namespace weft
