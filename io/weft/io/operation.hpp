// weft: an io_uring operation as an awaitable.
#pragma once

#include <atomic>
#include <cerrno>
#include <coroutine>
#include <span>
#include <utility>

#include <weft/cancel.hpp>
#include <weft/errc.hpp>
#include <weft/executor.hpp>
#include <weft/io/reactor.hpp>
#include <weft/io/result.hpp>
#include <weft/task.hpp>

namespace weft::io {

/// One io_uring operation, awaited by one task. `Spec` says what the operation is:
/// `void prepare(io_uring_sqe*)` fills the SQE, and `finish(int cqe_result)` turns the CQE's
/// result (a count or fd >= 0, or a negated errno) into what `co_await` gives.
///
/// The awaitable lives in the awaiting coroutine's frame and is the CQE's user_data, so the
/// operation allocates nothing; `prepare` runs when the task suspends, so a Spec may point the
/// SQE at its own members (a msghdr, a path). When the task's stop is requested, the operation
/// is cancelled with IORING_OP_ASYNC_CANCEL, and the task still resumes only after the
/// operation's own CQE: a buffer the kernel may write to is never freed early. The CQE then
/// carries -ECANCELED, or the operation's real result if it completed first. An operation whose
/// stop was requested before it started is not submitted and finishes with -ECANCELED.
/// Errors: throws `errc::no_runtime` when no reactor runs on the calling thread.
/// Thread-safety: awaited on one thread; its stop may be requested from any thread. Movable only
/// before it is awaited.
template <class Spec>
class basic_operation : private completion, private cancel_scope::waiter {
 public:
  /// An operation that `co_await` submits; nothing happens before. Throws what moving `spec`
  /// throws.
  explicit basic_operation(Spec spec) noexcept(std::is_nothrow_move_constructible_v<Spec>)
      : spec_(std::move(spec)) {}
  /// Moves the Spec of an operation not awaited yet (the only state it has then).
  basic_operation(basic_operation&& other) noexcept(std::is_nothrow_move_constructible_v<Spec>)
      : spec_(std::move(other.spec_)) {}
  basic_operation(const basic_operation&) = delete;
  basic_operation& operator=(const basic_operation&) = delete;

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
    on_complete = &basic_operation::complete;
    reactor_->submit(static_cast<completion*>(this),
                     [&](io_uring_sqe* sqe) { spec_.prepare(sqe); });
    if (scope != nullptr) {
      on_stop = &basic_operation::stop;
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

  decltype(auto) await_resume() {
    if (scope_ != nullptr) {
      scope_->remove_waiter(*this);  // after this, stop() is not running and will not run
      // A cancel queued from another thread and not yet sent must not outlive this frame:
      // the address may be reused by the next operation.
      if (remote_cancel_.load(std::memory_order_relaxed)) {
        reactor_->retract_cancel(static_cast<completion*>(this));
      }
    }
    return spec_.finish(result_);
  }

 protected:
  /// The Spec, for a derived operation that reads what its `prepare` or `finish` kept.
  Spec& spec() noexcept { return spec_; }

 private:
  static void stop(cancel_scope::waiter* w) noexcept {
    auto* self = static_cast<basic_operation*>(w);
    if (reactor::current() != self->reactor_) {
      self->remote_cancel_.store(true, std::memory_order_relaxed);
    }
    try {
      self->reactor_->cancel(static_cast<completion*>(self));
    } catch (...) {  // cannot queue the cancel: the operation completes on its own
    }
  }
  static void complete(completion* c, int result, std::uint32_t) noexcept {
    auto* self = static_cast<basic_operation*>(c);
    self->result_ = result;
    self->executor_->schedule(self->handle_);
  }

  Spec spec_;
  int result_ = 0;
  reactor* reactor_ = nullptr;
  executor* executor_ = nullptr;
  std::coroutine_handle<> handle_;
  cancel_scope* scope_ = nullptr;
  std::atomic<bool> remote_cancel_{false};  // ordered by the scope's firing flag
};

namespace detail {

/// The most one read, write, send or recv SQE moves: Linux's MAX_RW_COUNT (2 GiB - 4 KiB), which
/// also keeps a count inside the CQE's int result. The SQE's length field has 32 bits: a larger
/// buffer cut to them could become 0 (a 4 GiB write that sends nothing, a read that looks like
/// the end of the stream), so every length goes through `io_length` and the callers' loops
/// (write_all, read_exact) move the rest.
inline constexpr std::size_t max_io_length = 0x7ffff000;

/// `n` clamped to `max_io_length`, as the SQE's 32-bit length.
constexpr unsigned io_length(std::size_t n) noexcept {
  return static_cast<unsigned>(n < max_io_length ? n : max_io_length);
}

/// A Spec from a prepare callable; `co_await` gives the raw CQE result.
template <class Prepare>
struct raw_spec {
  Prepare prepare_fn;
  void prepare(io_uring_sqe* sqe) { prepare_fn(sqe); }
  int finish(int result) const noexcept { return result; }
};

/// Throws `errc::cancelled` for a result that says the operation was cancelled; see `result`.
inline void throw_if_cancelled(int result, const char* operation) {
  if (result == -ECANCELED) throw_error(errc::cancelled, operation);
}

/// A Spec whose result is a count (`result<std::size_t>`).
template <class Prepare>
struct count_spec {
  Prepare prepare_fn;
  const char* name;
  void prepare(io_uring_sqe* sqe) { prepare_fn(sqe); }
  result<std::size_t> finish(int r) const {
    throw_if_cancelled(r, name);
    if (r < 0) return error_from_result(r, name);
    return static_cast<std::size_t>(r);
  }
};

/// A Spec whose result is success or an error (`result<void>`).
template <class Prepare>
struct void_spec {
  Prepare prepare_fn;
  const char* name;
  void prepare(io_uring_sqe* sqe) { prepare_fn(sqe); }
  result<void> finish(int r) const {
    throw_if_cancelled(r, name);
    if (r < 0) return error_from_result(r, name);
    return {};
  }
};

/// Sends all of `buffer` through `write_some(span)` (an awaitable giving
/// `result<std::size_t>`), resubmitting after short writes. Shared by sockets and pipes.
template <class WriteSome>
task<result<void>> write_all_with(WriteSome write_some, std::span<const std::byte> buffer) {
  std::size_t done = 0;
  while (done < buffer.size()) {
    result<std::size_t> r = co_await write_some(buffer.subspan(done));
    if (!r) co_return r.full_error();
    done += *r;
  }
  co_return result<void>();
}

/// Fills all of `buffer` through `read_some(span, first)` (`first` is true for the first read
/// only), reporting a stream that ends early as `errc::end_of_stream` named `name`.
template <class ReadSome>
task<result<void>> read_exact_with(ReadSome read_some, std::span<std::byte> buffer,
                                   const char* name) {
  std::size_t done = 0;
  while (done < buffer.size()) {
    result<std::size_t> r = co_await read_some(buffer.subspan(done), done == 0);
    if (!r) co_return r.full_error();
    if (*r == 0) co_return io_error{make_error_code(errc::end_of_stream), name};
    done += *r;
  }
  co_return result<void>();
}

}  // namespace detail

/// An operation defined by a prepare callable; `co_await` gives the raw CQE result (a count, an
/// fd, or a negated errno: -ECANCELED when cancelled). The building block for operations weft
/// does not wrap; the typed operations (sockets, files, pipes) give `result<T>` instead.
template <class Prepare>
class operation : public basic_operation<detail::raw_spec<Prepare>> {
 public:
  /// An operation whose SQE `prepare(io_uring_sqe*)` fills when the awaiting task suspends.
  /// Throws what moving `prepare` throws.
  explicit operation(Prepare prepare)
      : basic_operation<detail::raw_spec<Prepare>>(detail::raw_spec<Prepare>{std::move(prepare)}) {}
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

/// An operation giving `result<std::size_t>` (bytes transferred), named `name` in errors.
template <class Prepare>
[[nodiscard]] auto count_operation(const char* name, Prepare prepare) {
  return basic_operation<detail::count_spec<Prepare>>({std::move(prepare), name});
}

/// An operation giving `result<void>`, named `name` in errors.
template <class Prepare>
[[nodiscard]] auto void_operation(const char* name, Prepare prepare) {
  return basic_operation<detail::void_spec<Prepare>>({std::move(prepare), name});
}

}  // namespace weft::io
