// What the cooperative and the threaded executors share of a bounded shutdown
// (run_options::shutdown_timeout). Private: not installed.
#pragma once

#include <algorithm>
#include <chrono>
#include <string>

#include <weft/executor.hpp>
#include <weft/this_task.hpp>
#include <weft/time.hpp>

namespace weft::sched::shutdown_limit {

/// When a shutdown starting now gives up: now + `timeout`, a negative timeout counting as 0,
/// and max (never) where the sum would overflow, as it does for nanoseconds::max().
inline clock::time_point deadline_after(std::chrono::nanoseconds timeout) noexcept {
  const clock::time_point now = clock::now();
  if (timeout >= clock::time_point::max() - now) return clock::time_point::max();
  return now + std::max(timeout, std::chrono::nanoseconds(0));
}

/// The task dump of `ex`'s live tasks, named in the shutdown_timeout_error; a line saying so
/// when the dump itself runs out of memory. The executor's thread, during its shutdown.
inline std::string stuck_tasks(executor& ex) noexcept {
  try {
    return task_dump(ex);
  } catch (...) {
    return "weft: out of memory while listing the stuck tasks\n";
  }
}

}  // namespace weft::sched::shutdown_limit
