#include "park.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace weft::sched::parking {

void add_timer(park_slot* self, weft::detail::timer_node& node, const char* threads) {
  if (self == nullptr) {
    throw std::logic_error(std::string("weft: a timer armed outside ") + threads);
  }
  node.owner = self;
  self->reactor->add_timer(node);
}

void cancel_timer(weft::detail::timer_node& node) noexcept {
  if (auto* s = static_cast<park_slot*>(node.owner)) s->reactor->cancel_timer(node);
}

int parking_lot::enter_locked(park_slot& s) noexcept {
  sleepers_.push_back(&s);  // reserved for every thread: never allocates
  s.sleeping = true;
  return sleeping_.fetch_add(1, std::memory_order_seq_cst) + 1;
}

void parking_lot::leave_locked(park_slot& s) noexcept {
  std::erase(sleepers_, &s);
  s.sleeping = false;
  sleeping_.fetch_sub(1, std::memory_order_seq_cst);
}

park_slot* parking_lot::take_latest_locked(const park_slot* skip) noexcept {
  for (auto it = sleepers_.end(); it != sleepers_.begin();) {
    --it;
    if (*it == skip) continue;
    park_slot* s = *it;
    sleepers_.erase(it);
    s->sleeping = false;
    sleeping_.fetch_sub(1, std::memory_order_seq_cst);
    return s;
  }
  return nullptr;
}

park_slot* parking_lot::latest_locked(const park_slot* skip) const noexcept {
  for (auto it = sleepers_.rbegin(); it != sleepers_.rend(); ++it) {
    if (*it != skip) return *it;
  }
  return nullptr;
}

void parking_lot::stop(std::atomic<bool>& stopping) noexcept {
  std::lock_guard lock(mutex_);
  stopping.store(true, std::memory_order_release);
  for (park_slot* s : sleepers_) s->reactor->wake();
}

void parking_lot::wake(park_slot& s) noexcept {
  std::lock_guard lock(mutex_);
  if (s.reactor) s.reactor->wake();
}

thread_binding::thread_binding(set_executor_fn set_executor, executor* e, io::reactor& r,
                               void*& tls, void* self, weft::detail::check_state check,
                               const weft::detail::blocking_hooks* blocking) noexcept
    : set_executor_(set_executor),
      previous_executor_(executor::current()),
      previous_reactor_(io::reactor::current()),
      tls_(tls),
      previous_tls_(tls),
      previous_check_(weft::detail::check_hook),
      previous_blocking_(weft::detail::blocking_hook) {
  set_executor(e);
  io::reactor::set_current(&r);
  tls = self;
  weft::detail::check_hook = check;
  weft::detail::blocking_hook = blocking;
}

thread_binding::~thread_binding() {
  set_executor_(previous_executor_);
  io::reactor::set_current(previous_reactor_);
  tls_ = previous_tls_;
  weft::detail::check_hook = previous_check_;
  weft::detail::blocking_hook = previous_blocking_;
}

}  // namespace weft::sched::parking
