// weft: the coop budget: a task whose awaits keep completing without suspending yields now and
// then.
#pragma once

#include <coroutine>

#include <weft/check.hpp>
#include <weft/detail/transfer.hpp>
#include <weft/executor.hpp>

namespace weft::detail {

/// Called by an awaitable whose await completed without suspending (a channel or queue item
/// that was there, a free mutex or permit, a set event, a finished task, a past deadline), from
/// its await_suspend, with no lock held. Such an await is a check point (`weft::check()`: on
/// the single-lock executor the lock may change hands there), and every `coop_budget`-th one
/// in a row within one run of the task yields: `h` is deferred behind the ready tasks and true
/// is returned (await_suspend then returns true). Without it, a task draining a full channel
/// kept its thread (and the single-lock executor's lock) until the channel was empty: the
/// timers and I/O of that thread waited, however long. The awaitable must have finished its
/// work already (taken the item or the lock): its await_resume runs after the yield.
/// Outside an executor it never yields. Never throws.
inline bool coop_yield(std::coroutine_handle<> h) noexcept {
  check();
  transfer_slot& slot = tls_transfer;
  if (--slot.coop_left != 0) return false;
  slot.coop_left = coop_budget;
  executor* ex = executor::current();
  if (ex == nullptr) return false;
  ex->defer(h);
  return true;
}

}  // namespace weft::detail
