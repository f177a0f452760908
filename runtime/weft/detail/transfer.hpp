// weft: control transfer between coroutines that keeps the stack flat at every optimisation level.
#pragma once

#include <coroutine>

namespace weft::detail {

// Why not plain symmetric transfer (await_suspend returning the next handle)? It only keeps the
// stack flat when the compiler turns the resume into a tail call. g++ 12 does not at -O0: a chain
// of a million synchronously completing tasks overflowed an 8 MiB stack there. So weft does the
// transfer itself: await_suspend records the next coroutine in a thread-local slot and returns;
// the trampoline loop that resumed the current coroutine picks it up and resumes it. Every
// resumption in weft goes through `resume`, so a transfer never nests, whatever the compiler.
/// How many awaits may complete without suspending in one run of a task before it yields (see
/// coop.hpp); Tokio's budget is 128 too.
inline constexpr unsigned coop_budget = 128;

struct transfer_slot {
  std::coroutine_handle<> next;
  bool trampoline_active = false;
  unsigned coop_left = coop_budget;  // refilled each time a run loop resumes a task
};

inline thread_local transfer_slot tls_transfer;

/// Resumes `h`, then every coroutine it transfers control to, until one suspends without a
/// successor. Re-entrant: a nested call runs its own chain and restores the outer one's state.
inline void resume(std::coroutine_handle<> h) {
  transfer_slot& slot = tls_transfer;
  const bool outer_active = slot.trampoline_active;
  const std::coroutine_handle<> outer_next = slot.next;
  slot.trampoline_active = true;
  slot.coop_left = coop_budget;
  while (h) {
    slot.next = nullptr;
    h.resume();
    h = slot.next;
  }
  slot.next = outer_next;
  slot.trampoline_active = outer_active;
}

/// Runs the chain that starts at `h` inside a trampoline that the caller already activated
/// (see trampoline_scope): the per-task cost of a run loop, without saving and restoring the
/// slot around every task.
inline void resume_in_trampoline(transfer_slot& slot, std::coroutine_handle<> h) {
  slot.coop_left = coop_budget;
  while (h) {
    slot.next = nullptr;
    h.resume();
    h = slot.next;
  }
}

/// Activates the trampoline for a batch of `resume_in_trampoline` calls and restores the outer
/// state at the end (RAII, so a throw out of a task body cannot leave the slot active).
class trampoline_scope {
 public:
  trampoline_scope() noexcept
      : slot_(tls_transfer), outer_active_(slot_.trampoline_active), outer_next_(slot_.next) {
    slot_.trampoline_active = true;
  }
  trampoline_scope(const trampoline_scope&) = delete;
  trampoline_scope& operator=(const trampoline_scope&) = delete;
  ~trampoline_scope() {
    slot_.next = outer_next_;
    slot_.trampoline_active = outer_active_;
  }
  transfer_slot& slot() noexcept { return slot_; }

 private:
  transfer_slot& slot_;
  bool outer_active_;
  std::coroutine_handle<> outer_next_;
};

/// Called from an await_suspend that has just suspended its coroutine: continue with `h`.
/// Inside a trampoline this only records `h`; outside one (a coroutine resumed by hand) it
/// starts a trampoline. If a successor is already recorded (a coroutine resumed by hand from
/// inside another), `h` runs in a nested trampoline so that neither is lost.
inline void transfer_to(std::coroutine_handle<> h) {
  transfer_slot& slot = tls_transfer;
  if (slot.trampoline_active && !slot.next) {
    slot.next = h;
  } else {
    resume(h);
  }
}

}  // namespace weft::detail
