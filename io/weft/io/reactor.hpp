// weft: the io_uring reactor of one thread: the ring, its in-flight operations and the timers.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <weft/detail/timer_heap.hpp>
#include <weft/io/ring.hpp>
#include <weft/trace.hpp>

namespace weft::detail {
class buffer_ring;  // io/buffer_ring.hpp (private)
}

namespace weft::io {

/// Makes the process ignore SIGPIPE (if its disposition is still the default), so that writing
/// to a closed socket or pipe gives EPIPE instead of killing the process. every reactor calls it
/// when it starts; sends also pass MSG_NOSIGNAL. Idempotent and thread-safe.
void ignore_sigpipe() noexcept;

/// What a completion queue entry resumes. An operation embeds one and puts its address in the
/// SQE's user_data; `on_complete` runs on the reactor's thread when the CQE arrives.
struct completion {
  /// Called with the CQE's result (a count or fd >= 0, or a negated errno) and flags.
  void (*on_complete)(completion* self, int result, std::uint32_t cqe_flags) noexcept = nullptr;
};

/// A completion that outlives any one task: a multishot request (accept) whose object the
/// reactor tracks, so that tearing the reactor down cancels it and waits for its last CQE before
/// the ring goes away. Registered and unregistered on the reactor's thread.
struct persistent_completion : completion {
  /// @cond
  // The reactor's intrusive list of tracked requests: public so that the struct stays a plain
  // aggregate, but only the reactor touches them.
  persistent_completion* prev_persistent = nullptr;
  persistent_completion* next_persistent = nullptr;
  /// @endcond
};

/// Counters a test or benchmark can read to check that the loop batches its system calls.
struct reactor_stats {
  std::uint64_t enter_calls = 0;   ///< io_uring_enter system calls made by the loop
  std::uint64_t completions = 0;   ///< CQEs handled
  std::uint64_t timers_fired = 0;  ///< timers that reached their deadline
  std::uint64_t cq_overflows = 0;  ///< turns that found completions parked in the kernel's
                                   ///< overflow list (a completion queue too small for the load)
  std::uint64_t submissions = 0;   ///< operations submitted through `submit`
};

/// One io_uring plus the timer heap of one thread.
///
/// The loop calls `poll` once per turn: it submits everything queued since the last turn with a
/// single `io_uring_enter` (at most one per turn, more only when the submission queue fills up),
/// waits when asked to until a completion or the earliest timer deadline, then runs the
/// completion callbacks and the expired timers. Sleepers cost a heap entry, not a kernel timer.
///
/// Thread-safety: everything runs on the owning thread except `wake()` and `cancel()`, which any
/// thread may call.
class reactor {
 public:
  /// Creates the ring (see `ring` for the errors) and an eventfd used to wake the loop.
  /// `on_wake` runs on the reactor's thread after another thread called `wake()`.
  /// With `shared_timers`, `cancel_timer` may be called from any thread: a spin lock guards the
  /// timer heap, and expiry callbacks run under it (so they must not add or cancel timers of
  /// this reactor). Executors whose tasks move between threads need that: a task may resume on
  /// another thread than the one whose heap holds its timer.
  explicit reactor(unsigned entries, std::function<void()> on_wake, bool shared_timers = false);
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;
  ~reactor();

  /// The reactor of the calling thread, or null.
  static reactor* current() noexcept { return current_; }
  /// Makes `r` the calling thread's reactor (null to clear).
  static void set_current(reactor* r) noexcept { current_ = r; }

  /// A free submission slot. Never null: when the queue is full, it submits what is queued and
  /// retries (the kernel consumes SQEs at submit time). Throws std::system_error if the kernel
  /// refuses to submit.
  io_uring_sqe* get_sqe();

  /// Queues an operation: `prepare` fills the SQE; its CQE will call `c->on_complete`.
  /// If `prepare` throws, the claimed SQE becomes a NOP whose CQE nobody waits for and the
  /// exception propagates: the slot still holds what its previous occupant left (opcode,
  /// buffer, user_data), and the kernel would run that again and resume a finished operation.
  template <class Prepare>
  void submit(completion* c, Prepare&& prepare) {
    io_uring_sqe* sqe = get_sqe();
    try {
      prepare(sqe);
    } catch (...) {
      neutralize(sqe);
      throw;
    }
    io_uring_sqe_set_data(sqe, c);
    ++in_flight_;
    bump(counters_.submissions);
    // The running task's wait (the task dump) and the trace's submit event.
    if (weft::detail::tls_current_task != nullptr || weft::detail::tls_trace != nullptr) {
      weft::detail::note_io_submit(sqe->opcode, sqe->fd);
    }
  }

  /// Turns a claimed SQE into a NOP with the user_data that `reap` ignores (no flags, no
  /// link): the way to give back a slot that could not be filled.
  static void neutralize(io_uring_sqe* sqe) noexcept {
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, 0);
  }

  /// Asks the kernel to cancel the operation behind `c` (IORING_OP_ASYNC_CANCEL). Its own CQE
  /// still arrives (with -ECANCELED, or its result if it won the race). Any thread.
  void cancel(completion* c);

  /// Withdraws a cancel that another thread queued for `c` and the loop has not sent yet.
  /// Called by the operation on the reactor's thread before its memory may be reused.
  void retract_cancel(completion* c) noexcept;

  /// Arms `n`. Owner thread only. Throws std::bad_alloc.
  void add_timer(detail::timer_node& n) {
    timer_guard guard(*this);
    timers_.push(n);
  }
  /// Disarms `n` if armed. Owner thread only, or any thread with `shared_timers`.
  void cancel_timer(detail::timer_node& n) noexcept {
    timer_guard guard(*this);
    timers_.remove(n);
  }
  /// How many timers are armed. Owner thread only, or any thread with `shared_timers`.
  std::size_t timer_count() noexcept {
    timer_guard guard(*this);
    return timers_.size();
  }

  /// Tracks a multishot request; see persistent_completion. Owner thread only.
  void track(persistent_completion& c) noexcept;
  /// Stops tracking `c` (its owner calls it once the request is over); nothing happens when `c`
  /// is not tracked. Owner thread only.
  void untrack(persistent_completion& c) noexcept;

  /// Operations whose CQE has not arrived yet (the wake-up read excluded).
  std::size_t in_flight() const noexcept { return in_flight_; }

  /// Makes the calling thread the one that runs this reactor: the first call enables the ring
  /// with that thread as its only submitter. Called by an executor's loop before it polls.
  /// Throws std::logic_error when another thread already runs it (a ring has one submitter).
  void attach_to_this_thread();

  /// One loop turn; see the class comment. With `block`, waits until at least one completion,
  /// a timer deadline, or a `wake()`.
  void poll(bool block) { poll(block, clock::time_point::max()); }
  /// The same, but a blocking wait also ends at `limit` (an idle executor thread that watches
  /// a busy one wakes up now and then; see single_lock). Without `run_timers`, timers that are
  /// due stay armed (the wait still ends at the earliest deadline): the single-lock executor's
  /// parked threads poll that way, so that a timer's callback (with_timeout's, which runs the
  /// user's stop callbacks) runs under the lock, at the thread's next poll with the lock held.
  void poll(bool block, clock::time_point limit, bool run_timers = true);

  /// True when a timer's deadline has passed. Owner thread only, or any thread with
  /// `shared_timers`.
  bool timers_due() noexcept {
    clock::time_point deadline{};
    return next_deadline(deadline) && deadline <= weft::now();
  }

  /// Wakes a `poll(true)` in progress (or makes the next one return at once). Any thread.
  void wake() noexcept;

  /// The loop's counters so far. Any thread (each counter is read on its own: a snapshot taken
  /// while the loop runs may be a few events apart between counters).
  reactor_stats stats() const noexcept {
    reactor_stats s;
    s.enter_calls = counters_.enter_calls.load(std::memory_order_relaxed);
    s.completions = counters_.completions.load(std::memory_order_relaxed);
    s.timers_fired = counters_.timers_fired.load(std::memory_order_relaxed);
    s.cq_overflows = counters_.cq_overflows.load(std::memory_order_relaxed);
    s.submissions = counters_.submissions.load(std::memory_order_relaxed);
    return s;
  }
  /// The liburing handle of the ring, for liburing calls weft does not wrap. Owner thread only.
  io_uring* raw() noexcept { return ring_.get(); }

  /// The provided buffer ring that multishot receives on this ring take their buffers from
  /// (`recv_stream`), registered on first use and kept until the reactor goes. Owner thread
  /// only. Throws std::system_error when the kernel or the memory refuses it.
  std::shared_ptr<weft::detail::buffer_ring> receive_buffers();

 private:
  // Takes the timer lock when timers are shared; does nothing otherwise.
  struct timer_guard {
    explicit timer_guard(reactor& r) noexcept : self(r.shared_timers_ ? &r : nullptr) {
      if (self != nullptr) self->lock_timers();
    }
    ~timer_guard() {
      if (self != nullptr) self->timer_lock_.store(false, std::memory_order_release);
    }
    timer_guard(const timer_guard&) = delete;
    timer_guard& operator=(const timer_guard&) = delete;
    reactor* self;
  };
  void lock_timers() noexcept {
    while (timer_lock_.exchange(true, std::memory_order_acquire)) {
      while (timer_lock_.load(std::memory_order_relaxed)) std::this_thread::yield();
    }
  }
  // The earliest deadline, if any timer is armed.
  bool next_deadline(clock::time_point& deadline) noexcept;

  void arm_wake_read();
  bool expire_timers(clock::time_point now);
  void reap();
  void reap_ready();  // the CQEs already in the ring, without entering the kernel
  void drain_remote_cancels();

  static inline thread_local reactor* current_ = nullptr;

  // Created by receive_buffers(). Declared before ring_ so that it is destroyed after it: a
  // multishot recv still armed when the ring goes may write into these buffers until then.
  std::shared_ptr<weft::detail::buffer_ring> receive_buffers_;
  ring ring_;
  detail::timer_heap timers_;
  const bool shared_timers_;
  std::atomic<bool> timer_lock_{false};
  std::size_t in_flight_ = 0;
  // The counters behind stats(): written by the loop's thread only (a plain load and store),
  // atomic so that weft::runtime_handle::metrics() may read them from any thread.
  struct counters {
    std::atomic<std::uint64_t> enter_calls{0}, completions{0}, timers_fired{0}, cq_overflows{0},
        submissions{0};
  } counters_;
  static void bump(std::atomic<std::uint64_t>& c) noexcept {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  struct wake_read : completion {
    reactor* owner = nullptr;
    bool armed = false;
  };

  int wake_fd_ = -1;
  std::uint64_t wake_buffer_ = 0;
  wake_read wake_completion_;
  bool stopping_ = false;
  // Running under Valgrind: declare what queued SQEs let the kernel write, and bound ring waits
  // (see reactor.cpp). Read once, at construction.
  bool under_valgrind_ = false;
  void declare_queued_writes() noexcept;
  // What must see the queued SQEs before the kernel does: Valgrind's declarations, and in a
  // -Dfault_injection=true build the fault injector (io/fault_hook.hpp).
  void before_submit() noexcept;
  std::function<void()> on_wake_;

  persistent_completion* persistent_ = nullptr;
  std::thread::id owner_thread_{};

  std::mutex remote_mutex_;
  std::vector<completion*> remote_cancels_;
};

}  // namespace weft::io
