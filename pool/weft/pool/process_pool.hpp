// weft: a pool of worker processes (Python's multiprocessing.Pool).
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <weft/io/fd.hpp>
#include <weft/io/process.hpp>
#include <weft/pool/serialize.hpp>
#include <weft/semaphore.hpp>
#include <weft/task.hpp>
#include <weft/when.hpp>

namespace weft::pool {

/// How a process pool starts its workers (Python's multiprocessing start methods).
enum class start_method {
  /// Re-executes the current program (/proc/self/exe) in the worker role: `main` must call
  /// `weft::pool::serve_if_pool_worker()` first. A fresh process, safe to start at any time, from
  /// any thread. The default.
  spawn,
  /// Forks the calling process: workers start with a copy of its memory and no exec.
  /// Allowed only while the process has a single thread and no io_uring ring (before
  /// `weft::run`, before any spawn_blocking), because a fork copies only the calling thread and
  /// would share a ring's memory. The pool then forks a small server process at once, and
  /// every worker (also one that replaces a crashed worker later) is forked from it.
  fork,
};

namespace detail {

class fork_server;

using process_invoker = void (*)(void (*fn)(), serial::reader& args, serial::writer& result);

/// Registers `fn` under `name` (called by WEFT_PROCESS_FUNCTION at static initialization).
bool register_process_function(const char* name, void (*fn)(), process_invoker invoke) noexcept;
/// The name `fn` was registered under; throws std::invalid_argument when it was not, or when
/// two functions share its name.
const std::string& process_function_name(void (*fn)());

template <class R, class... P>
void invoke_process_function(void (*erased)(), serial::reader& args, serial::writer& result) {
  auto fn = reinterpret_cast<R (*)(P...)>(erased);
  // Braces evaluate left to right: arguments decode in the order they were written.
  std::tuple<std::remove_cvref_t<P>...> decoded{serial::take<std::remove_cvref_t<P>>(args)...};
  if constexpr (std::is_void_v<R>) {
    std::apply(fn, std::move(decoded));
  } else {
    serial::put<std::remove_cvref_t<R>>(result, std::apply(fn, std::move(decoded)));
  }
}

template <class R, class... P>
bool register_process_function_of(const char* name, R (*fn)(P...)) noexcept {
  static_assert(
      std::is_void_v<R> || serial::serializable_v<R>,
      "WEFT_PROCESS_FUNCTION: the result type must be void, a trivially copyable type "
      "(not a pointer), std::string, weft::pool::shared_buffer, or std::vector, std::pair or "
      "std::tuple of "
      "those");
  static_assert(
      (serial::serializable_v<P> && ...),
      "WEFT_PROCESS_FUNCTION: every parameter type must be a trivially copyable type "
      "(not a pointer or view), std::string, weft::pool::shared_buffer, or std::vector of "
      "those");
  return register_process_function(name, reinterpret_cast<void (*)()>(fn),
                                   &invoke_process_function<R, P...>);
}

/// Exits at once, with a message, when this process is a spawned pool worker whose `main` did
/// not call `serve_if_pool_worker()` (called by `weft::run` and the pool's constructor).
void refuse_unserved_pool_worker();

/// A job's reply: the result's bytes and the fds that came with them.
struct process_reply {
  std::string bytes;
  std::vector<io::fd> fds;
};

/// For tests: how long the pool waits for each reply of its fork server (10 s unless set), so
/// that a test can make a reply late. Applies to the requests made after the call.
/// Thread-safe.
void set_fork_server_reply_timeout(std::chrono::milliseconds limit) noexcept;

}  // namespace detail

#define WEFT_DETAIL_CONCAT2(a, b) a##b
#define WEFT_DETAIL_CONCAT(a, b) WEFT_DETAIL_CONCAT2(a, b)

/// Registers a function so that process pools can run it: write it at namespace scope, in any
/// source file of the program, as `WEFT_PROCESS_FUNCTION(count_words);`. The name (the text
/// of the argument, such as "count_words" or "ns::f") identifies the function between the
/// parent and its workers, which run the same binary. Parameter and result types must be
/// serializable (see `serial::serializable_v`); anything else fails to compile with a message
/// naming the rule. Overloaded functions cannot be registered (take a non-overloaded wrapper).
#define WEFT_PROCESS_FUNCTION(fn)                                                     \
  [[maybe_unused]] static const bool WEFT_DETAIL_CONCAT(weft_process_fn_, __LINE__) = \
      ::weft::pool::detail::register_process_function_of(#fn, &fn)

/// If this process was started by a process pool as a worker (start method spawn), serves the
/// pool's jobs until the pool closes the worker, then exits the process; otherwise returns at
/// once. Call it first thing in `main`, before any output or argument parsing, in every
/// program that uses a process pool with start method spawn (as Python programs need
/// `if __name__ == "__main__":`). A pool created in a worker process that skipped this call
/// exits that process with a message naming the omission. Thread-safety: call from `main`'s
/// thread before starting threads.
void serve_if_pool_worker();

/// What a pool has done so far.
struct process_pool_stats {
  std::uint64_t jobs_completed = 0;   ///< jobs that returned a value (or threw in the worker)
  std::uint64_t jobs_lost = 0;        ///< jobs whose worker died under them
  std::uint64_t workers_started = 0;  ///< initial workers and replacements
};

/// A fixed set of worker processes that run registered functions (Python's
/// multiprocessing.Pool).
///
/// `co_await pool.submit(fn, args...)` runs `fn(args...)` in an idle worker and gives its
/// result; `co_await pool.map(fn, items)` runs `fn(item)` for every item, as many at once as
/// there are workers, and gives the results in order. Arguments are serialized when `submit`
/// or `map` is called (so temporaries may be passed), sent over a Unix socket (shared buffers
/// as file descriptors), and the result comes back the same way. Each worker runs one job at a
/// time, synchronously, in its own process: CPU-bound functions run in parallel, with no lock.
///
/// Errors (thrown by the co_await, as `std::system_error` unless said otherwise):
/// - `errc::job_failed`: the function threw in the worker; `what()` carries its message. The
///   worker lives on.
/// - `errc::worker_died`: the worker exited or was killed while running the job (a crash, an
///   abort, a SIGKILL); `what()` names the pid and the signal or exit code. The pool starts a
///   replacement and keeps working.
/// - `errc::pool_closed`: submitted after `shutdown()` began.
/// - `errc::cancelled`: the job's task was stopped; if the job had been sent, its worker is
///   killed and replaced (it is in the middle of the job and cannot be interrupted otherwise).
/// - `std::invalid_argument` (from `submit`/`map` themselves): `fn` was not registered.
///
/// Shutdown: `co_await shutdown()` refuses new jobs, waits for the jobs in flight, closes every
/// worker's socket (a worker exits when it reads end of file) and reaps every worker. The
/// destructor does the same without waiting for jobs (there must be none in flight); a worker
/// that has not exited a second after its socket closed is killed. No zombie is left either way.
///
/// Thread-safety: `submit`, `map` and `shutdown` may be called from tasks on any executor mode
/// and any thread; jobs from several tasks share the workers. Awaiting needs a running executor.
/// Lifetime: the pool must outlive every job awaited on it.
class process_pool {
 public:
  /// Starts `workers` worker processes (0: one per CPU).
  /// Errors: throws `std::system_error`: `errc::fork_unsafe` for start method fork in a process
  /// that already has a second thread or an io_uring ring; the spawner's errors ("spawn",
  /// "socketpair", "fork"...) when a worker cannot be started.
  explicit process_pool(unsigned workers = 0, start_method method = start_method::spawn);
  process_pool(const process_pool&) = delete;
  process_pool& operator=(const process_pool&) = delete;
  ~process_pool();

  /// Runs `fn(args...)` in a worker; see the class comment for the errors.
  template <class R, class... P, class... A>
  task<R> submit(R (*fn)(P...), A&&... args) {
    static_assert(sizeof...(P) == sizeof...(A),
                  "weft::pool::process_pool::submit: wrong number of arguments for the function");
    static_assert(std::is_void_v<R> || serial::serializable_v<R>,
                  "weft::pool::process_pool::submit: the result type must be void, a trivially "
                  "copyable type (not a pointer), std::string, weft::pool::shared_buffer, or "
                  "std::vector, std::pair or std::tuple of those");
    static_assert(
        (serial::serializable_v<P> && ...),
        "weft::pool::process_pool::submit: every parameter type must be a trivially "
        "copyable type (not a pointer or view), std::string, weft::pool::shared_buffer, or "
        "std::vector, std::pair or std::tuple of those");
    job j;
    j.name = &detail::process_function_name(reinterpret_cast<void (*)()>(fn));
    serial::put<std::string>(j.message, *j.name);
    (serial::put<std::remove_cvref_t<P>>(j.message,
                                         static_cast<const std::remove_cvref_t<P>&>(args)),
     ...);
    return finish_job<R>(run(std::move(j)));
  }

  /// Runs `fn(item)` for every item of `items` (any forward range whose elements convert to
  /// `fn`'s parameter), spread over the workers; gives the results in the order of `items`.
  /// Items travel in chunks of `chunk_size` (0: about four chunks per worker, as Python's
  /// Pool.map), each chunk one message run item after item by one worker, so a small function
  /// costs a call per item, not a round trip. An item that throws (or a worker that dies) fails
  /// its whole chunk; the first error is rethrown once every chunk has ended (as `when_all`).
  template <class R, class P, class Range>
  auto map(R (*fn)(P), const Range& items, std::size_t chunk_size = 0) {
    static_assert(std::is_void_v<R> || serial::serializable_v<R>,
                  "weft::pool::process_pool::map: the result type must be void, a trivially "
                  "copyable type (not a pointer), std::string, weft::pool::shared_buffer, or "
                  "std::vector, std::pair or std::tuple of those");
    static_assert(serial::serializable_v<P>,
                  "weft::pool::process_pool::map: the parameter type must be a trivially copyable "
                  "type (not a pointer or view), std::string, weft::pool::shared_buffer, or "
                  "std::vector, std::pair or std::tuple of those");
    using param = std::remove_cvref_t<P>;
    const std::string& name = detail::process_function_name(reinterpret_cast<void (*)()>(fn));
    const auto total = static_cast<std::size_t>(std::ranges::distance(items));
    if (chunk_size == 0) {
      const std::size_t parts = 4 * std::size_t{workers()};
      chunk_size = std::max<std::size_t>(1, (total + parts - 1) / parts);
    }
    using chunk_result = std::conditional_t<std::is_void_v<R>, void, std::vector<R>>;
    std::vector<task<chunk_result>> chunks;
    auto it = std::ranges::begin(items);
    for (std::size_t done = 0; done < total;) {
      const std::size_t count = std::min(chunk_size, total - done);
      job j;
      j.name = &name;
      j.batch = true;
      serial::put<std::string>(j.message, name);
      serial::put<std::uint64_t>(j.message, count);
      for (std::size_t i = 0; i < count; ++i, ++it) {
        serial::put<param>(j.message, static_cast<const param&>(*it));
      }
      done += count;
      chunks.push_back(finish_batch<R>(run(std::move(j)), count));
    }
    return gather(std::move(chunks));
  }

  /// Waits for the jobs in flight (and those already waiting for a worker), then closes and reaps
  /// every worker; see the class comment. A call made while another runs, or after one
  /// finished, returns at once. Cancelled half-way (`with_timeout`), it throws `errc::cancelled`
  /// and leaves the pool closed to new jobs; call it again to finish, or let the destructor.
  task<void> shutdown();

  /// The number of workers.
  unsigned workers() const noexcept { return static_cast<unsigned>(slots_.size()); }
  /// How the workers were started (given to the constructor).
  start_method method() const noexcept { return method_; }
  /// The workers' pids now (a replaced worker has a new pid). Thread-safe.
  std::vector<pid_t> worker_pids() const;
  /// A snapshot of the pool's counters. Thread-safe.
  process_pool_stats stats() const noexcept;

 private:
  struct job {
    const std::string* name = nullptr;
    bool batch = false;      // map's chunks: a count, then that many argument lists
    serial::writer message;  // the function's name, then the arguments (and their fds)
  };
  struct slot;

  task<detail::process_reply> run(job j);
  task<slot*> take_slot();
  void give_back(slot* s) noexcept;
  task<void> restart_worker(slot& s);
  /// Counts the job lost, restarts the slot's worker, and throws the error the job fails with.
  task<void> fail_lost_job(slot& s, pid_t pid, const std::string& how, const std::string& name);

  template <class R>
  static task<R> finish_job(task<detail::process_reply> pending) {
    detail::process_reply reply = co_await std::move(pending);
    if constexpr (!std::is_void_v<R>) {
      serial::reader r(std::as_bytes(std::span(reply.bytes)), &reply.fds);
      co_return serial::take<std::remove_cvref_t<R>>(r);
    }
  }
  template <class R>
  static task<std::conditional_t<std::is_void_v<R>, void, std::vector<R>>> finish_batch(
      task<detail::process_reply> pending, std::size_t count) {
    detail::process_reply reply = co_await std::move(pending);
    if constexpr (!std::is_void_v<R>) {
      serial::reader r(std::as_bytes(std::span(reply.bytes)), &reply.fds);
      std::vector<R> results;
      results.reserve(count);
      for (std::size_t i = 0; i < count; ++i) {
        results.push_back(serial::take<std::remove_cvref_t<R>>(r));
      }
      co_return results;
    }
  }
  template <class R>
  static task<std::vector<R>> gather(std::vector<task<std::vector<R>>> chunks) {
    std::vector<std::vector<R>> parts = co_await when_all(std::move(chunks));
    std::vector<R> results;
    std::size_t total = 0;
    for (const auto& part : parts) total += part.size();
    results.reserve(total);
    for (auto& part : parts) {
      for (auto& value : part) results.push_back(std::move(value));
    }
    co_return results;
  }
  static task<void> gather(std::vector<task<void>> chunks) { co_await when_all(std::move(chunks)); }

  void start_worker(slot& s);
  task<void> start_worker_async(slot& s);
  void adopt_forked(slot& s, pid_t pid, io::fd socket);
  task<std::string> reap_dead(slot& s);
  void replace_now(slot& s) noexcept;
  void close_all_sync() noexcept;

  start_method method_;
  std::vector<std::unique_ptr<slot>> slots_;
  std::unique_ptr<detail::fork_server> fork_server_;  // start method fork only
  semaphore idle_count_;
  mutable std::mutex mutex_;  // guards idle_, the slots' processes and the counters
  std::vector<slot*> idle_;
  bool closed_ = false;     // no new jobs
  bool closing_ = false;    // a shutdown() is running
  bool shut_down_ = false;  // every worker is reaped
  process_pool_stats stats_;
};

}  // namespace weft::pool
