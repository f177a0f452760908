// weft: the umbrella header. Includes the whole public API.
#pragma once

#include <weft/blocking.hpp>
#include <weft/cancel.hpp>
#include <weft/channel.hpp>
#include <weft/check.hpp>
#include <weft/condition_variable.hpp>
#include <weft/deadline.hpp>
#include <weft/errc.hpp>
#include <weft/event.hpp>
#include <weft/executor.hpp>
#include <weft/generator.hpp>
#include <weft/interval.hpp>
#include <weft/io/address.hpp>
#include <weft/io/buffered.hpp>
#include <weft/io/fd.hpp>
#include <weft/io/file.hpp>
#include <weft/io/operation.hpp>
#include <weft/io/pipe.hpp>
#include <weft/io/process.hpp>
#include <weft/io/reactor.hpp>
#include <weft/io/resolve.hpp>
#include <weft/io/result.hpp>
#include <weft/io/ring.hpp>
#include <weft/io/signal.hpp>
#include <weft/io/socket.hpp>
#include <weft/join_set.hpp>
#include <weft/latch.hpp>
#include <weft/mutex.hpp>
#include <weft/pool/process_pool.hpp>
#include <weft/queue.hpp>
#include <weft/sched/cooperative.hpp>
#include <weft/sched/run.hpp>
#include <weft/sched/runtime.hpp>
#include <weft/semaphore.hpp>
#include <weft/spawn.hpp>
#include <weft/task.hpp>
#include <weft/task_group.hpp>
#include <weft/task_info.hpp>
#include <weft/this_task.hpp>
#include <weft/time.hpp>
#include <weft/version.hpp>
#include <weft/when.hpp>

/// @namespace weft
/// weft's API: tasks (`task`, `spawn`, `task_group`, `when_all`/`when_any`), cancellation,
/// timers, synchronization (mutex, event, semaphore...), channels and queues, and `run`.
///
/// @namespace weft::io
/// I/O on io_uring: sockets, files, pipes, child processes and signals, as awaitable operations
/// that give `result<T>`, and the per-thread reactor under them.
///
/// @namespace weft::sched
/// The executors (cooperative, single-lock, multi-thread) and their building blocks. Most
/// programs need none of it directly: `weft::run` picks the executor by `weft::mode`.
///
/// @namespace weft::pool
/// The process pool (Python's multiprocessing.Pool): worker processes that run registered
/// functions, the shared memory and the byte format their arguments and results travel in.
///
/// @namespace weft::pool::serial
/// The byte format in which a process pool's arguments and results cross the process boundary.
