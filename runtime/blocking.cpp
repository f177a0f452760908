// weft: the thread pool behind spawn_blocking.
#include <weft/blocking.hpp>

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <weft/detail/intrusive_list.hpp>

namespace weft {
namespace {

using std::chrono::steady_clock;

class blocking_pool;
blocking_pool& pool() noexcept;

/// The process-wide blocking pool: a FIFO of intrusive jobs, a mutex and a condition variable.
///
/// Threads start on demand (a job finds no idle thread and the count is below the limit), are
/// detached, and exit after `keep_alive_` without work or when the limit was lowered below the
/// count. An idle thread is handed a job through `wakeups_`: a submitter that sees more idle
/// threads than pending wake-ups claims one (++wakeups_) and notifies; a woken thread consumes a
/// claim and looks at the queue (a busy thread that finished meanwhile may have taken the job:
/// it then just goes idle again). So `wakeups_ <= idle_` always, and a job is never left queued
/// while an unclaimed thread sleeps.
class blocking_pool {
 public:
  blocking_pool() {
    // fork() copies the pool but none of its threads: the child would wait forever on threads
    // it believes idle. The handlers keep the state consistent across the fork and start the
    // child with an empty pool.
    ::pthread_atfork([] { pool().mutex_.lock(); }, [] { pool().mutex_.unlock(); },
                     [] { pool().reset_in_child(); });
  }

  void submit(detail::blocking_job& job) {
    std::unique_lock lock(mutex_);
    push_back(job);
    if (idle_ > wakeups_) {
      ++wakeups_;
      lock.unlock();
      cv_.notify_one();
      return;
    }
    if (threads_ >= limit_) return;  // a busy thread takes it when it finishes
    ++threads_;
    try {
      start_thread();
    } catch (...) {
      --threads_;
      // With a thread alive the job stays queued: that thread takes it when it finishes. With
      // none, nobody would ever run it: give it back to the caller with the error.
      if (threads_ == 0) {
        unlink(job);
        throw;
      }
    }
  }

  void withdraw(detail::blocking_job& job) noexcept {
    std::lock_guard lock(mutex_);
    if (job.linked) unlink(job);
  }

  void set_limit(std::size_t n) {
    if (n == 0) throw std::invalid_argument("weft::set_blocking_pool_limit: the limit must be > 0");
    {
      std::lock_guard lock(mutex_);
      limit_ = n;
    }
    cv_.notify_all();  // idle threads above a lower limit exit
  }

  void set_keep_alive(steady_clock::duration d) noexcept {
    {
      std::lock_guard lock(mutex_);
      keep_alive_ = d < steady_clock::duration::zero() ? steady_clock::duration::zero() : d;
    }
    cv_.notify_all();  // idle threads recompute their deadline
  }

  blocking_stats stats() noexcept {
    std::lock_guard lock(mutex_);
    return blocking_stats{threads_, busy_.load(std::memory_order_relaxed), queued_,
                          jobs_run_.load(std::memory_order_relaxed), limit_};
  }

  // In the child of fork(), whose only thread is the one that forked (and holds the lock, taken
  // in the prepare handler). The condition variable is rebuilt without its destructor, which
  // would wait for waiters that do not exist here. Jobs queued in the parent are forgotten:
  // their tasks ran on threads the child does not have either.
  void reset_in_child() noexcept {
    std::construct_at(&cv_);
    head_ = tail_ = nullptr;
    queued_ = threads_ = idle_ = wakeups_ = 0;
    busy_.store(0, std::memory_order_relaxed);
    mutex_.unlock();
  }

  void set_creation_fails(bool fail) noexcept {
    std::lock_guard lock(mutex_);
    creation_fails_ = fail;
  }

 private:
  // Under the lock.
  void start_thread() {
    if (creation_fails_) {
      throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                              "weft blocking pool: thread creation failed (testing)");
    }
    std::thread([this] { worker(); }).detach();
  }

  void worker() noexcept {
    ::pthread_setname_np(::pthread_self(), "weft-blocking");
    std::unique_lock lock(mutex_);
    for (;;) {
      if (detail::blocking_job* job = pop_runnable()) {
        busy_.fetch_add(1, std::memory_order_relaxed);
        lock.unlock();
        job->run(job);  // noexcept
        busy_.fetch_sub(1, std::memory_order_relaxed);
        jobs_run_.fetch_add(1, std::memory_order_relaxed);
        job->complete(job);  // the job's frame may be gone as soon as it returns
        lock.lock();
        continue;
      }
      if (threads_ > limit_) break;
      // Idle: wait for a claim, the keep-alive, or a limit below the count.
      ++idle_;
      const steady_clock::time_point idle_since = steady_clock::now();
      bool expired = false;
      while (wakeups_ == 0 && !expired && threads_ <= limit_) {
        expired = cv_.wait_until(lock, idle_since + keep_alive_) == std::cv_status::timeout &&
                  steady_clock::now() >= idle_since + keep_alive_;
      }
      --idle_;
      if (wakeups_ > 0) {
        --wakeups_;
        continue;
      }
      if (head_ != nullptr) continue;  // cannot happen (jobs claim idle threads), but be safe
      if (expired || threads_ > limit_) break;
    }
    --threads_;
  }

  // Under the lock. Pops jobs until one can start; a job cancelled while queued is dropped here
  // (its awaiter's withdraw then finds it unlinked) and not touched again.
  detail::blocking_job* pop_runnable() noexcept {
    while (detail::blocking_job* job = head_) {
      unlink(*job);
      std::uint8_t expected = detail::blocking_job::queued;
      if (job->state.compare_exchange_strong(expected, detail::blocking_job::running,
                                             std::memory_order_acq_rel)) {
        return job;
      }
    }
    return nullptr;
  }

  void push_back(detail::blocking_job& job) noexcept {
    detail::list_push_back<&detail::blocking_job::prev, &detail::blocking_job::next>(head_, tail_,
                                                                                     job);
    job.linked = true;
    ++queued_;
  }

  void unlink(detail::blocking_job& job) noexcept {
    detail::list_remove<&detail::blocking_job::prev, &detail::blocking_job::next>(head_, tail_,
                                                                                  job);
    job.linked = false;
    --queued_;
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  detail::blocking_job* head_ = nullptr;
  detail::blocking_job* tail_ = nullptr;
  std::size_t queued_ = 0;
  std::size_t threads_ = 0;           // alive (or being started)
  std::size_t idle_ = 0;              // waiting on cv_
  std::size_t wakeups_ = 0;           // idle threads claimed by a submit and not yet awake
  std::atomic<std::size_t> busy_{0};  // atomics: updated outside the lock, before completion
  std::atomic<std::uint64_t> jobs_run_{0};
  std::size_t limit_ = 64;
  steady_clock::duration keep_alive_ = std::chrono::seconds(10);
  bool creation_fails_ = false;
};

/// The pool is immortal: constructed on first use and never destroyed. Its threads are
/// detached and may still be waiting on its condition variable (or running a job) while static
/// destructors run at exit; destroying the mutex under them would be undefined behaviour, and
/// joining them could hang for as long as a job blocks. The union keeps the object in static
/// storage without running its destructor, so nothing is leaked from the heap either.
blocking_pool& pool() noexcept {
  union immortal {
    immortal() : pool() {}
    ~immortal() {}
    blocking_pool pool;
  };
  static immortal holder;
  return holder.pool;
}

}  // namespace

void set_blocking_pool_limit(std::size_t max_threads) {
  pool().set_limit(max_threads);
}

void set_blocking_pool_keep_alive(std::chrono::nanoseconds keep_alive) noexcept {
  pool().set_keep_alive(std::chrono::duration_cast<steady_clock::duration>(keep_alive));
}

blocking_stats blocking_pool_stats() noexcept {
  return pool().stats();
}

namespace detail {

void submit_blocking(blocking_job& job) {
  pool().submit(job);
}

void withdraw_blocking(blocking_job& job) noexcept {
  pool().withdraw(job);
}

void set_blocking_thread_creation_fails_for_testing(bool fail) noexcept {
  pool().set_creation_fails(fail);
}

}  // namespace detail
}  // namespace weft
