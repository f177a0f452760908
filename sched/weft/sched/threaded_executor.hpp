// weft: what the multi-thread and single-lock executors share: the set of live tasks, the
// wrapper of the program's main task, and the shutdown flags.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <weft/detail/children.hpp>
#include <weft/executor.hpp>
#include <weft/task.hpp>
#include <weft/this_task.hpp>

namespace weft::sched {

class live_set;

/// The base of the executors that run tasks on several threads and start `block_on` on the
/// calling thread ("thread 0"). It keeps the live tasks in a sharded set (a task is spawned on
/// one thread and may finish on another), runs the main task inside a wrapper that stores its
/// outcome and wakes thread 0, and gives thread 0 the shutdown sequence: once main is done,
/// cancel every live task and wait until the set is empty (the last task to finish wakes it).
///
/// Thread-safety: `task_started`, `task_finished` and `live_tasks` from any thread; the
/// protected helpers as documented on each.
class threaded_executor : public executor {
 public:
  threaded_executor();
  threaded_executor(const threaded_executor&) = delete;
  threaded_executor& operator=(const threaded_executor&) = delete;
  ~threaded_executor() override;

  void task_started(detail::spawn_link& link) noexcept final;
  void task_finished(detail::spawn_link& link) noexcept final;

  /// Spawned tasks that have not finished yet.
  std::size_t live_tasks() const noexcept;

  /// Any thread: under each shard's lock (a task cannot finish while `fn` looks at it).
  bool visit_tasks(void (*fn)(detail::spawn_link&, void*), void* context) noexcept final;

  /// How long the shutdown waits for cancelled tasks before it gives up on them (see
  /// `run_options::shutdown_timeout`); max (the default here) waits for ever. Not while
  /// `block_on` runs.
  void set_shutdown_timeout(std::chrono::nanoseconds timeout) noexcept {
    shutdown_timeout_ = timeout;
  }
  /// True when the last `block_on` gave up on tasks that ignored cancellation: the executor
  /// (its threads, rings and those tasks' frames) must then never be destroyed (`weft::run`
  /// keeps it for ever). Read after `block_on`.
  bool abandoned() const noexcept { return abandoned_; }
  /// The task dump of the tasks that were still alive when the shutdown gave up.
  const std::string& stuck_tasks() const noexcept { return stuck_tasks_; }

  /// Runs `main` on the executor's threads (the calling thread is thread 0, the others are
  /// started here) and returns its value or rethrows its exception. When `main` ends, the tasks
  /// still running are cancelled and waited for (see `set_shutdown_timeout`), then the threads
  /// stop and their rings are closed. Throws std::system_error when a ring or a thread cannot be
  /// created (nothing is left running). One block_on at a time.
  template <class T>
  T block_on(task<T> main) {
    detail::outcome<T> result;
    run_wrapped(main_wrapper(std::move(main), result));
    if constexpr (std::is_void_v<T>) {
      result.take();
    } else {
      return result.take();
    }
  }

 protected:
  /// block_on's run: opens the rings (first: a failure leaves nothing queued), queues
  /// `wrapper` (main inside main_wrapper) and runs the threads until the shutdown is over.
  virtual void run_wrapped(task<void> wrapper) = 0;

  /// Runs `main`, stores its value or exception in `result` (which outlives the run), then
  /// tells thread 0.
  template <class T>
  static task<void> main_wrapper(task<T> main, detail::outcome<T>& result) {
    try {
      if constexpr (std::is_void_v<T>) {
        co_await std::move(main);
        result.set_value();
      } else {
        result.set_value(co_await std::move(main));
      }
    } catch (...) {
      result.set_error(std::current_exception());
    }
    static_cast<threaded_executor*>(executor::current())->main_finished();
  }

  /// Wakes thread 0 if it sleeps in its ring. Any thread.
  virtual void wake_main_thread() noexcept = 0;

  /// Thread 0's loop condition: true once main has finished and every task is gone, or the
  /// shutdown timeout has passed (then `abandoned()`). The first call after main finished
  /// cancels the tasks still running and starts the timeout. Thread 0 only.
  bool main_and_tasks_done() noexcept;

  /// When thread 0, parked during the shutdown, must look again (the timeout); max before the
  /// shutdown and without a timeout. Thread 0 only.
  clock::time_point shutdown_deadline() const noexcept {
    return shutting_down_.load(std::memory_order_relaxed) ? shutdown_deadline_
                                                          : clock::time_point::max();
  }

  /// Whether thread 0, about to block in its ring, must look again instead: main has finished
  /// and the shutdown has not begun (or is already over). During the drain it may block: the
  /// last task to finish wakes it. Thread 0 only.
  bool main_thread_must_not_block() const noexcept;

  /// Runs `loop(i)` for i in 1..count-1 on new threads and `loop(0)` on the calling thread.
  /// When thread 0's loop returns, calls `stop()` (which must make the other loops return) and
  /// joins them. A thread that cannot be started leaves the run to those that did; its error is
  /// returned, to be rethrown once the executor is tidy. A loop that throws ends the process
  /// with a message naming `what`: an executor thread has nobody to report to.
  ///
  /// When the shutdown gave up (`abandoned()`), the threads that have not returned yet are
  /// detached instead of joined: they may be stuck in a task for ever. Each thread owns a copy
  /// of `loop`, and the executor is never destroyed then, so what they touch stays alive.
  template <class Loop, class Stop>
  std::exception_ptr run_on_threads(unsigned count, const char* what, Loop&& loop, Stop&& stop) {
    // One flag per thread, shared with it: set when its loop has returned.
    auto exited = std::make_shared<std::vector<std::atomic<bool>>>(count);
    auto guarded = [loop, what, exited](unsigned i) noexcept {
      try {
        loop(i);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "weft: %s %u failed: %s; aborting\n", what, i, e.what());
        std::terminate();
      }
      (*exited)[i].store(true, std::memory_order_release);
    };
    std::vector<std::thread> threads;
    std::exception_ptr start_error;
    try {
      threads.reserve(count - 1);
      for (unsigned i = 1; i < count; ++i) threads.emplace_back(guarded, i);
    } catch (...) {
      start_error = std::current_exception();  // run with the threads that did start
    }
    guarded(0);
    stop();
    for (unsigned i = 0; i < threads.size(); ++i) {
      if (abandoned_ && !(*exited)[i + 1].load(std::memory_order_acquire)) {
        threads[i].detach();
      } else {
        threads[i].join();
      }
    }
    return start_error;
  }

  /// Makes the executor ready for another block_on (and for spawn_on from outside in between).
  /// Called once every thread has stopped.
  void reset_after_run() noexcept {
    shutdown_deadline_ = clock::time_point::max();
    main_done_.store(false, std::memory_order_relaxed);
    shutting_down_.store(false, std::memory_order_seq_cst);
    stopping_.store(false, std::memory_order_relaxed);
  }

  /// Tasks spawned since the executor was built. Any thread.
  std::uint64_t tasks_spawned() const noexcept;

  /// Set (release) by the derived executor's stop step, passed to `run_on_threads`: the threads
  /// other than 0 leave their loops once they see it. Cleared by `reset_after_run`.
  std::atomic<bool> stopping_{false};

 private:
  void main_finished() noexcept {
    main_done_.store(true, std::memory_order_release);
    wake_main_thread();
  }

  // The tasks still alive are left as they are: named, never freed (see abandoned()).
  void give_up_shutdown() noexcept;

  // The spawned tasks that have not finished yet (sched/live_set.hpp, private). Any thread.
  const std::unique_ptr<live_set> live_;
  std::atomic<bool> main_done_{false};
  std::atomic<bool> shutting_down_{false};
  // The shutdown timeout and what it did (thread 0 only while block_on runs).
  std::chrono::nanoseconds shutdown_timeout_ = std::chrono::nanoseconds::max();
  clock::time_point shutdown_deadline_ = clock::time_point::max();
  bool abandoned_ = false;
  std::string stuck_tasks_;
};

}  // namespace weft::sched
