#include <weft/sched/threaded_executor.hpp>

#include "live_set.hpp"
#include "shutdown_limit.hpp"

namespace weft::sched {

threaded_executor::threaded_executor() : live_(std::make_unique<live_set>()) {}

threaded_executor::~threaded_executor() = default;

void threaded_executor::task_started(detail::spawn_link& link) noexcept {
  live_->add(link);
  if (shutting_down_.load(std::memory_order_acquire)) [[unlikely]] {
    detail::scope_of_link(link)->request_stop();  // spawned while everything is being stopped
  }
}

void threaded_executor::task_finished(detail::spawn_link& link) noexcept {
  // seq_cst on both sides (here and in main_and_tasks_done): the last task and the start of
  // the shutdown cannot both miss each other.
  if (live_->remove(link) == 0 && shutting_down_.load(std::memory_order_seq_cst)) {
    wake_main_thread();  // the last task of the shutdown: thread 0 may be parked
  }
}

std::size_t threaded_executor::live_tasks() const noexcept {
  return live_->size();
}

std::uint64_t threaded_executor::tasks_spawned() const noexcept {
  return live_->added();
}

bool threaded_executor::visit_tasks(void (*fn)(detail::spawn_link&, void*),
                                    void* context) noexcept {
  live_->for_each([&](detail::spawn_link& l) { fn(l, context); });
  return true;
}

bool threaded_executor::main_and_tasks_done() noexcept {
  if (!main_done_.load(std::memory_order_acquire)) return false;
  if (!shutting_down_.load(std::memory_order_relaxed)) {
    shutdown_deadline_ = shutdown_limit::deadline_after(shutdown_timeout_);
    abandoned_ = false;
    shutting_down_.store(true, std::memory_order_seq_cst);
    live_->for_each([](detail::spawn_link& l) { detail::scope_of_link(l)->request_stop(); });
  }
  if (live_->size() == 0) return true;
  if (shutdown_deadline_ == clock::time_point::max() || clock::now() < shutdown_deadline_) {
    return false;
  }
  give_up_shutdown();
  return true;
}

void threaded_executor::give_up_shutdown() noexcept {
  abandoned_ = true;
  stuck_tasks_ = shutdown_limit::stuck_tasks(*this);
}

bool threaded_executor::main_thread_must_not_block() const noexcept {
  return main_done_.load(std::memory_order_acquire) &&
         (!shutting_down_.load(std::memory_order_seq_cst) || live_->size() == 0);
}

}  // namespace weft::sched
