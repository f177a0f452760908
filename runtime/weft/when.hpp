// weft: when_all and when_any, waiting on several tasks at once.
#pragma once

#include <cstddef>
#include <optional>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include <weft/cancel.hpp>
#include <weft/detail/children.hpp>
#include <weft/task.hpp>

namespace weft {

namespace detail {

/// The part shared by the variadic when_all and when_any: the tasks, their outcomes, the
/// counter and the child coroutines, and starting them.
template <class... Ts>
class fixed_children {
 protected:
  explicit fixed_children(task<Ts>... tasks) : tasks_(std::move(tasks)...) {}

  /// Starts every child observing `scope`; false when all finished at once (do not suspend).
  bool start_all(std::coroutine_handle<> awaiting, cancel_scope* scope,
                 cancel_scope* stop_on_first) {
    counter_.emplace(sizeof...(Ts), scope);
    counter_->stop_on_first = stop_on_first;
    make_children(std::index_sequence_for<Ts...>{});
    return counter_->start(awaiting, [&] {
      for (auto& c : children_) c.start(*counter_);
    });
  }

  /// The outcome of child `index`: its value, or rethrows its exception.
  template <std::size_t... I, class Visit>
  void visit_outcome(std::size_t index, std::index_sequence<I...>, Visit&& visit) {
    ((I == index ? (void)visit(std::integral_constant<std::size_t, I>{}, std::get<I>(outcomes_))
                 : (void)0),
     ...);
  }

  std::tuple<outcome<Ts>...> outcomes_;
  std::optional<join_counter> counter_;

 private:
  template <std::size_t... I>
  void make_children(std::index_sequence<I...>) {
    ((children_[I] =
          run_child(std::move(std::get<I>(tasks_)), std::get<I>(outcomes_), *counter_, I)),
     ...);
  }

  std::tuple<task<Ts>...> tasks_;
  child children_[sizeof...(Ts) == 0 ? 1 : sizeof...(Ts)];
};

template <class... Ts>
class when_all_awaitable : private fixed_children<Ts...> {
  using base = fixed_children<Ts...>;

 public:
  explicit when_all_awaitable(task<Ts>... tasks) : base(std::move(tasks)...) {}

  bool await_ready() const noexcept { return sizeof...(Ts) == 0; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> awaiting) {
    return this->start_all(awaiting, scope_of(awaiting), nullptr);
  }

  std::tuple<stored_t<Ts>...> await_resume() {
    if (this->counter_ && this->counter_->first_failed.load() != join_counter::none) {
      this->visit_outcome(this->counter_->first_failed.load(), std::index_sequence_for<Ts...>{},
                          [](auto, auto& failed) { (void)failed.take(); });  // rethrows
    }
    return std::apply([](auto&... o) { return std::tuple<stored_t<Ts>...>(o.take()...); },
                      this->outcomes_);
  }
};

template <class T>
class when_all_range_awaitable {
 public:
  explicit when_all_range_awaitable(std::vector<task<T>> tasks)
      : tasks_(std::move(tasks)), outcomes_(tasks_.size()) {}

  bool await_ready() const noexcept { return tasks_.empty(); }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> awaiting) {
    counter_.emplace(tasks_.size(), scope_of(awaiting));
    children_.reserve(tasks_.size());
    for (std::size_t i = 0; i < tasks_.size(); ++i) {
      children_.push_back(run_child(std::move(tasks_[i]), outcomes_[i], *counter_, i));
    }
    return counter_->start(awaiting, [&] {
      for (auto& c : children_) c.start(*counter_);
    });
  }

  auto await_resume() {
    if (counter_ && counter_->first_failed.load() != join_counter::none) {
      outcomes_[counter_->first_failed.load()].take();  // rethrows
    }
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      std::vector<stored_t<T>> values;
      values.reserve(outcomes_.size());
      for (auto& o : outcomes_) values.push_back(o.take());
      return values;
    }
  }

 private:
  std::vector<task<T>> tasks_;
  std::vector<outcome<T>> outcomes_;
  std::optional<join_counter> counter_;
  std::vector<child> children_;
};

template <class... Ts>
class when_any_awaitable : private fixed_children<Ts...> {
  using base = fixed_children<Ts...>;

 public:
  explicit when_any_awaitable(task<Ts>... tasks) : base(std::move(tasks)...) {}

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> awaiting) {
    race_scope_.emplace(scope_of(awaiting));
    return this->start_all(awaiting, &*race_scope_, &*race_scope_);
  }

  std::variant<stored_t<Ts>...> await_resume() {
    std::optional<std::variant<stored_t<Ts>...>> result;
    this->visit_outcome(this->counter_->first_done.load(), std::index_sequence_for<Ts...>{},
                        [&](auto index, auto& winner) {
                          result.emplace(std::in_place_index<decltype(index)::value>,
                                         winner.take());
                        });
    return std::move(*result);
  }

 private:
  std::optional<linked_cancel_scope> race_scope_;
};

}  // namespace detail

/// Runs every task concurrently and waits for all of them.
///
/// `co_await when_all(a, b, c)` gives a `std::tuple` of their values (`std::monostate` for a
/// `task<void>`, `std::reference_wrapper` for a reference). Every child runs to its end even
/// when one fails; then the exception of the first child to fail (in time) is rethrown and the
/// other results are dropped. The children share the caller's cancel scope.
/// Thread-safety: children may finish on different threads; the counter is atomic.
template <class... Ts>
[[nodiscard]] auto when_all(task<Ts>... tasks) {
  return detail::when_all_awaitable<Ts...>(std::move(tasks)...);
}

/// Runs every task of `tasks` concurrently and waits for all of them. Gives a
/// `std::vector` of their values in order (nothing for `task<void>`); errors as the variadic form.
template <class T>
[[nodiscard]] auto when_all(std::vector<task<T>> tasks) {
  return detail::when_all_range_awaitable<T>(std::move(tasks));
}

/// Runs the tasks concurrently; as soon as one finishes (value or exception) the others are
/// cancelled, and the `co_await` resumes once they have all ended (a loser never outlives the
/// call). Gives a `std::variant` whose `index()` names the winner; rethrows the winner's
/// exception. Values that losers produce after being cancelled are dropped.
template <class... Ts>
[[nodiscard]] auto when_any(task<Ts>... tasks) {
  static_assert(sizeof...(Ts) > 0, "weft::when_any needs at least one task");
  return detail::when_any_awaitable<Ts...>(std::move(tasks)...);
}

}  // namespace weft
