#include <weft/sched/single_lock.hpp>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>

#include <weft/check.hpp>
#include <weft/detail/transfer.hpp>
#include <weft/sched/runtime.hpp>
#include <weft/trace.hpp>

#include "park.hpp"
#include "run_queue.hpp"
#include "seeded_order.hpp"

namespace weft::sched {

/// One thread of the executor: its ring and parking slot, and its state in the lock protocol.
struct single_lock::thread_state : parking::park_slot {
  single_lock* owner = nullptr;
  bool woken = false;           // woken by wake_one: counted in owner->waking_ until it looks
  bool parked_poll = false;     // blocked in its ring without the lock; will look at the queue
  bool holds_lock = false;      // between take_lock and drop_lock (this thread only)
  unsigned blocking_depth = 0;  // weft::blocking calls in progress on this thread
  bool released_for_blocking = false;  // the outermost of them dropped the lock
  unsigned ticks = 0;                  // ticks policy: check points since the last release
  bool in_poll = false;                // inside its reactor's poll (check() must not poll then)

  bool poll_wanted = false;  // the watcher asked it to poll its ring (guarded by gil_mutex_)

  // This thread's counters for runtime_metrics (written by this thread only, read by any).
  std::atomic<std::uint64_t> tasks_run{0}, parks{0}, acquisitions{0}, handovers{0};
  static void bump(std::atomic<std::uint64_t>& c) noexcept {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
};

/// The parking state: the sleepers list and the watch period (its mark: the lock's
/// acquisitions when the period began).
struct single_lock::park_state {
  explicit park_state(unsigned threads) : lot(threads) {}
  parking::parking_lot lot;
  parking::watch_period period;
};

namespace {
thread_local void* tls_thread = nullptr;  // the single_lock thread_state of this thread, if any

[[noreturn]] void run_queue_out_of_memory(const char* where) noexcept {
  std::fprintf(stderr, "weft: out of memory %s; aborting\n", where);
  std::terminate();
}
}  // namespace

single_lock::single_lock(single_lock_options options)
    : worker_count_(options.workers != 0 ? options.workers
                                         : std::max(1u, std::thread::hardware_concurrency())),
      ring_entries_(options.ring_entries),
      policy_(options.policy),
      switch_interval_(options.switch_interval),
      ticks_(options.ticks),
      ready_(std::make_unique<run_queue>()),
      order_(std::make_unique<seeded_order>(options.seed)),
      paused_on_(options.paused_clock),
      park_(std::make_unique<park_state>(worker_count_)) {
  if (worker_count_ > 1024) {
    throw std::invalid_argument("weft: single_lock wants 1 to 1024 threads, not " +
                                std::to_string(worker_count_));
  }
  // 0 would make every waiting thread spin on the lock's condition variable.
  if (switch_interval_.count() <= 0) {
    throw std::invalid_argument("weft: single_lock's switch interval must be positive, not " +
                                std::to_string(switch_interval_.count()) + " ns");
  }
  if (paused_on_ && worker_count_ != 1) {
    throw std::invalid_argument("weft: a paused clock needs single_lock with one thread, not " +
                                std::to_string(worker_count_) +
                                " (the threads would race its jumps)");
  }
  if (policy_ == gil_policy::ticks && ticks_ == 0) {
    throw std::invalid_argument("weft: single_lock's ticks policy wants at least 1 tick");
  }
  for (unsigned i = 0; i < worker_count_; ++i) {
    auto t = std::make_unique<thread_state>();
    t->owner = this;
    t->index = i;
    threads_.push_back(std::move(t));
  }
}

single_lock::~single_lock() {
  std::lock_guard queue(queue_mutex_);  // a schedule() from another thread finishes first
  std::lock_guard idle(park_->lot.mutex());
}

single_lock_stats single_lock::stats() const noexcept {
  std::lock_guard lock(gil_mutex_);
  single_lock_stats s = gil_stats_;
  s.tasks_run = tasks_run_.load(std::memory_order_relaxed);
  return s;
}

void single_lock::collect_metrics(runtime_metrics& m) const noexcept {
  m.tasks_spawned = tasks_spawned();
  m.tasks_alive = live_tasks();
  m.single_lock = stats();
  for (std::size_t i = 0; i < threads_.size() && i < m.per_worker.size(); ++i) {
    const thread_state& t = *threads_[i];
    worker_metrics& w = m.per_worker[i];
    w.tasks_run = t.tasks_run.load(std::memory_order_relaxed);
    w.parks = t.parks.load(std::memory_order_relaxed);
    w.lock_acquisitions = t.acquisitions.load(std::memory_order_relaxed);
    w.handovers = t.handovers.load(std::memory_order_relaxed);
    std::lock_guard lock(park_->lot.mutex());  // the rings are closed under it after a run
    if (t.reactor) {
      const io::reactor_stats r = t.reactor->stats();
      w.polls = r.enter_calls;
      w.submissions = r.submissions;
      w.completions = r.completions;
      w.timers_fired = r.timers_fired;
    }
  }
}

// ---- the global lock ------------------------------------------------------------------------

void single_lock::take_lock(thread_state& t) {
  std::unique_lock lock(gil_mutex_);
  if (gil_locked_) {
    const auto start = std::chrono::steady_clock::now();
    while (gil_locked_) {
      if (policy_ == gil_policy::interval) {
        // Like CPython's take_gil: after an interval with no switch, ask the holder to drop it.
        const std::uint64_t switches_before = gil_switch_number_;
        const bool timed_out =
            gil_released_.wait_for(lock, switch_interval_) == std::cv_status::timeout;
        if (timed_out && gil_locked_ && gil_switch_number_ == switches_before && !waiter_request_) {
          waiter_request_ = true;
          drop_request_.store(true, std::memory_order_relaxed);
          ++gil_stats_.drop_requests;
        }
      } else {
        gil_released_.wait(lock);
      }
    }
    gil_stats_.lock_wait += std::chrono::steady_clock::now() - start;
  }
  gil_locked_ = true;
  gil_held_.store(true, std::memory_order_relaxed);
  gil_holder_ = &t;
  t.holds_lock = true;
  ++gil_stats_.acquisitions;
  gil_epoch_.store(gil_stats_.acquisitions, std::memory_order_relaxed);
  if (gil_last_holder_ != &t) {
    gil_last_holder_ = &t;
    ++gil_switch_number_;
    ++gil_stats_.switches;
  }
  // The request was addressed to the previous holder; a thread still waiting asks again after
  // another interval. A poll the watcher asked of this thread while it waited for the lock
  // (stuck in a task, at a check point or in blocking()) is served at its next check point.
  waiter_request_ = false;
  drop_request_.store(t.poll_wanted, std::memory_order_relaxed);
  gil_switched_.notify_all();
  lock.unlock();
  thread_state::bump(t.acquisitions);
  if (detail::trace_buffer* tb = detail::tls_trace) [[unlikely]]
    tb->lock_start = detail::trace_now();
  if (worker_count_ > 1) {
    // Someone holds the lock now: if threads are parked, one of them watches (see park()).
    // Pairs with the fence in park(): either it sees the lock held, or we see it asleep.
    parking::store_load_fence();
    if (watcher_.load(std::memory_order_seq_cst) == nullptr && park_->lot.sleeping() != 0) {
      recruit_watcher();
    }
  }
}

void single_lock::drop_lock(thread_state& t, drop_kind kind) {
  if (detail::trace_buffer* tb = detail::tls_trace) [[unlikely]] {
    // The span ends before the lock is released: spans of two threads never overlap.
    if (tb->lock_start >= 0) tb->span("lock", tb->lock_start, detail::trace_now(), 0);
    tb->lock_start = -1;
    if (kind != drop_kind::plain) tb->instant("handover", detail::trace_now());
  }
  if (kind != drop_kind::plain) thread_state::bump(t.handovers);
  std::unique_lock lock(gil_mutex_);
  t.holds_lock = false;
  gil_locked_ = false;
  gil_held_.store(false, std::memory_order_relaxed);
  gil_holder_ = nullptr;
  gil_released_.notify_one();
  auto switched = [&] {
    return gil_last_holder_ != &t || stopping_.load(std::memory_order_relaxed);
  };
  if (kind == drop_kind::forced) {
    // CPython's FORCE_SWITCHING: wait until the thread that asked has taken the lock, or this
    // thread would usually take it straight back.
    ++gil_stats_.forced_switches;
    gil_switched_.wait(lock, switched);
  } else if (kind == drop_kind::hand_over) {
    // Tasks this thread's ring made ready: a thread was woken for them. Nobody asked for the
    // lock yet, so the wait is bounded (the woken thread may be busy in blocking()).
    ++gil_stats_.io_handoffs;
    gil_switched_.wait_for(lock, switch_interval_, switched);
  }
}

void single_lock::check_point() {
  auto* t = static_cast<thread_state*>(tls_thread);
  // Only the holder hands the lock over: check() may also run where this thread does not hold
  // it (inside weft::blocking, or in a stop callback run while the thread waits in its ring),
  // or inside its own reactor's poll (a stop callback run by a timer), where it does nothing.
  if (t == nullptr || !t->holds_lock || t->in_poll) return;
  single_lock& self = *t->owner;
  if (self.policy_ == gil_policy::interval) {
    if (!self.drop_request_.load(std::memory_order_relaxed)) return;
    bool waiter = false;
    bool poll = false;
    {
      std::lock_guard lock(self.gil_mutex_);
      waiter = self.waiter_request_;
      poll = std::exchange(t->poll_wanted, false);
      if (!waiter) self.drop_request_.store(false, std::memory_order_relaxed);
    }
    self.serve_request(*t, waiter, poll);
    return;
  }
  // The ticks policy: called at every check point.
  if (++t->ticks < self.ticks_) [[likely]]
    return;
  t->ticks = 0;
  bool poll = false;
  {
    std::lock_guard lock(self.gil_mutex_);
    ++self.gil_stats_.releases_at_check;
    poll = std::exchange(t->poll_wanted, false);
  }
  const bool made_ready = poll && self.poll_at_check(*t);
  self.drop_lock(*t, made_ready ? drop_kind::hand_over : drop_kind::plain);
  self.take_lock(*t);
}

void single_lock::serve_request(thread_state& t, bool waiter, bool poll) {
  // The ring first: completions on it are reaped (their tasks queued) before the lock goes,
  // whoever takes it.
  // A forced switch polls too: it costs little beside the switch, and the thread that takes
  // the lock runs what the ring held.
  const bool made_ready = (poll || waiter) && poll_at_check(t);
  if (waiter) {
    drop_lock(t, drop_kind::forced);
  } else if (made_ready) {
    drop_lock(t, drop_kind::hand_over);
  } else {
    return;  // nothing came in and nobody waits: keep running
  }
  take_lock(t);
}

bool single_lock::poll_at_check(thread_state& t) {
  // Completion callbacks only store results and schedule handles (no task runs inside the
  // reap), so polling from the middle of a task is safe; `in_poll` keeps a check() run by a
  // callback (a stop callback, through a timer) from polling again inside.
  try {
    poll_ring(t, /*block=*/false);
  } catch (...) {
    // The loop's next poll reports it; check() does not throw.
  }
  return ready_size_.load(std::memory_order_acquire) != 0;
}

void single_lock::poll_ring(thread_state& t, bool block, clock::time_point limit, bool run_timers) {
  struct in_poll_scope {
    thread_state& t;
    explicit in_poll_scope(thread_state& s) : t(s) { t.in_poll = true; }
    ~in_poll_scope() { t.in_poll = false; }
  } scope{t};
  t.reactor->poll(block, limit, run_timers);
}

void single_lock::blocking_release() {
  auto* t = static_cast<thread_state*>(tls_thread);
  if (t == nullptr) return;
  // Nested blocking() calls, or one made where the lock is not held, leave it alone.
  if (t->blocking_depth++ != 0 || !t->holds_lock) return;
  t->released_for_blocking = true;
  single_lock& self = *t->owner;
  self.drop_lock(*t, drop_kind::plain);
  // Tasks may be waiting while a thread that was woken for them runs this blocking call: wake
  // another thread for them (otherwise they wait for the call, which may wait for them).
  if (self.ready_size_.load(std::memory_order_acquire) != 0) self.wake_one();
}

void single_lock::blocking_reacquire() {
  auto* t = static_cast<thread_state*>(tls_thread);
  if (t == nullptr) return;
  if (--t->blocking_depth != 0 || !t->released_for_blocking) return;
  t->released_for_blocking = false;
  t->owner->take_lock(*t);
}

// ---- scheduling, timers, live set -------------------------------------------------------

void single_lock::schedule(std::coroutine_handle<> h) noexcept {
  auto* self = static_cast<thread_state*>(tls_thread);
  std::unique_lock lock(queue_mutex_);
  try {
    ready_->push(h);
  } catch (...) {
    run_queue_out_of_memory("in the run queue");
  }
  ready_size_.store(ready_->size(), std::memory_order_release);
  // A thread of this executor may let go of the lock first: the executor outlives its threads.
  // Another thread wakes a sleeper while still holding it: once the handle is visible, the task
  // may finish, run() return and the executor be destroyed, and the destructor takes this lock.
  if (self != nullptr && self->owner == this) lock.unlock();
  wake_one();
}

void single_lock::wake_one() noexcept {
  // Pairs with the fence in the parking code: either we see a sleeper, or it sees the task.
  parking::store_load_fence();
  parking::parking_lot& lot = park_->lot;
  if (lot.sleeping() == 0 || waking_.load(std::memory_order_seq_cst) != 0) {
    return;  // nobody sleeps, or a woken thread has yet to look at the queue
  }
  auto* self = static_cast<thread_state*>(tls_thread);
  if (self != nullptr && self->owner == this && self->parked_poll) {
    return;  // this thread leaves its ring next and takes the task itself
  }
  std::lock_guard lock(lot.mutex());
  if (lot.empty_locked() || waking_.load(std::memory_order_relaxed) != 0) return;
  parking::park_slot* sleeper = lot.take_latest_locked(nullptr);
  waking_.fetch_add(1, std::memory_order_seq_cst);
  sleeper->reactor->wake();  // under the lock: its ring outlives every wake (see run_threads)
}

void single_lock::wake_main_thread() noexcept {
  park_->lot.wake(*threads_[0]);
}

void single_lock::add_timer(detail::timer_node& node) {
  auto* t = static_cast<thread_state*>(tls_thread);
  parking::add_timer(t != nullptr && t->owner == this ? t : nullptr, node,
                     "the single-lock executor's threads");
}

void single_lock::cancel_timer(detail::timer_node& node) noexcept {
  parking::cancel_timer(node);
}

// ---- the thread loop --------------------------------------------------------------------------

void single_lock::thread_loop(thread_state& t) {
  static constexpr detail::blocking_hooks hooks{&single_lock::blocking_release,
                                                &single_lock::blocking_reacquire};
  const parking::thread_binding binding(
      &single_lock::set_current, this, *t.reactor, tls_thread, &t,
      detail::check_state{policy_ == gil_policy::ticks ? &detail::check_always : &drop_request_,
                          &single_lock::check_point},
      &hooks);
  // A paused run's clock is this thread's while it runs (restored when the loop ends).
  struct restore_clock {
    detail::paused_clock* previous;
    ~restore_clock() { detail::tls_paused_clock = previous; }
  } restore_clock_on_exit{detail::tls_paused_clock};
  if (paused_on_) paused_.now = clock::now();  // a paused run starts at the real time
  detail::tls_paused_clock = paused_on_ ? &paused_ : nullptr;
  t.reactor->attach_to_this_thread();
  detail::trace_thread_scope trace_scope(trace_session(), t.index);

  auto pop = [this]() -> std::coroutine_handle<> {
    if (ready_size_.load(std::memory_order_acquire) == 0) return {};
    std::lock_guard lock(queue_mutex_);
    if (ready_->empty()) return {};
    std::coroutine_handle<> h =
        order_->on() ? ready_->pop_at(order_->pick(ready_->size())) : ready_->pop();
    ready_size_.store(ready_->size(), std::memory_order_release);
    return h;
  };
  auto finished = [&] {
    return t.index == 0 ? main_and_tasks_done() : stopping_.load(std::memory_order_acquire);
  };

  take_lock(t);
  detail::trampoline_scope trampoline;
  std::uint32_t tick = 0;
  while (!finished()) {
    if (t.woken) {  // looking at the queue now: another thread may be woken for the next task
      t.woken = false;
      waking_.fetch_sub(1, std::memory_order_seq_cst);
    }
    std::coroutine_handle<> h = pop();
    if (!h) {
      poll_ring(t, /*block=*/false);
      h = pop();
    }
    if (h) {
      t.bump_task_seq();  // odd: running a task (the watcher looks)
      if (detail::trace_buffer* tb = detail::tls_trace) [[unlikely]] {
        detail::traced_resume(*tb, [&] { detail::resume_in_trampoline(trampoline.slot(), h); });
      } else {
        detail::resume_in_trampoline(trampoline.slot(), h);
      }
      t.bump_task_seq();
      thread_state::bump(t.tasks_run);
      tasks_run_.fetch_add(1, std::memory_order_relaxed);
      // Between tasks too: a waiting thread gets the lock within an interval.
      if (drop_request_.load(std::memory_order_relaxed)) check_point();
      if (++tick % event_interval == 0) poll_ring(t, /*block=*/false);
      continue;
    }
    // Nothing to run: drop the lock and park in the ring (I/O, timers, a wake-up).
    drop_lock(t, drop_kind::plain);
    park(t);
    take_lock(t);
    if (t.reactor->timers_due()) poll_ring(t, /*block=*/false);  // held back while parked
  }
  if (t.woken) {
    t.woken = false;
    waking_.fetch_sub(1, std::memory_order_seq_cst);
  }
  drop_lock(t, drop_kind::plain);
}

// ---- parking and the watcher (see ARCHITECTURE.md, "single-lock") ---------------------------

void single_lock::park(thread_state& t) {
  for (;;) {
    bool registered = false;
    {
      std::lock_guard lock(park_->lot.mutex());
      if (!stopping_.load(std::memory_order_acquire)) {
        park_->lot.enter_locked(t);
        registered = true;
      } else if (watcher_.load(std::memory_order_relaxed) == &t) {
        watcher_.store(nullptr, std::memory_order_seq_cst);
      }
    }
    if (!registered) return;
    parking::store_load_fence();
    // Thread 0 must not sleep through the end of main; once the shutdown has begun it waits
    // like the others (the last task to finish wakes it).
    const bool go = ready_size_.load(std::memory_order_seq_cst) != 0 ||
                    (t.index == 0 && main_thread_must_not_block());
    bool watching = false;
    bool quiet = false;  // a look found nothing to watch any more
    if (!go) {
      watching = start_watching(t);
      t.parked_poll = true;
      thread_state::bump(t.parks);
      const std::int64_t park_start = detail::tls_trace != nullptr ? detail::trace_now() : 0;
      // Without the lock, timers stay armed: their callbacks (with_timeout's runs the user's
      // stop callbacks) run once this thread has taken the lock and polls again.
      // Thread 0 also wakes when the shutdown timeout passes.
      const clock::time_point limit = t.index == 0 ? shutdown_deadline() : clock::time_point::max();
      poll_ring(t, /*block=*/true, watching ? std::min(park_->period.until, limit) : limit,
                /*run_timers=*/false);
      if (detail::trace_buffer* tb = detail::tls_trace) [[unlikely]]
        tb->span("park", park_start, detail::trace_now(), 0);
      t.parked_poll = false;
      if (watching && park_->period.over()) quiet = !watch(t);
    }
    bool again = false;
    {
      std::lock_guard lock(park_->lot.mutex());
      if (t.sleeping) {
        park_->lot.leave_locked(t);
        // The watcher woke by itself (the end of a period, a recruit, I/O that made nothing
        // ready): it stays out of the lock and parks again.
        // A due timer sends it to the lock, where it runs.
        again = !go && watcher_.load(std::memory_order_relaxed) == &t &&
                ready_size_.load(std::memory_order_seq_cst) == 0 && !t.reactor->timers_due() &&
                !(t.index == 0 && clock::now() >= shutdown_deadline());
      } else {
        t.woken = true;  // wake_one counted us in waking_
      }
      if ((!again || quiet) && watcher_.load(std::memory_order_relaxed) == &t) {
        // Off to the lock (whoever holds it next recruits a watcher if threads sleep), or
        // nothing to watch.
        watcher_.store(nullptr, std::memory_order_seq_cst);
      }
    }
    if (!again) return;
  }
}

bool single_lock::start_watching(thread_state& t) {
  if (worker_count_ < 2) return false;
  if (watcher_.load(std::memory_order_seq_cst) != &t) {
    // While the lock is held, a parked thread watches. Pairs with the fence in take_lock
    // (after our registration and fence): either the new holder sees us asleep and recruits a
    // watcher, or we see the lock held here.
    if (!gil_held_.load(std::memory_order_seq_cst) ||
        watcher_.load(std::memory_order_seq_cst) != nullptr) {
      return false;
    }
    std::lock_guard lock(park_->lot.mutex());
    if (watcher_.load(std::memory_order_relaxed) != nullptr || !t.sleeping) return false;
    watcher_.store(&t, std::memory_order_seq_cst);
  }
  parking::watch_period& period = park_->period;
  if (period.unset()) period.start(watch_period(), gil_epoch_.load(std::memory_order_relaxed));
  return true;
}

clock::duration single_lock::watch_period() const noexcept {
  // The switch interval, but never under 1 ms: an interval of 0 (allowed: switch at every
  // check point) or a few microseconds would make the watcher spin on its ring.
  return std::max<clock::duration>(std::chrono::duration_cast<clock::duration>(switch_interval_),
                                   std::chrono::milliseconds(1));
}

bool single_lock::watch(thread_state& t) {
  parking::watch_period& period = park_->period;
  bool keep = false;
  {
    std::lock_guard lock(gil_mutex_);
    // One task resumption that has lasted since the last look: its ring has not been polled
    // since, and only its thread can poll it.
    parking::watch_others(threads_, t, [&](thread_state& u) {
      if (u.poll_wanted) return;
      u.poll_wanted = true;
      ++gil_stats_.poll_requests;
      // The interval policy looks at poll_wanted only when the drop request is up; the ticks
      // policy looks at it at every release, and nothing would take its request down.
      if (gil_holder_ == &u && policy_ == gil_policy::interval) {
        drop_request_.store(true, std::memory_order_relaxed);
      }
      // Otherwise it waits for the lock (in a check point or after blocking()): take_lock
      // raises the request for it.
    });
    // Keep watching while the lock is in use; an executor idle for a whole period stops.
    keep = gil_locked_ || gil_stats_.acquisitions != period.mark;
    if (keep) period.mark = gil_stats_.acquisitions;  // under the lock: no acquisition missed
  }
  period.renew(keep, watch_period());
  return keep;
}

void single_lock::recruit_watcher() noexcept {
  std::lock_guard lock(park_->lot.mutex());
  if (watcher_.load(std::memory_order_relaxed) != nullptr || park_->lot.empty_locked()) return;
  auto* s = static_cast<thread_state*>(park_->lot.latest_locked(nullptr));
  watcher_.store(s, std::memory_order_seq_cst);
  s->reactor->wake();  // it wakes with nothing to run and parks again, watching
}

void single_lock::run_wrapped(task<void> wrapper) {
  parking::parking_lot::open_rings(threads_, ring_entries_);  // first: nothing queued yet
  spawn_on(*this, std::move(wrapper)).detach();
  run_threads();
}

void single_lock::run_threads() {
  const std::exception_ptr thread_error = run_on_threads(
      worker_count_, "single-lock thread", [this](unsigned i) { thread_loop(*threads_[i]); },
      [this] {
        park_->lot.stop(stopping_);
        std::lock_guard lock(gil_mutex_);  // a thread in a forced drop re-checks stopping_
        gil_switched_.notify_all();
      });
  if (abandoned()) return;  // threads may still run: everything stays as it is, for ever
  park_->lot.close_rings(threads_, [](thread_state&) {});
  waking_.store(0, std::memory_order_relaxed);
  watcher_.store(nullptr, std::memory_order_relaxed);
  park_->period.reset();
  for (auto& t : threads_) t->poll_wanted = false;
  reset_after_run();
  if (thread_error) std::rethrow_exception(thread_error);
}

}  // namespace weft::sched
