// weft: join_set<T>, a set of spawned tasks joined in the order they finish.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>
#include <variant>

#include <weft/channel.hpp>
#include <weft/detail/children.hpp>
#include <weft/spawn.hpp>
#include <weft/task.hpp>

namespace weft {

/// A set of tasks spawned on the current executor, joined in the order they finish (Tokio's
/// JoinSet, Python's asyncio.as_completed):
/// `weft::join_set<int> set; set.spawn(compute(1)); set.spawn(compute(2));
///  while (auto v = co_await set.join_next()) use(*v);`
///
/// `join_next()` gives the value of the next task to finish, or `std::nullopt` when the set is
/// empty; it rethrows that task's exception instead (a task stopped by `cancel_all()` usually
/// ends with `errc::cancelled`), and the task leaves the set either way. Waiting in it is a
/// cancellation point (`errc::cancelled`; no task's result is taken then).
/// `cancel_all()` requests stop on every task still in the set (they stay in it until joined).
/// Destroying the set cancels the tasks still in it and lets them finish on their own; their
/// results are dropped. Void tasks give `std::monostate`.
///
/// Errors: `spawn` throws `errc::no_runtime` outside a weft executor, std::bad_alloc.
/// Thread-safety: the set is used by one task at a time; its tasks may run on any thread of the
/// executor and finish concurrently.
template <class T>
class join_set {
  using value = detail::stored_t<T>;
  struct finished {
    std::uint64_t id = 0;
    std::variant<std::monostate, value, std::exception_ptr> result;
  };

 public:
  join_set() = default;
  join_set(const join_set&) = delete;
  join_set& operator=(const join_set&) = delete;
  /// Cancels the tasks still in the set; see the class comment.
  ~join_set() { cancel_all(); }

  /// Spawns `t` on the current executor into the set.
  void spawn(task<T> t) {
    const std::uint64_t id = next_id_++;
    handles_.emplace(id, weft::spawn(run_member(std::move(t), done_, id)));
  }

  /// Waits for the next task to finish and gives its value (see the class comment).
  task<std::optional<value>> join_next() {
    if (handles_.empty()) co_return std::nullopt;
    std::optional<finished> f = co_await done_->recv();  // never closed: always an item
    handles_.erase(f->id);                               // the task has ended or is ending
    if (auto* e = std::get_if<std::exception_ptr>(&f->result)) std::rethrow_exception(*e);
    co_return std::move(std::get<1>(f->result));
  }

  /// Requests stop on every task still in the set. Never throws.
  void cancel_all() noexcept {
    for (auto& [id, h] : handles_) h.cancel();
  }

  /// The tasks in the set: spawned and not yet given by `join_next`.
  std::size_t size() const noexcept { return handles_.size(); }
  /// True when no task is in the set.
  bool empty() const noexcept { return handles_.empty(); }

 private:
  // The channel is shared with the tasks: one may still be ending after the set is gone.
  static task<void> run_member(task<T> t, std::shared_ptr<channel<finished>> done,
                               std::uint64_t id) {
    finished f{id, {}};
    try {
      if constexpr (std::is_void_v<T>) {
        co_await std::move(t);
        f.result.template emplace<1>();
      } else {
        f.result.template emplace<1>(co_await std::move(t));
      }
    } catch (...) {
      f.result.template emplace<2>(std::current_exception());
    }
    done->try_send(std::move(f));  // unbounded: never full
  }

  std::shared_ptr<channel<finished>> done_ = std::make_shared<channel<finished>>();
  std::unordered_map<std::uint64_t, join_handle<void>> handles_;
  std::uint64_t next_id_ = 0;
};

}  // namespace weft
