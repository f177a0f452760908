#include <weft/sched/cooperative.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>

#include <weft/sched/runtime.hpp>
#include <weft/this_task.hpp>

#include "run_queue.hpp"
#include "seeded_order.hpp"
#include "shutdown_limit.hpp"

namespace weft::sched {

cooperative::cooperative(cooperative_options options)
    : ready_(std::make_unique<run_queue>()),
      reactor_(options.ring_entries, [this] { drain_remote(); }),
      order_(std::make_unique<seeded_order>(options.seed)),
      paused_on_(options.paused_clock) {
  live_.prev = live_.next = &live_;
}

cooperative::~cooperative() {
  // Wait for another thread still inside schedule_slow (it holds the lock until it is done).
  std::lock_guard lock(remote_mutex_);
}

cooperative::loop_guard::loop_guard(cooperative& c)
    : previous_executor(executor::current()),
      previous_reactor(io::reactor::current()),
      trace(c.trace_session(), 0),
      previous_clock(detail::tls_paused_clock),
      previous_deferred(detail::tls_deferred_stops) {
  detail::tls_deferred_stops = &c.deferred_;
  // A paused run starts at the real time; a run nested in it has a clock of its own.
  if (c.paused_on_) c.paused_.now = clock::now();
  detail::tls_paused_clock = c.paused_on_ ? &c.paused_ : nullptr;
  c.reactor_.attach_to_this_thread();
  c.set_current(&c);
  io::reactor::set_current(&c.reactor_);
}

cooperative::loop_guard::~loop_guard() {
  detail::tls_paused_clock = previous_clock;
  detail::tls_deferred_stops = previous_deferred;
  executor::set_current(previous_executor);
  io::reactor::set_current(previous_reactor);
}

void cooperative::schedule(std::coroutine_handle<> h) noexcept {
  // The hot path (a task of this loop waking another): one push, no lock.
  if (executor::current() == this && ready_->try_push(h)) [[likely]]
    return;
  schedule_slow(h);
}

// A yield's path: the same queue as a wake-up, without a second virtual call.
void cooperative::defer(std::coroutine_handle<> h) noexcept {
  schedule(h);
}

void cooperative::run_until(bool (*done)(void*), void* context) {
  while (!done(context)) {
    run_ready();
    deferred_.flush();  // before the loop may park: see detail::deferred_stops
    if (done(context)) break;
    if (detail::trace_buffer* tb = detail::tls_trace; tb != nullptr && ready_->empty()) {
      const std::int64_t start = detail::trace_now();
      reactor_.poll(/*block=*/true, poll_limit_);
      tb->span("park", start, detail::trace_now(), 0);
      continue;
    }
    reactor_.poll(/*block=*/ready_->empty(), poll_limit_);
  }
}

void cooperative::schedule_slow(std::coroutine_handle<> h) noexcept {
  if (executor::current() == this) {
    try {
      ready_->push(h);  // grows the queue
      return;
    } catch (...) {
      // Out of memory while growing the run queue: fall through to the remote path, whose
      // vector may still have room; losing a wake-up silently is not an option.
    }
  }
  // The wake-up is written under the lock: once the loop has seen the handle, the task may
  // finish and the executor be destroyed, so nothing here may touch *this after unlocking
  // (the destructor takes the same lock first).
  std::lock_guard lock(remote_mutex_);
  try {
    remote_.push_back(h);
  } catch (...) {
    std::fputs("weft: out of memory while scheduling a task; aborting\n", stderr);
    std::terminate();
  }
  if (!remote_wake_pending_) {
    remote_wake_pending_ = true;
    reactor_.wake();
  }
}

bool cooperative::remote_pending() {
  std::lock_guard lock(remote_mutex_);
  return !remote_.empty() || !remote_started_.empty();
}

void cooperative::drain_remote() noexcept {
  std::vector<std::coroutine_handle<>> pending;
  std::vector<detail::spawn_link*> started;
  {
    std::lock_guard lock(remote_mutex_);
    pending.swap(remote_);
    started.swap(remote_started_);
    remote_wake_pending_ = false;
  }
  // Tasks spawned from other threads join the live list before any of them can run.
  for (detail::spawn_link* link : started) link_started(*link);
  for (auto h : pending) {
    try {
      ready_->push(h);
    } catch (...) {
      std::fputs("weft: out of memory in the run queue; aborting\n", stderr);
      std::terminate();
    }
  }
}

void cooperative::task_started_remote(detail::spawn_link& link) noexcept {
  // Another thread spawns onto this executor: the list belongs to the loop's thread, so the
  // link waits beside the task's handle, which spawn_on schedules right after this call.
  std::lock_guard lock(remote_mutex_);
  try {
    remote_started_.push_back(&link);
  } catch (...) {
    std::fputs("weft: out of memory while spawning from another thread; aborting\n", stderr);
    std::terminate();
  }
}

void cooperative::run_ready() {
  // Run up to event_interval tasks in FIFO order, including ones those tasks make ready, then let
  // the reactor have its say (fairness between CPU work and I/O).
  detail::trampoline_scope trampoline;
  if (order_->on()) [[unlikely]] {
    run_ready_seeded(trampoline);
    return;
  }
  std::size_t n = event_interval;
  run_queue& ready = *ready_;  // the pointer is loaded once per turn, not after every task
  if (detail::trace_buffer* tb = detail::tls_trace) [[unlikely]] {
    for (; n > 0 && !ready.empty(); --n) {
      const std::coroutine_handle<> h = ready.pop();
      detail::traced_resume(*tb, [&] { detail::resume_in_trampoline(trampoline.slot(), h); });
    }
  } else {
    for (; n > 0 && !ready.empty(); --n) {
      detail::resume_in_trampoline(trampoline.slot(), ready.pop());
    }
  }
  tasks_run_.store(tasks_run_.load(std::memory_order_relaxed) + (event_interval - n),
                   std::memory_order_relaxed);
}

void cooperative::run_ready_seeded(detail::trampoline_scope& trampoline) {
  // The same turn as run_ready's, but each task is picked among the first ready ones.
  std::size_t n = event_interval;
  for (; n > 0 && !ready_->empty(); --n) {
    const std::coroutine_handle<> h = ready_->pop_at(order_->pick(ready_->size()));
    if (detail::trace_buffer* tb = detail::tls_trace) [[unlikely]] {
      detail::traced_resume(*tb, [&] { detail::resume_in_trampoline(trampoline.slot(), h); });
    } else {
      detail::resume_in_trampoline(trampoline.slot(), h);
    }
  }
  tasks_run_.store(tasks_run_.load(std::memory_order_relaxed) + (event_interval - n),
                   std::memory_order_relaxed);
}

bool cooperative::visit_tasks(void (*fn)(detail::spawn_link&, void*), void* context) noexcept {
  if (executor::current() != this) return false;
  for (detail::spawn_link* l = live_.next; l != &live_; l = l->next) fn(*l, context);
  return true;
}

void cooperative::collect_metrics(runtime_metrics& m) const noexcept {
  m.tasks_spawned = spawned_.load(std::memory_order_relaxed);
  m.tasks_alive = live_count_.load(std::memory_order_relaxed);
  if (m.per_worker.empty()) return;
  worker_metrics& w = m.per_worker[0];
  w.tasks_run = tasks_run_.load(std::memory_order_relaxed);
  const io::reactor_stats r = reactor_.stats();
  w.polls = r.enter_calls;
  w.submissions = r.submissions;
  w.completions = r.completions;
  w.timers_fired = r.timers_fired;
}

void cooperative::shutdown() {
  // Cancel every task nobody joined, then let them unwind: their frames, and the buffers the
  // kernel may still write to, are freed by the tasks themselves.
  shutting_down_ = true;
  drain_remote();  // tasks other threads spawned just before the end are live tasks too
  for (detail::spawn_link* l = live_.next; l != &live_; l = l->next) stop(*l);
  abandoned_ = false;
  poll_limit_ = shutdown_limit::deadline_after(shutdown_timeout_);
  run_until(
      [](void* self) {
        cooperative& c = *static_cast<cooperative*>(self);
        if (c.live_tasks() == 0 && !c.remote_pending()) return true;
        if (c.poll_limit_ == clock::time_point::max() || clock::now() < c.poll_limit_) return false;
        c.give_up_shutdown();
        return true;
      },
      this);
  poll_limit_ = clock::time_point::max();
  if (!abandoned_) shutting_down_ = false;  // abandoned: the loop never runs again
}

void cooperative::give_up_shutdown() noexcept {
  // The tasks still alive are left as they are: named, never freed (see abandoned()).
  abandoned_ = true;
  stuck_tasks_ = shutdown_limit::stuck_tasks(*this);
}

void cooperative::stop(detail::spawn_link& link) noexcept {
  detail::scope_of_link(link)->request_stop();
}

}  // namespace weft::sched
