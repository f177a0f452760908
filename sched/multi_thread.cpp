#include <weft/sched/multi_thread.hpp>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>

#include <weft/check.hpp>
#include <weft/detail/transfer.hpp>
#include <weft/sched/fence.hpp>
#include <weft/sched/runtime.hpp>
#include <weft/trace.hpp>

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

/// One worker: its ring, its queues and its counters. Everything but the queue's consumer side,
/// `reactor.wake()` and the counters (read by stats()) belongs to the worker's thread.
struct multi_thread::worker {
  multi_thread* owner = nullptr;
  unsigned index = 0;
  steal_queue queue;
  std::optional<io::reactor> reactor;
  std::coroutine_handle<> lifo;  // the task woken last by the running task; runs next
  std::uint32_t lifo_streak = 0;
  std::uint32_t tick = 0;
  bool running_task = false;  // a task is being resumed (wake-ups go to the LIFO slot)
  bool searching = false;     // counted in owner->searching_
  bool sleeping = false;      // in owner->sleepers_ (guarded by idle_mutex_)
  bool watcher = false;       // owner->watcher_ == this, as of its last look under idle_mutex_
  std::uint64_t rng = 0;

  struct counters {
    std::atomic<std::uint64_t> tasks_run{0}, lifo_runs{0}, steals{0}, stolen{0}, injected{0},
        overflows{0}, parks{0}, wakeups{0}, poll_requests{0}, stall_polls{0}, inject_locks{0};
  } stats;

  // On a line of their own: check() reads `poll_request` at every call on this worker, and
  // thieves write the queue's head above.
  alignas(64) std::atomic<bool> poll_request{false};  // set by the watcher, read by check()
  std::atomic<std::uint64_t> task_seq{0};     // odd while a task runs (this worker writes it)
  std::atomic<std::uint64_t> watched_seq{0};  // task_seq at the watcher's last look

  void bump_task_seq() noexcept {
    task_seq.store(task_seq.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

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

namespace {
// The worker the calling thread runs, if any (of whichever multi_thread executor).
thread_local void* tls_worker = nullptr;
}  // namespace

multi_thread::multi_thread(multi_thread_options options)
    : worker_count_(options.workers != 0 ? options.workers
                                         : std::max(1u, std::thread::hardware_concurrency())),
      ring_entries_(options.ring_entries) {
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
  sleepers_.reserve(worker_count_);
}

multi_thread::~multi_thread() {
  // Another thread may still be inside schedule() (it pushed and is waking a worker).
  std::lock_guard inject(inject_mutex_);
  std::lock_guard idle(idle_mutex_);
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
  m.tasks_spawned = live_.added();
  m.tasks_alive = live_.size();
  m.multi_thread = stats();
  std::lock_guard lock(idle_mutex_);  // the rings are closed under it at the end of a run
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
    notify();
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
    if (w->queue.size_hint() > 1 || w->lifo) notify();
    return;
  }
  push_inject_and_notify(h);
}

void multi_thread::start(std::coroutine_handle<> h) noexcept {
  auto* w = static_cast<worker*>(tls_worker);
  if (w != nullptr && w->owner == this) [[likely]] {
    push_local(*w, h);
    notify();
    return;
  }
  push_inject_and_notify(h);
}

void multi_thread::push_local(worker& w, std::coroutine_handle<> h) noexcept {
  if (w.queue.try_push(h)) [[likely]]
    return;
  // Full: move the older half and `h` to the inject queue in one batch (Tokio does the same),
  // so a burst of spawns costs one lock per 128 tasks and other workers can take them.
  std::array<std::coroutine_handle<>, steal_queue::capacity / 2> batch;
  const std::uint32_t n = w.queue.claim_half(batch);
  worker::bump(w.stats.overflows);
  std::lock_guard lock(inject_mutex_);
  try {
    for (std::uint32_t i = 0; i < n; ++i) inject_.push(batch[i]);
    inject_.push(h);
  } catch (...) {
    out_of_memory("in the inject queue");
  }
  inject_size_.store(inject_.size(), std::memory_order_release);
}

void multi_thread::push_inject_and_notify(std::coroutine_handle<> h) noexcept {
  // From a thread that is not a worker. The wake-up happens under the inject lock: once the
  // handle is visible the task may finish, block_on return and the executor be destroyed, and
  // the destructor takes this lock first.
  std::lock_guard lock(inject_mutex_);
  try {
    inject_.push(h);
  } catch (...) {
    out_of_memory("while scheduling a task from another thread");
  }
  inject_size_.store(inject_.size(), std::memory_order_release);
  notify_parked();
}

std::coroutine_handle<> multi_thread::pop_inject() noexcept {
  if (inject_size_.load(std::memory_order_acquire) == 0) return {};
  std::lock_guard lock(inject_mutex_);
  if (inject_.empty()) return {};
  std::coroutine_handle<> h = inject_.pop();
  inject_size_.store(inject_.size(), std::memory_order_release);
  return h;
}

std::coroutine_handle<> multi_thread::pop_inject_batch(worker& w) noexcept {
  if (inject_size_.load(std::memory_order_acquire) == 0) return {};
  // Called with an empty local queue. Takes this worker's share of the inject queue (Go's
  // globrunqget: size / workers + 1, at most half a local queue) under one lock, so a burst
  // that overflowed a local queue comes back at one lock per batch, not one per task. The
  // batch stays stealable in the local queue.
  std::lock_guard lock(inject_mutex_);
  if (inject_.empty()) return {};
  const std::size_t share = inject_.size() / worker_count_ + 1;
  // Only the owner pushes to its queue, so the room seen here cannot shrink under us.
  const std::size_t room = steal_queue::capacity - w.queue.size_hint();
  const std::size_t n =
      std::min({share, room + 1, inject_.size(), std::size_t{steal_queue::capacity / 2}});
  std::coroutine_handle<> h = inject_.pop();
  for (std::size_t i = 1; i < n; ++i) (void)w.queue.try_push(inject_.pop());
  inject_size_.store(inject_.size(), std::memory_order_release);
  worker::bump(w.stats.injected, n);
  worker::bump(w.stats.inject_locks);
  return h;
}

// ---- timers and the live set ------------------------------------------------------------

void multi_thread::add_timer(detail::timer_node& node) {
  auto* w = static_cast<worker*>(tls_worker);
  if (w == nullptr || w->owner != this) {
    throw std::logic_error("weft: a timer armed outside the multi-thread executor's workers");
  }
  node.owner = w;
  w->reactor->add_timer(node);
}

void multi_thread::cancel_timer(detail::timer_node& node) noexcept {
  // The heap that holds the node may belong to another worker: its lock makes that safe.
  if (auto* w = static_cast<worker*>(node.owner)) w->reactor->cancel_timer(node);
}

// ---- parking (see ARCHITECTURE.md, "Parking") -------------------------------------------

void multi_thread::notify_parked() noexcept {
  // Pairs with the fence in park(): either we see the sleeper, or it sees our task.
  weft::detail::store_load_fence();
  if (searching_.load(std::memory_order_seq_cst) != 0 ||
      sleeping_.load(std::memory_order_seq_cst) == 0) {
    return;  // a searching worker will find the task, or nobody sleeps
  }
  std::lock_guard lock(idle_mutex_);
  if (searching_.load(std::memory_order_relaxed) != 0 || sleepers_.empty()) return;
  // The most recent sleeper (its caches are the warmest), but not the calling worker itself:
  // it is about to run what it scheduled anyway.
  auto* self = static_cast<worker*>(tls_worker);
  auto it = sleepers_.end();
  do {
    --it;
  } while (*it == self && it != sleepers_.begin());
  if (*it == self) return;
  worker* sleeper = *it;
  sleepers_.erase(it);
  sleeper->sleeping = false;
  sleeping_.fetch_sub(1, std::memory_order_seq_cst);
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
  const int awake = static_cast<int>(worker_count_) - sleeping_.load(std::memory_order_relaxed);
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
  bool watching = false;
  {
    std::lock_guard lock(idle_mutex_);
    if (stopping_.load(std::memory_order_acquire)) return;
    try {
      sleepers_.push_back(&w);  // reserved for every worker: never allocates
    } catch (...) {
      return;
    }
    w.sleeping = true;
    const int asleep = sleeping_.fetch_add(1, std::memory_order_seq_cst) + 1;
    // While another worker is awake (it may be running a long task), one parked worker
    // watches it: it bounds its wait by stall_interval (see watch()).
    if (watcher_ == nullptr && asleep < static_cast<int>(worker_count_)) watcher_ = &w;
    watching = watcher_ == &w;
    w.watcher = watching;
    // The period goes on from one watcher to the next (a watcher that keeps waking for its
    // own I/O or timers still looks once a period); a past deadline ends the wait at once.
    if (watching && watch_until_ == clock::time_point{}) {
      watch_until_ = clock::now() + stall_interval;
      watch_seq_sum_ = others_task_seq(w);
    }
  }
  if (w.searching) {
    w.searching = false;
    searching_.fetch_sub(1, std::memory_order_seq_cst);
  }
  // Pairs with the fence in notify_parked: a task pushed before it saw us asleep is seen here.
  weft::detail::store_load_fence();
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
    w.reactor->poll(/*block=*/true, watching ? watch_until_ : clock::time_point::max());
    if (detail::trace_buffer* tb = detail::tls_trace) [[unlikely]]
      tb->span("park", park_start, detail::trace_now(), 0);
    if (watching && clock::now() >= watch_until_) quiet = !watch(w);
  }
  std::lock_guard lock(idle_mutex_);
  // The role ends with a quiet look, or when its worker is about to run a task (resign_watch).
  if (watcher_ == &w && quiet) watcher_ = nullptr;
  // A worker leaves its ring, maybe to run tasks: if others sleep, one of them watches.
  if (watcher_ == nullptr && !quiet) recruit_watcher_locked(w);
  w.watcher = watcher_ == &w;
  if (w.sleeping) {  // woke on its own (I/O, timer) or saw work: leave the list itself
    std::erase(sleepers_, &w);
    w.sleeping = false;
    sleeping_.fetch_sub(1, std::memory_order_seq_cst);
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
  for (auto it = sleepers_.rbegin(); it != sleepers_.rend(); ++it) {
    if (*it == &w) continue;
    watcher_ = *it;
    (*it)->reactor->wake();  // under the lock, as in notify_parked
    return;
  }
}

void multi_thread::resign_watch(worker& w) noexcept {
  // The watcher found a task to run: it watches nobody while it runs it (it could run for
  // long itself), so another sleeper takes the role.
  std::lock_guard lock(idle_mutex_);
  w.watcher = false;
  if (watcher_ != &w) return;
  watcher_ = nullptr;
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
  bool busy = false;
  for (auto& u : workers_) {
    if (u.get() == &w) continue;
    const std::uint64_t seq = u->task_seq.load(std::memory_order_relaxed);
    // One task resumption that has lasted a whole period (odd: still running): its worker
    // has not polled its ring since, and only that worker can.
    if ((seq & 1) != 0 && seq == u->watched_seq.load(std::memory_order_relaxed) &&
        !u->poll_request.load(std::memory_order_relaxed)) {
      u->poll_request.store(true, std::memory_order_relaxed);
      worker::bump(w.stats.poll_requests);
    }
    u->watched_seq.store(seq, std::memory_order_relaxed);
    busy = busy || (seq & 1) != 0;
  }
  // Keep watching while tasks run; after a whole quiet period, stop (an idle executor sleeps).
  const std::uint64_t sum = others_task_seq(w);
  const bool keep = busy || sum != watch_seq_sum_;
  watch_until_ = keep ? clock::now() + stall_interval : clock::time_point{};
  watch_seq_sum_ = sum;
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
  std::lock_guard lock(idle_mutex_);
  worker& w0 = *workers_[0];
  if (w0.reactor) w0.reactor->wake();
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
  return pop_inject_batch(w);
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
  executor* const previous_executor = executor::current();
  io::reactor* const previous_reactor = io::reactor::current();
  void* const previous_worker = tls_worker;
  const detail::check_state previous_check = detail::check_hook;
  set_current(this);
  io::reactor::set_current(&*w.reactor);
  tls_worker = &w;
  // check() reads this worker's flag: the same load as the constant it reads elsewhere.
  detail::check_hook = detail::check_state{&w.poll_request, &multi_thread::check_point};
  struct restore {
    executor* e;
    io::reactor* r;
    void* w;
    detail::check_state check;
    ~restore() {
      executor::set_current(e);
      io::reactor::set_current(r);
      tls_worker = w;
      detail::check_hook = check;
    }
  } restore_on_exit{previous_executor, previous_reactor, previous_worker, previous_check};
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
    w.bump_task_seq();  // odd: running a task (the watcher looks)
    if (detail::trace_buffer* tb = detail::tls_trace) [[unlikely]] {
      detail::traced_resume(*tb, [&] { detail::resume_in_trampoline(trampoline.slot(), h); });
    } else {
      detail::resume_in_trampoline(trampoline.slot(), h);
    }
    w.bump_task_seq();
    w.running_task = false;
    worker::bump(w.stats.tasks_run);
    if (++w.tick % event_interval == 0) w.reactor->poll(/*block=*/false);
  }
  transition_from_searching(w);
}

void multi_thread::start_main(task<void> wrapper) {
  // Rings first, on this thread, so that a failure is reported before anything is queued or
  // any thread starts. Each ring is enabled by the thread that runs it (SINGLE_ISSUER).
  try {
    for (auto& w : workers_) w->reactor.emplace(ring_entries_, nullptr, /*shared_timers=*/true);
  } catch (...) {
    for (auto& w : workers_) w->reactor.reset();
    throw;
  }
  spawn_on(*this, std::move(wrapper)).detach();
}

void multi_thread::run_workers() {
  const std::exception_ptr thread_error = run_on_threads(
      worker_count_, "worker", [this](unsigned i) { worker_loop(*workers_[i]); },
      [this] {
        // Every worker that parked before this sees stopping_ when it wakes; every later one
        // sees it before it parks (park() checks it under the same lock).
        std::lock_guard lock(idle_mutex_);
        stopping_.store(true, std::memory_order_release);
        for (worker* s : sleepers_) s->reactor->wake();
      });
  {
    std::lock_guard lock(idle_mutex_);  // wake_main_thread may be running on another thread
    for (auto& w : workers_) {
      w->reactor.reset();
      w->lifo = {};
      w->searching = false;
      w->poll_request.store(false, std::memory_order_relaxed);
      w->watcher = false;
    }
    watcher_ = nullptr;
    watch_until_ = {};
  }
  searching_.store(0, std::memory_order_relaxed);
  reset_after_run();
  if (thread_error) std::rethrow_exception(thread_error);
}

}  // namespace weft::sched
