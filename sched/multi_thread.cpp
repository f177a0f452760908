#include <weft/sched/multi_thread.hpp>

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
#include "steal_queue.hpp"

namespace weft::sched {

namespace {
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

[[noreturn]] void out_of_memory(const char* where) noexcept {
  std::fprintf(stderr, "weft: out of memory %s; aborting\n", where);
  std::terminate();
}
}  // namespace

/// One worker: its ring and parking slot, its queues and its counters. Everything but the
/// queue's consumer side, `reactor.wake()` and the counters (read by stats()) belongs to the
/// worker's thread.
struct multi_thread::worker : parking::park_slot {
  multi_thread* owner = nullptr;
  steal_queue queue;
  // With one worker only: what overflows `queue`, in FIFO order behind it. Nobody could steal
  // it, so it need not be shared (see push_local); with more workers it stays empty.
  run_queue spill{16};
  std::coroutine_handle<> lifo;  // the task woken last by the running task; runs next
  std::uint32_t lifo_streak = 0;
  std::uint32_t tick = 0;
  bool running_task = false;  // a task is being resumed (wake-ups go to the LIFO slot)
  bool notify_due = false;    // the running task queued work another worker could take
  bool woke_early = false;    // ...and has already notified once for a backlog of it
  bool searching = false;     // counted in owner->searching_
  bool watcher = false;       // park_->watcher == this, as of its last look under the lot's lock
  std::uint64_t rng = 0;

  struct counters {
    std::atomic<std::uint64_t> tasks_run{0}, lifo_runs{0}, steals{0}, stolen{0}, injected{0},
        overflows{0}, parks{0}, wakeups{0}, poll_requests{0}, stall_polls{0}, inject_locks{0};
  } stats;

  // On a line of its own: check() reads `poll_request` at every call on this worker, and
  // thieves write the queue's head above.
  alignas(64) std::atomic<bool> poll_request{false};  // set by the watcher, read by check()

  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);  // one writer
  }
  std::uint32_t next_random() noexcept {  // xorshift64: picks the first victim of a steal
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return static_cast<std::uint32_t>(rng);
  }
};

/// The parking state: the sleepers list, and the stall watcher, the parked worker that bounds
/// its wait to watch the others (guarded by the lot's mutex).
struct multi_thread::park_state {
  explicit park_state(unsigned workers) : lot(workers) {}
  parking::parking_lot lot;
  worker* watcher = nullptr;
  parking::watch_period period;  // mark: the others' task_seq summed at the last look
};

namespace {
// The worker the calling thread runs, if any (of whichever multi_thread executor).
thread_local void* tls_worker = nullptr;
}  // namespace

multi_thread::multi_thread(multi_thread_options options)
    : worker_count_(options.workers != 0 ? options.workers
                                         : std::max(1u, std::thread::hardware_concurrency())),
      ring_entries_(options.ring_entries),
      inject_(std::make_unique<run_queue>()),
      park_(std::make_unique<park_state>(worker_count_)) {
  if (worker_count_ > 1024) {
    throw std::invalid_argument("weft: multi_thread wants 1 to 1024 workers, not " +
                                std::to_string(worker_count_));
  }
  workers_.reserve(worker_count_);
  for (unsigned i = 0; i < worker_count_; ++i) {
    auto w = std::make_unique<worker>();
    w->owner = this;
    w->index = i;
    w->rng = 0x9E3779B97F4A7C15ull * (i + 1);
    workers_.push_back(std::move(w));
  }
}

multi_thread::~multi_thread() {
  // Another thread may still be inside schedule() (it pushed and is waking a worker).
  std::lock_guard inject(inject_mutex_);
  std::lock_guard idle(park_->lot.mutex());
}

multi_thread_stats multi_thread::stats() const noexcept {
  multi_thread_stats s;
  for (const auto& w : workers_) {
    s.tasks_run += w->stats.tasks_run.load(std::memory_order_relaxed);
    s.lifo_runs += w->stats.lifo_runs.load(std::memory_order_relaxed);
    s.steals += w->stats.steals.load(std::memory_order_relaxed);
    s.stolen += w->stats.stolen.load(std::memory_order_relaxed);
    s.injected += w->stats.injected.load(std::memory_order_relaxed);
    s.overflows += w->stats.overflows.load(std::memory_order_relaxed);
    s.parks += w->stats.parks.load(std::memory_order_relaxed);
    s.wakeups += w->stats.wakeups.load(std::memory_order_relaxed);
    s.poll_requests += w->stats.poll_requests.load(std::memory_order_relaxed);
    s.stall_polls += w->stats.stall_polls.load(std::memory_order_relaxed);
    s.inject_locks += w->stats.inject_locks.load(std::memory_order_relaxed);
  }
  return s;
}

void multi_thread::collect_metrics(runtime_metrics& m) const noexcept {
  m.tasks_spawned = tasks_spawned();
  m.tasks_alive = live_tasks();
  m.multi_thread = stats();
  std::lock_guard lock(park_->lot.mutex());  // the rings are closed under it after a run
  for (std::size_t i = 0; i < workers_.size() && i < m.per_worker.size(); ++i) {
    const worker& w = *workers_[i];
    worker_metrics& out = m.per_worker[i];
    out.tasks_run = w.stats.tasks_run.load(std::memory_order_relaxed);
    out.steals = w.stats.steals.load(std::memory_order_relaxed);
    out.parks = w.stats.parks.load(std::memory_order_relaxed);
    if (w.reactor) {
      const io::reactor_stats r = w.reactor->stats();
      out.polls = r.enter_calls;
      out.submissions = r.submissions;
      out.completions = r.completions;
      out.timers_fired = r.timers_fired;
    }
  }
}

// ---- scheduling --------------------------------------------------------------------------

void multi_thread::schedule(std::coroutine_handle<> h) noexcept {
  auto* w = static_cast<worker*>(tls_worker);
  if (w != nullptr && w->owner == this) [[likely]] {
    if (w->running_task) {
      // A wake-up by the running task: run it next on this core. The task it displaces goes
      // to the queue, where an idle worker may steal it.
      std::coroutine_handle<> previous = std::exchange(w->lifo, h);
      if (!previous) return;
      h = previous;
    }
    push_local(*w, h);
    notify_after_task(*w);
    return;
  }
  push_inject_and_notify(h);
}

void multi_thread::defer(std::coroutine_handle<> h) noexcept {
  auto* w = static_cast<worker*>(tls_worker);
  if (w != nullptr && w->owner == this) [[likely]] {
    // Behind every ready task of this worker. A task that yields alone must not bounce
    // between workers at the price of a wake-up each time, so only when other tasks wait here
    // too is an idle worker told (it may take them while this one keeps yielding).
    push_local(*w, h);
    if (w->queue.size_hint() > 1 || w->lifo) notify_after_task(*w);
    return;
  }
  push_inject_and_notify(h);
}

void multi_thread::start(std::coroutine_handle<> h) noexcept {
  auto* w = static_cast<worker*>(tls_worker);
  if (w != nullptr && w->owner == this) [[likely]] {
    push_local(*w, h);
    notify_after_task(*w);
    return;
  }
  push_inject_and_notify(h);
}

void multi_thread::notify_after_task(worker& w) noexcept {
  // Pushed by the running task: one notify when it gives the worker back, not one per push.
  // A burst of spawns woke a sleeper every few spawns (an eventfd write on the spawner's path,
  // and on a busy machine the woken thread took the spawner's CPU), for it to steal a task or
  // three that the spawner would have run as fast. A task that runs on after queuing work
  // still gets help: once per resumption at once, when notify_backlog tasks wait (a thief
  // then steals half of them, and stays awake while it keeps finding more), and otherwise from
  // the parked watcher, which steals after its next look (stall_interval at most).
  if (!w.running_task) {
    notify();
  } else if (!w.woke_early && w.queue.size_hint() >= notify_backlog) {
    w.woke_early = true;  // once per resumption: a thief that keeps up needs no more
    notify();
  } else {
    w.notify_due = true;
  }
}

void multi_thread::push_local(worker& w, std::coroutine_handle<> h) noexcept {
  if (w.spill.empty() && w.queue.try_push(h)) [[likely]]
    return;
  if (worker_count_ == 1) {
    // No other worker to take the overflow: keep it private, behind the local queue (FIFO),
    // instead of paying the inject queue's lock on the way in and out.
    if (w.spill.empty()) worker::bump(w.stats.overflows);
    try {
      w.spill.push(h);
    } catch (...) {
      out_of_memory("in a worker's run queue");
    }
    return;
  }
  // Full: move the older half and `h` to the inject queue in one batch (Tokio does the same),
  // so a burst of spawns costs one lock per 128 tasks and other workers can take them.
  std::array<std::coroutine_handle<>, steal_queue::capacity / 2> batch;
  const std::uint32_t n = w.queue.claim_half(batch);
  worker::bump(w.stats.overflows);
  std::lock_guard lock(inject_mutex_);
  try {
    for (std::uint32_t i = 0; i < n; ++i) inject_->push(batch[i]);
    inject_->push(h);
  } catch (...) {
    out_of_memory("in the inject queue");
  }
  inject_size_.store(inject_->size(), std::memory_order_release);
}

void multi_thread::push_inject_and_notify(std::coroutine_handle<> h) noexcept {
  // From a thread that is not a worker. The wake-up happens under the inject lock: once the
  // handle is visible the task may finish, block_on return and the executor be destroyed, and
  // the destructor takes this lock first.
  std::lock_guard lock(inject_mutex_);
  try {
    inject_->push(h);
  } catch (...) {
    out_of_memory("while scheduling a task from another thread");
  }
  inject_size_.store(inject_->size(), std::memory_order_release);
  notify_parked();
}

std::coroutine_handle<> multi_thread::pop_inject() noexcept {
  if (inject_size_.load(std::memory_order_acquire) == 0) return {};
  std::lock_guard lock(inject_mutex_);
  if (inject_->empty()) return {};
  std::coroutine_handle<> h = inject_->pop();
  inject_size_.store(inject_->size(), std::memory_order_release);
  return h;
}

std::coroutine_handle<> multi_thread::pop_inject_batch(worker& w) noexcept {
  if (inject_size_.load(std::memory_order_acquire) == 0) return {};
  // Called with an empty local queue. Takes this worker's share of the inject queue (Go's
  // globrunqget: size / workers + 1, at most half a local queue) under one lock, so a burst
  // that overflowed a local queue comes back at one lock per batch, not one per task. The
  // batch stays stealable in the local queue.
  std::lock_guard lock(inject_mutex_);
  if (inject_->empty()) return {};
  const std::size_t share = inject_->size() / worker_count_ + 1;
  // Only the owner pushes to its queue, so the room seen here cannot shrink under us.
  const std::size_t room = steal_queue::capacity - w.queue.size_hint();
  const std::size_t n =
      std::min({share, room + 1, inject_->size(), std::size_t{steal_queue::capacity / 2}});
  std::coroutine_handle<> h = inject_->pop();
  for (std::size_t i = 1; i < n; ++i) (void)w.queue.try_push(inject_->pop());
  inject_size_.store(inject_->size(), std::memory_order_release);
  worker::bump(w.stats.injected, n);
  worker::bump(w.stats.inject_locks);
  return h;
}

// ---- timers and the live set ------------------------------------------------------------

void multi_thread::add_timer(detail::timer_node& node) {
  auto* w = static_cast<worker*>(tls_worker);
  parking::add_timer(w != nullptr && w->owner == this ? w : nullptr, node,
                     "the multi-thread executor's workers");
}

void multi_thread::cancel_timer(detail::timer_node& node) noexcept {
  // The heap that holds the node may belong to another worker: its lock makes that safe.
  parking::cancel_timer(node);
}

// ---- parking (see ARCHITECTURE.md, "Parking") -------------------------------------------

void multi_thread::notify_parked() noexcept {
  // Pairs with the fence in park(): either we see the sleeper, or it sees our task.
  parking::store_load_fence();
  parking::parking_lot& lot = park_->lot;
  if (searching_.load(std::memory_order_seq_cst) != 0 || lot.sleeping() == 0) {
    return;  // a searching worker will find the task, or nobody sleeps
  }
  std::lock_guard lock(lot.mutex());
  if (searching_.load(std::memory_order_relaxed) != 0 || lot.empty_locked()) return;
  // Not the calling worker itself: it is about to run what it scheduled anyway.
  auto* self = static_cast<worker*>(tls_worker);
  parking::park_slot* sleeper = lot.take_latest_locked(self);
  if (sleeper == nullptr) return;
  searching_.fetch_add(1, std::memory_order_seq_cst);  // it wakes up searching
  if (self != nullptr && self->owner == this) worker::bump(self->stats.wakeups);
  // Under the lock: a worker leaves its ring only after taking this lock (park, stop), so the
  // eventfd cannot be closed under our feet.
  sleeper->reactor->wake();
}

bool multi_thread::transition_to_searching(worker& w) noexcept {
  if (w.searching) return true;
  // At most half of the workers search at once: more would only fight over the same queues.
  const int searching = searching_.load(std::memory_order_relaxed);
  const int awake = static_cast<int>(worker_count_) - park_->lot.sleeping_relaxed();
  if (2 * searching >= awake && searching > 0) return false;
  searching_.fetch_add(1, std::memory_order_seq_cst);
  w.searching = true;
  return true;
}

void multi_thread::transition_from_searching(worker& w) noexcept {
  if (!w.searching) return;
  w.searching = false;
  // The last searcher to find work wakes another worker: there may be more work where it
  // found this (notify_parked skipped waking anyone while it searched).
  if (searching_.fetch_sub(1, std::memory_order_seq_cst) == 1) notify_parked();
}

bool multi_thread::work_visible() const noexcept {
  if (inject_size_.load(std::memory_order_seq_cst) != 0) return true;
  for (const auto& other : workers_) {
    if (!other->queue.empty_hint()) return true;
  }
  return false;
}

void multi_thread::park(worker& w) {
  park_state& pk = *park_;
  bool watching = false;
  {
    std::lock_guard lock(pk.lot.mutex());
    if (stopping_.load(std::memory_order_acquire)) return;
    const int asleep = pk.lot.enter_locked(w);
    // While another worker is awake (it may be running a long task), one parked worker
    // watches it: it bounds its wait by stall_interval (see watch()).
    if (pk.watcher == nullptr && asleep < static_cast<int>(worker_count_)) pk.watcher = &w;
    watching = pk.watcher == &w;
    w.watcher = watching;
    if (watching && pk.period.unset()) pk.period.start(stall_interval, others_task_seq(w));
  }
  if (w.searching) {
    w.searching = false;
    searching_.fetch_sub(1, std::memory_order_seq_cst);
  }
  // Pairs with the fence in notify_parked: a task pushed before it saw us asleep is seen here.
  parking::store_load_fence();
  // Worker 0 must not sleep through the end of main; once the shutdown has begun it waits like
  // the others (the last task to finish wakes it).
  const bool main_ending = w.index == 0 && main_thread_must_not_block();
  const bool saw_work = work_visible();
  bool go = saw_work || main_ending;
  bool quiet = false;  // a look found nothing running: nobody needs watching
  if (!go) {
    worker::bump(w.stats.parks);
    const std::int64_t park_start = detail::tls_trace != nullptr ? detail::trace_now() : 0;
    // I/O, a timer, or a wake-up; the watcher also wakes at the end of its period.
    // Worker 0 also wakes when the shutdown timeout passes.
    const clock::time_point limit = w.index == 0 ? shutdown_deadline() : clock::time_point::max();
    w.reactor->poll(/*block=*/true, watching ? std::min(pk.period.until, limit) : limit);
    if (detail::trace_buffer* tb = detail::tls_trace) [[unlikely]]
      tb->span("park", park_start, detail::trace_now(), 0);
    if (watching && pk.period.over()) quiet = !watch(w);
  }
  std::lock_guard lock(pk.lot.mutex());
  // The role ends with a quiet look, or when its worker is about to run a task (resign_watch).
  if (pk.watcher == &w && quiet) pk.watcher = nullptr;
  // A worker leaves its ring, maybe to run tasks: if others sleep, one of them watches.
  if (pk.watcher == nullptr && !quiet) recruit_watcher_locked(w);
  w.watcher = pk.watcher == &w;
  if (w.sleeping) {  // woke on its own (I/O, timer) or saw work: leave the list itself
    pk.lot.leave_locked(w);
    if (saw_work) {
      // Searching again: notifiers skipped waking anyone while it was counted as searching,
      // so when it finds the work it must pass the baton (the spin model found a task left
      // waiting behind a busy one while a worker slept, without this).
      w.searching = true;
      searching_.fetch_add(1, std::memory_order_seq_cst);
    }
  } else {
    w.searching = true;  // woken by notify_parked, which counted it as searching
  }
}

void multi_thread::recruit_watcher_locked(worker& w) noexcept {
  // The most recent sleeper but the caller. It stays on the list and wakes as it would for its
  // own I/O, so the parking argument is untouched.
  if (auto* s = static_cast<worker*>(park_->lot.latest_locked(&w))) {
    park_->watcher = s;
    s->reactor->wake();  // under the lock, as in notify_parked
  }
}

void multi_thread::resign_watch(worker& w) noexcept {
  // The watcher found a task to run: it watches nobody while it runs it (it could run for
  // long itself), so another sleeper takes the role.
  std::lock_guard lock(park_->lot.mutex());
  w.watcher = false;
  if (park_->watcher != &w) return;
  park_->watcher = nullptr;
  recruit_watcher_locked(w);
}

std::uint64_t multi_thread::others_task_seq(const worker& w) const noexcept {
  std::uint64_t sum = 0;
  for (const auto& u : workers_) {
    if (u.get() != &w) sum += u->task_seq.load(std::memory_order_relaxed);
  }
  return sum;
}

bool multi_thread::watch(worker& w) noexcept {
  // One task resumption that has lasted a whole period: its worker has not polled its ring
  // since, and only that worker can.
  const bool busy = parking::watch_others(workers_, w, [&](worker& u) {
    if (u.poll_request.load(std::memory_order_relaxed)) return;
    u.poll_request.store(true, std::memory_order_relaxed);
    worker::bump(w.stats.poll_requests);
  });
  // Keep watching while tasks run; after a whole quiet period, stop (an idle executor sleeps).
  parking::watch_period& period = park_->period;
  const std::uint64_t sum = others_task_seq(w);
  const bool keep = busy || sum != period.mark;
  period.renew(keep, stall_interval);
  period.mark = sum;
  return keep;
}

void multi_thread::check_point() {
  auto* w = static_cast<worker*>(tls_worker);
  if (w == nullptr) return;
  w->poll_request.store(false, std::memory_order_relaxed);
  // Only from task code: not from a callback run inside a poll of this ring (running_task is
  // false in the loop's polls and in the one below, so this never nests).
  if (!w->running_task) return;
  multi_thread& self = *w->owner;
  // Wake-ups during this poll go to the stealable queue, not the LIFO slot (running_task
  // false), each with a notify, like the I/O wake-ups of the loop's own polls. The task in the
  // LIFO slot goes there too: this worker will not get to it soon.
  w->running_task = false;
  if (w->notify_due) {  // the task has kept its worker a whole stall_interval: announce now
    w->notify_due = false;
    self.notify();
  }
  if (w->lifo) {
    self.push_local(*w, std::exchange(w->lifo, {}));
    self.notify_parked();
  }
  try {
    w->reactor->poll(/*block=*/false);
  } catch (...) {
    // The loop's next poll reports it; check() does not throw.
  }
  w->running_task = true;
  worker::bump(w->stats.stall_polls);
}

void multi_thread::wake_main_thread() noexcept {
  park_->lot.wake(*workers_[0]);
}

// ---- the worker loop ----------------------------------------------------------------------

std::coroutine_handle<> multi_thread::next_task(worker& w) noexcept {
  // Every event_interval ticks, the inject queue first: tasks from outside are not starved by
  // a worker whose own queue never empties.
  if (w.tick % event_interval == 0) {
    if (auto h = pop_inject()) {
      worker::bump(w.stats.injected);
      worker::bump(w.stats.inject_locks);
      return h;
    }
  }
  if (w.lifo) {
    // The limit is for fairness to the tasks queued here. With none queued, demoting the task
    // would only pop it straight back, after waking an idle worker that finds nothing (or
    // steals it, splitting a ping-pong pair across threads at a wake-up per round trip).
    if (w.lifo_streak < lifo_limit || w.queue.empty_hint()) {
      if (w.lifo_streak < lifo_limit) ++w.lifo_streak;
      worker::bump(w.stats.lifo_runs);
      return std::exchange(w.lifo, {});
    }
    push_local(w, std::exchange(w.lifo, {}));  // its turn is over: behind the others
    notify();                                  // stealable now: an idle worker may take it
  }
  w.lifo_streak = 0;
  if (auto h = w.queue.pop()) return h;
  if (!w.spill.empty()) [[unlikely]]
    return refill_from_spill(w);
  return pop_inject_batch(w);
}

std::coroutine_handle<> multi_thread::refill_from_spill(worker& w) noexcept {
  // The local queue is empty: the oldest spilled tasks move back into it, so that pushes go to
  // it again once the spill is empty, and the order stays FIFO.
  std::coroutine_handle<> h = w.spill.pop();
  const std::size_t n = std::min(w.spill.size(), std::size_t{steal_queue::capacity});
  for (std::size_t i = 0; i < n; ++i) (void)w.queue.try_push(w.spill.pop());  // room for all
  return h;
}

std::coroutine_handle<> multi_thread::search(worker& w) noexcept {
  if (auto h = pop_inject_batch(w)) return h;
  const unsigned n = worker_count_;
  const unsigned start = n > 1 ? w.next_random() % n : 0;
  for (unsigned i = 0; i < n; ++i) {
    worker& victim = *workers_[(start + i) % n];
    if (&victim == &w) continue;
    const std::uint32_t before = w.queue.size_hint();
    if (auto h = victim.queue.steal_into(w.queue)) {
      worker::bump(w.stats.steals);
      worker::bump(w.stats.stolen, 1 + w.queue.size_hint() - before);
      detail::trace_instant("steal", victim.index);
      return h;
    }
  }
  return pop_inject_batch(w);
}

std::coroutine_handle<> multi_thread::spin_search(worker& w) noexcept {
  // A park and its wake-up cost a syscall on each side, the waker's on the critical path of
  // whatever it was doing (a burst of spawns paid one per few tasks). Work that shows up within
  // about that time is cheaper to wait for awake (Go's spinning threads). Only searchers spin
  // (at most half of the awake workers), for spin_time at most, and while one does, notifiers
  // wake nobody. Parking afterwards re-checks as always, so no wake-up is lost.
  if (worker_count_ == 1) return {};
  const clock::time_point until = clock::now() + spin_time;
  do {
    for (int i = 0; i < 32; ++i) cpu_relax();
    if (auto h = search(w)) return h;
  } while (clock::now() < until && !stopping_.load(std::memory_order_relaxed));
  return {};
}

void multi_thread::worker_loop(worker& w) {
  // check() reads this worker's flag: the same load as the constant it reads elsewhere.
  const parking::thread_binding binding(
      &multi_thread::set_current, this, *w.reactor, tls_worker, &w,
      detail::check_state{&w.poll_request, &multi_thread::check_point}, detail::blocking_hook);
  w.reactor->attach_to_this_thread();
  detail::trace_thread_scope trace_scope(trace_session(), w.index);

  const bool is_main_worker = w.index == 0;
  auto finished = [&] {
    return is_main_worker ? main_and_tasks_done() : stopping_.load(std::memory_order_acquire);
  };

  detail::trampoline_scope trampoline;
  while (!finished()) {
    std::coroutine_handle<> h = next_task(w);
    if (!h) {
      w.reactor->poll(/*block=*/false);  // completions may have made tasks ready
      h = next_task(w);
    }
    if (!h && transition_to_searching(w)) h = search(w);
    if (!h && w.searching) h = spin_search(w);
    if (!h) {
      park(w);
      continue;
    }
    transition_from_searching(w);
    if (w.watcher) [[unlikely]]
      resign_watch(w);
    w.running_task = true;
    w.woke_early = false;
    w.bump_task_seq();  // odd: running a task (the watcher looks)
    if (detail::trace_buffer* tb = detail::tls_trace) [[unlikely]] {
      detail::traced_resume(*tb, [&] { detail::resume_in_trampoline(trampoline.slot(), h); });
    } else {
      detail::resume_in_trampoline(trampoline.slot(), h);
    }
    w.bump_task_seq();
    w.running_task = false;
    if (w.notify_due) {
      w.notify_due = false;
      notify();
    }
    worker::bump(w.stats.tasks_run);
    if (++w.tick % event_interval == 0) w.reactor->poll(/*block=*/false);
  }
  transition_from_searching(w);
}

void multi_thread::run_wrapped(task<void> wrapper) {
  parking::parking_lot::open_rings(workers_, ring_entries_);  // first: nothing queued yet
  spawn_on(*this, std::move(wrapper)).detach();
  run_workers();
}

void multi_thread::run_workers() {
  const std::exception_ptr thread_error = run_on_threads(
      worker_count_, "worker", [this](unsigned i) { worker_loop(*workers_[i]); },
      [this] { park_->lot.stop(stopping_); });
  if (abandoned()) return;  // workers may still run: everything stays as it is, for ever
  // wake_main_thread may be running on another thread.
  park_->lot.close_rings(workers_, [this](worker& w) {
    w.lifo = {};
    w.searching = false;
    w.poll_request.store(false, std::memory_order_relaxed);
    w.watcher = false;
  });
  {
    std::lock_guard lock(park_->lot.mutex());
    park_->watcher = nullptr;
    park_->period.reset();
  }
  searching_.store(0, std::memory_order_relaxed);
  reset_after_run();
  if (thread_error) std::rethrow_exception(thread_error);
}

}  // namespace weft::sched
