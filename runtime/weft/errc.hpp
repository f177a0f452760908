// weft: error codes of the runtime.
#pragma once

#include <string>
#include <system_error>
#include <type_traits>

namespace weft {

/// Errors the runtime itself reports. They live in their own category ("weft") so that a caller
/// can tell a cancelled wait from an operating-system error with `ec == weft::errc::cancelled`.
enum class errc : int {
  cancelled = 1,     ///< the task's stop token was triggered while it waited
  timed_out,         ///< `with_timeout` ran out of time before the task finished
  mode_unavailable,  ///< the requested executor mode is not part of this build yet
  no_runtime,        ///< an operation that needs a running executor was called outside one
  already_joined,    ///< a `join_handle` was awaited a second time
  end_of_stream,     ///< a stream or file ended before the bytes an exact read asked for
  channel_closed,    ///< a send on a closed channel, or a oneshot closed without a value
  worker_died,       ///< a process pool worker exited or was killed while it ran the job
  job_failed,        ///< a process pool job threw an exception in its worker
  pool_closed,       ///< a job submitted to a process pool that is shut down
  fork_unsafe,       ///< start method fork asked for after a runtime thread or ring exists
};

/// The category of `weft::errc`. Thread-safe: a function-local static.
const std::error_category& weft_category() noexcept;

/// Makes a `std::error_code` from a `weft::errc` (found by ADL).
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), weft_category()};
}

/// Throws `std::system_error` carrying `e` (used by awaitables that report by exception).
[[noreturn]] void throw_error(errc e);

/// Throws `std::system_error` carrying `e`, with `what` naming the context.
[[noreturn]] void throw_error(errc e, const std::string& what);

}  // namespace weft

/// @cond
// The standard trait that lets errc convert to std::error_code: no API of weft's own (and
// Doxygen, which does not see namespace std, cannot place it).
template <>
struct std::is_error_code_enum<weft::errc> : std::true_type {};
/// @endcond
