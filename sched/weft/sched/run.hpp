// weft: choosing an executor mode and running a program's main task on it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <weft/errc.hpp>
#include <weft/sched/cooperative.hpp>
#include <weft/task.hpp>

namespace weft {

/// The ways to run one program (see ARCHITECTURE.md for what each promises).
enum class mode {
  cooperative,   ///< one thread, one ring (asyncio)
  single_lock,   ///< N threads sharing one global lock (CPython's GIL)
  multi_thread,  ///< N work-stealing worker threads (Tokio)
  processes,     ///< N worker processes (multiprocessing)
};

/// How `run` builds its executor.
struct run_options {
  weft::mode mode = mode::cooperative;
  unsigned workers = 0;  ///< threads for the threaded modes; 0: one per CPU
};

/// The spelling used on command lines: "cooperative", "single-lock", "multi-thread",
/// "processes".
std::string_view to_string(mode m) noexcept;

/// Parses a mode name; nullopt when it names no mode. Never throws.
std::optional<mode> parse_mode(std::string_view name) noexcept;

/// True when this build can run `m` (the threaded modes and processes arrive with their issues).
bool mode_available(mode m) noexcept;

/// The usage text of the options mode_from_args understands.
std::string mode_usage(std::string_view program);

/// Reads `--mode=M` and `--workers=N` (also as two words) from a program's arguments.
/// `--help` prints the usage and exits 0. Anything else, an unknown mode, a mode this build does
/// not have yet, or a bad worker count prints one error line and the usage on stderr and exits
/// with status 2: it is meant for a `main` whose only options are these.
/// Programs with options of their own parse them (CLI11 in the examples) and use parse_mode.
run_options mode_from_args(int argc, char** argv);

/// Throws `std::system_error` with `errc::mode_unavailable` unless this build runs `m`.
void require_mode(mode m);

/// Builds the executor `options` asks for, runs `main` to completion on it, and returns its
/// value (or rethrows its exception). Throws `errc::mode_unavailable` for a mode this build does
/// not have, and `std::system_error` naming the cause when io_uring cannot be set up.
/// Called from inside a task it runs a separate, nested executor that blocks the outer one
/// until it returns (asyncio forbids that; weft allows it but it is rarely what you want).
template <class T>
T run(run_options options, task<T> main) {
  require_mode(options.mode);
  sched::cooperative executor;
  return executor.block_on(std::move(main));
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
