// weft: the running task's identity, and the task dump ("where is my task stuck?").
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include <weft/executor.hpp>
#include <weft/task.hpp>

namespace weft {

/// What the running task can learn about itself.
namespace this_task {

/// The id of the spawned task whose code runs now (also inside the tasks it awaits), or 0
/// outside any task. Ids are unique in the process and never reused. Never throws.
inline std::uint64_t id() noexcept {
  const detail::promise_base* t = detail::tls_current_task;
  return t != nullptr ? t->id() : 0;
}

/// The name the running task was spawned with (`task_options::name`); empty when it has none
/// or outside any task. Valid while the task runs. Never throws.
inline std::string_view name() noexcept {
  const detail::promise_base* t = detail::tls_current_task;
  return t != nullptr ? t->name() : std::string_view();
}

}  // namespace this_task

/// The live tasks of executor `ex`, one line each:
///
///     task 12 "conn 3" waiting on recv fd 7 (socket:[81234]) for 2.503s
///     task 4 "ticker" waiting on sleep until +0.480s for 0.520s
///     task 1 "main" waiting on join task 12 for 3.001s
///     task 9 "" queued
///     task 2 "" running
///
/// Every line begins `task <id>`, then the name in quotes, then the state: `running` (its code
/// runs on some thread now), `queued` (spawned and not started, or yielded), `waiting on
/// <what>` with the wait's detail (an I/O operation and its fd, a deadline, a task, a
/// primitive) and `for <seconds>` since the wait began (measured from the loop turn it began in:
/// a few ms of resolution, and a task that holds its thread for long makes it look older).
/// A task woken but not yet resumed still shows its wait. The threaded executors list their
/// tasks from any thread; the cooperative one from its own thread only (elsewhere the text
/// says so). Throws std::bad_alloc.
std::string task_dump(executor& ex);

/// task_dump() of the calling thread's executor (inside `weft::run`); outside any runtime,
/// a line saying so. Throws std::bad_alloc.
std::string task_dump();

/// Writes task_dump() to `out` (stderr by default) with one write; meant for signal watchers
/// (the example servers on SIGUSR1) and for a shutdown that names stuck tasks. Never throws:
/// out of memory, it writes a line saying so.
void dump_tasks(std::FILE* out = stderr) noexcept;

}  // namespace weft
