// weft (private to pool/): the worker process's side, as the pool and the fork server start it.
#pragma once

#include <string>

#include <weft/io/process.hpp>

namespace weft::pool::detail {

/// The environment variable that tells a spawned program it is a pool worker (its value: the
/// fd of its socket).
inline constexpr const char* worker_env = "WEFT_POOL_WORKER";

/// Serves jobs on `socket` until the pool closes it, then exits the process. Never returns and
/// never lets an exception out: unwinding into the caller would run the program's own main
/// (spawn) or the parent's stack (fork) in the worker.
[[noreturn]] void worker_loop(int socket) noexcept;

/// How a worker ended, in words, naming a missing `serve_if_pool_worker()` call.
std::string describe(const io::exit_status& s);

}  // namespace weft::pool::detail
