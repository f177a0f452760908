// Helpers shared by the unit tests.
#pragma once

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cerrno>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <weft/errc.hpp>
#include <weft/executor.hpp>
#include <weft/task.hpp>

namespace weft::testing {

/// Runs `fn` on a fresh thread whose stack is only `stack_bytes` big, and rethrows what it threw.
/// A test that recursed instead of using symmetric transfer dies here with a stack overflow.
inline void run_on_small_stack(std::size_t stack_bytes, std::function<void()> fn) {
  struct context {
    std::function<void()> fn;
    std::exception_ptr error;
  } ctx{std::move(fn), nullptr};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, stack_bytes);
  pthread_t thread;
  auto body = [](void* p) -> void* {
    auto* c = static_cast<context*>(p);
    try {
      c->fn();
    } catch (...) {
      c->error = std::current_exception();
    }
    return nullptr;
  };
  if (int rc = pthread_create(&thread, &attr, body, &ctx); rc != 0) {
    pthread_attr_destroy(&attr);
    throw std::system_error(rc, std::generic_category(), "pthread_create");
  }
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
  if (ctx.error) std::rethrow_exception(ctx.error);
}

/// How many descriptors this process has open now (entries of /proc/self/fd, counting the one
/// the count itself opens), for before/after leak checks.
inline std::size_t open_fd_count() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

/// True when this process has no child left, neither running nor a zombie.
inline bool no_children_left() {
  siginfo_t info{};
  return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG) == -1 && errno == ECHILD;
}

/// True when no process `pid` exists any more (not even a zombie).
inline bool process_gone(pid_t pid) {
  return ::kill(pid, 0) == -1 && errno == ESRCH;
}

/// A place where tasks park (`co_await park_in{box}`) until a plain std::thread resumes them
/// with `box.executor->schedule(handle)`: how the tests wake tasks from foreign threads.
struct mailbox {
  std::mutex mutex;
  std::vector<std::coroutine_handle<>> parked;
  weft::executor* executor = nullptr;
};

/// Parks the awaiting task in `box`, remembering the executor that must resume it.
struct park_in {
  mailbox& box;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    std::lock_guard lock(box.mutex);
    box.executor = weft::executor::current();
    box.parked.push_back(h);
  }
  void await_resume() const noexcept {}
};

/// A std::thread that resumes every task parked in `box`, on the executor that parked it, over
/// and over until the waker is destroyed: remote wake-ups from a thread that is no executor's.
/// Destroy it only once no task parks in `box` any more (a task parked after that stays parked).
class mailbox_waker {
 public:
  explicit mailbox_waker(mailbox& box) : thread_([this, &box] { serve(box); }) {}
  mailbox_waker(const mailbox_waker&) = delete;
  mailbox_waker& operator=(const mailbox_waker&) = delete;
  ~mailbox_waker() {
    done_.store(true);
    thread_.join();
  }

 private:
  void serve(mailbox& box) {
    while (!done_.load()) {
      std::vector<std::coroutine_handle<>> batch;
      weft::executor* ex = nullptr;
      {
        std::lock_guard lock(box.mutex);
        batch.swap(box.parked);
        ex = box.executor;
      }
      for (auto h : batch) ex->schedule(h);
      if (batch.empty()) std::this_thread::yield();
    }
  }

  std::atomic<bool> done_{false};  // declared before thread_: set up before the thread starts
  std::thread thread_;
};

namespace detail_support {
inline weft::task<bool> fails_with_no_runtime(weft::task<> inner) {
  try {
    co_await std::move(inner);
  } catch (const std::system_error& e) {
    co_return e.code() == weft::errc::no_runtime;
  }
  co_return false;
}
}  // namespace detail_support

/// Drives `inner` by hand on this thread, with no executor running, and tells whether it ended
/// with `errc::no_runtime` (a clear error rather than a crash). Throws if it did not finish.
inline bool fails_outside_runtime(weft::task<> inner) {
  auto handle = detail_support::fails_with_no_runtime(std::move(inner)).release();
  weft::detail::resume(handle);
  if (!handle.done()) {
    handle.destroy();
    throw std::logic_error("task suspended although no runtime could resume it");
  }
  const bool result = handle.promise().take_result();
  handle.destroy();
  return result;
}

/// Awaits `op` and tells whether it ended with a std::system_error whose code is `code`; its
/// value, if it gave one, is dropped. Any other exception propagates, so a test that expects
/// `code` fails either way when something else went wrong. `op` may be a temporary (it lives
/// until the end of the full expression that awaits this task) or a join handle.
template <class Awaitable>
weft::task<bool> ends_with(weft::errc code, Awaitable&& op) {
  try {
    (void)co_await std::forward<Awaitable>(op);
  } catch (const std::system_error& e) {
    if (e.code() == code) co_return true;
    throw;
  }
  co_return false;
}

/// ends_with(errc::timed_out, op): for a `with_timeout` or `with_deadline` that must expire.
template <class Awaitable>
weft::task<bool> ends_timed_out(Awaitable&& op) {
  return ends_with(weft::errc::timed_out, std::forward<Awaitable>(op));
}

/// ends_with(errc::cancelled, op): for a task (a join handle) whose stop was requested.
template <class Awaitable>
weft::task<bool> ends_cancelled(Awaitable&& op) {
  return ends_with(weft::errc::cancelled, std::forward<Awaitable>(op));
}

/// The joined task's value, -1 when the join ended cancelled, -2 on any other weft error.
inline weft::task<int> join_or_cancelled(weft::join_handle<int>& t) {
  try {
    co_return co_await t;
  } catch (const std::system_error& e) {
    co_return e.code() == weft::errc::cancelled ? -1 : -2;
  }
}

/// Awaits `op` and returns the exception it ended with, or a null pointer when it ended
/// normally (its value, if any, is dropped). `op` may be a temporary, as for ends_timed_out.
template <class Awaitable>
weft::task<std::exception_ptr> error_of(Awaitable&& op) {
  std::exception_ptr error;
  try {
    (void)co_await std::forward<Awaitable>(op);
  } catch (...) {
    error = std::current_exception();
  }
  co_return error;
}

/// True when `e` holds a std::system_error whose code is `code`.
inline bool holds_error(const std::exception_ptr& e, weft::errc code) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& se) {
    return se.code() == code;
  } catch (...) {
    return false;
  }
}

}  // namespace weft::testing
