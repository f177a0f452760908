// weft: an io_uring operation as an awaitable.
#pragma once

#include <atomic>
#include <cerrno>
#include <coroutine>
#include <utility>

#include <weft/cancel.hpp>
#include <weft/errc.hpp>
#include <weft/executor.hpp>
#include <weft/io/reactor.hpp>

namespace weft::io {

/// One io_uring operation, awaited by one task. `Prepare` is called with the SQE to fill.
///
/// The awaitable lives in the awaiting coroutine's frame and is the CQE's user_data, so the
/// operation allocates nothing. `co_await` gives the CQE's result: a count or fd (>= 0), or a
/// negated errno. When the task's stop is requested, the operation is cancelled with
/// IORING_OP_ASYNC_CANCEL, and the task still resumes only after the operation's own CQE: a
/// buffer the kernel may write to is never freed early. The result is then -ECANCELED, or the
/// operation's real result if it completed first (which the caller must handle: an accepted fd,
/// bytes read). An operation whose stop was requested before it started is not submitted and
/// gives -ECANCELED.
/// Errors: throws `errc::no_runtime` when no reactor runs on the calling thread.
template <class Prepare>
class operation : private completion, private cancel_scope::waiter {
 public:
  explicit operation(Prepare prepare) noexcept(std::is_nothrow_move_constructible_v<Prepare>)
      : prepare_(std::move(prepare)) {}
  operation(const operation&) = delete;
  operation& operator=(const operation&) = delete;

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    cancel_scope* scope = detail::scope_of(h);
    if (scope != nullptr && scope->stop_requested()) {
      result_ = -ECANCELED;
      return false;
    }
    reactor_ = reactor::current();
    executor_ = executor::current();
    if (reactor_ == nullptr || executor_ == nullptr) {
      throw_error(errc::no_runtime, "weft::io operation outside weft::run");
    }
    handle_ = h;
    on_complete = &operation::complete;
    reactor_->submit(static_cast<completion*>(this), [&](io_uring_sqe* sqe) { prepare_(sqe); });
    if (scope != nullptr) {
      on_stop = &operation::stop;
      scope_ = scope;  // before registering: once registered, *this may be resumed elsewhere
      if (!scope->add_waiter(*this)) {  // stopped in between
        scope_ = nullptr;
        try {
          reactor_->cancel(static_cast<completion*>(this));
        } catch (...) {  // the SQE is queued: the operation completes on its own
        }
      }
    }
    return true;
  }

  int await_resume() noexcept {
    if (scope_ != nullptr) {
      scope_->remove_waiter(*this);  // after this, stop() is not running and will not run
      // A cancel queued from another thread and not yet sent must not outlive this frame:
      // the address may be reused by the next operation.
      if (remote_cancel_.load(std::memory_order_relaxed)) {
        reactor_->retract_cancel(static_cast<completion*>(this));
      }
    }
    return result_;
  }

 private:
  static void stop(cancel_scope::waiter* w) noexcept {
    auto* self = static_cast<operation*>(w);
    if (reactor::current() != self->reactor_) {
      self->remote_cancel_.store(true, std::memory_order_relaxed);
    }
    try {
      self->reactor_->cancel(static_cast<completion*>(self));
    } catch (...) {  // cannot queue the cancel: the operation completes on its own
    }
  }
  static void complete(completion* c, int result, std::uint32_t) noexcept {
    auto* self = static_cast<operation*>(c);
    self->result_ = result;
    self->executor_->schedule(self->handle_);
  }

  Prepare prepare_;
  int result_ = 0;
  reactor* reactor_ = nullptr;
  executor* executor_ = nullptr;
  std::coroutine_handle<> handle_;
  cancel_scope* scope_ = nullptr;
  std::atomic<bool> remote_cancel_{false};  // ordered by the scope's firing flag
};

/// A no-op operation: one SQE, one CQE with result 0. Used to measure and test the loop.
[[nodiscard]] inline auto nop() noexcept {
  return operation([](io_uring_sqe* sqe) { io_uring_prep_nop(sqe); });
}

/// Reads up to `size` bytes from `fd` at `offset` (-1: the current file position) into `buffer`,
/// which must stay alive until the co_await returns. Gives bytes read or a negated errno.
[[nodiscard]] inline auto read_some(int fd, void* buffer, unsigned size, long long offset = -1) {
  return operation([=](io_uring_sqe* sqe) {
    io_uring_prep_read(sqe, fd, buffer, size, static_cast<__u64>(offset));
  });
}

}  // namespace weft::io
