// weft: when_all and when_any, waiting on several tasks at once.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <type_traits>
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

/// What `co_await` on a source of `when_any` (a task or any awaitable) is done through: its
/// member `operator co_await` when it has one, the object itself otherwise.
template <class A>
struct awaiter_of {
  using type = A;
};
template <class A>
requires requires(A&& a) {
  std::move(a).operator co_await();
}
struct awaiter_of<A> {
  using type = decltype(std::declval<A&&>().operator co_await());
};

/// What awaiting `A` gives, as when_any stores it: references stay references, rvalue results
/// become values.
template <class A>
using awaited_t = std::conditional_t<
    std::is_lvalue_reference_v<
        decltype(std::declval<typename awaiter_of<A>::type&>().await_resume())>,
    decltype(std::declval<typename awaiter_of<A>::type&>().await_resume()),
    std::remove_cvref_t<decltype(std::declval<typename awaiter_of<A>::type&>().await_resume())>>;

/// An awaitable that can take back what it gave (a channel or queue receive): lossless in
/// when_any.
template <class A>
concept gives_back = !std::is_void_v<awaited_t<A>> && requires(A & a, awaited_t<A>&& v) {
  a.give_back(std::move(v));
};

/// Awaits `source` (in place: it stays in the when_any awaitable, so a loser can give back what
/// it received) and stores its outcome in `out`, then tells the counter which child it was.
template <class R, class Source>
child run_source(Source& source, outcome<R>& out, join_counter& counter, std::size_t index) {
  bool failed = false;
  try {
    if constexpr (std::is_void_v<R>) {
      co_await std::move(source);
      out.set_value();
    } else {
      out.set_value(co_await std::move(source));
    }
  } catch (...) {
    out.set_error(std::current_exception());
    failed = true;
  }
  counter.child_finished(index, failed);
}

/// A loser that completed with a value: give the value back when its source can take it,
/// drop it otherwise (documented on when_any).
template <class R, class Source>
void settle_loser(Source& source, outcome<R>& out) {
  if constexpr (gives_back<Source>) {
    if (out.has_value()) source.give_back(out.take());
  }
}

template <class... Sources>
class when_any_awaitable {
 public:
  explicit when_any_awaitable(Sources... sources) : sources_(std::move(sources)...) {}

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> awaiting) {
    race_scope_.emplace(scope_of(awaiting));
    counter_.emplace(sizeof...(Sources), &*race_scope_);
    counter_->stop_on_first = &*race_scope_;
    make_children(std::index_sequence_for<Sources...>{});
    return counter_->start(awaiting, [&] {
      for (auto& c : children_) c.start(*counter_);
    });
  }

  std::variant<stored_t<awaited_t<Sources>>...> await_resume() {
    const std::size_t winner = counter_->first_done.load();
    settle_losers(winner, std::index_sequence_for<Sources...>{});
    std::optional<std::variant<stored_t<awaited_t<Sources>>...>> result;
    take_winner(winner, result, std::index_sequence_for<Sources...>{});
    return std::move(*result);
  }

 private:
  template <std::size_t... I>
  void make_children(std::index_sequence<I...>) {
    ((children_[I] = run_source(std::get<I>(sources_), std::get<I>(outcomes_), *counter_, I)), ...);
  }
  // From the last to the first, so that losers that took items of one channel put them back in
  // the order they took them (each goes to the front).
  template <std::size_t... I>
  void settle_losers(std::size_t winner, std::index_sequence<I...>) {
    constexpr std::size_t n = sizeof...(I);
    ((n - 1 - I != winner
          ? settle_loser(std::get<n - 1 - I>(sources_), std::get<n - 1 - I>(outcomes_))
          : void()),
     ...);
  }
  template <class Result, std::size_t... I>
  void take_winner(std::size_t winner, Result& result, std::index_sequence<I...>) {
    ((I == winner ? (void)result.emplace(std::in_place_index<I>, std::get<I>(outcomes_).take())
                  : void()),
     ...);
  }

  std::tuple<Sources...> sources_;
  std::tuple<outcome<awaited_t<Sources>>...> outcomes_;
  std::optional<linked_cancel_scope> race_scope_;
  std::optional<join_counter> counter_;
  child children_[sizeof...(Sources)];
};

template <class Source>
class when_any_range_awaitable {
  using R = awaited_t<Source>;

 public:
  explicit when_any_range_awaitable(std::vector<Source> sources)
      : sources_(std::move(sources)), outcomes_(sources_.size()) {}

  bool await_ready() const {
    if (sources_.empty()) throw std::invalid_argument("weft::when_any: an empty vector");
    return false;
  }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> awaiting) {
    race_scope_.emplace(scope_of(awaiting));
    counter_.emplace(sources_.size(), &*race_scope_);
    counter_->stop_on_first = &*race_scope_;
    children_.reserve(sources_.size());
    for (std::size_t i = 0; i < sources_.size(); ++i) {
      children_.push_back(run_source(sources_[i], outcomes_[i], *counter_, i));
    }
    return counter_->start(awaiting, [&] {
      for (auto& c : children_) c.start(*counter_);
    });
  }

  std::pair<std::size_t, stored_t<R>> await_resume() {
    const std::size_t winner = counter_->first_done.load();
    for (std::size_t i = sources_.size(); i-- > 0;) {
      if (i != winner) settle_loser(sources_[i], outcomes_[i]);
    }
    return {winner, outcomes_[winner].take()};
  }

 private:
  std::vector<Source> sources_;
  std::vector<outcome<R>> outcomes_;
  std::optional<linked_cancel_scope> race_scope_;
  std::optional<join_counter> counter_;
  std::vector<child> children_;
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

/// Waits for the first of several tasks or awaitables to finish: `co_await when_any(a.recv(),
/// b.recv())`, `co_await when_any(task1(), sleep_for(1s), ch.recv())`.
///
/// Each source runs concurrently in a scope of its own, linked to the caller's; as soon as one
/// finishes (value or exception) the others are cancelled, and the `co_await` resumes once they
/// have all ended (a loser never outlives the call). Gives a `std::variant` whose `index()`
/// names the winner (`std::monostate` for a void source); rethrows the winner's exception.
///
/// Sources: `task<T>`s and awaitables (anything `co_await` takes: channel and queue receives,
/// sends, sleeps, I/O operations, `join_handle`s...), moved in; they stay inside the awaitable
/// `when_any` returns until it is destroyed.
///
/// Lossless sources: a loser may complete with a value before its cancellation reaches it.
/// **Channel `recv()`, queue `get()` (fifo, lifo, priority)** give such a value back
/// (`give_back`: to the front of the channel, or to its first waiting receiver), so a loop
/// selecting over receives never loses or duplicates an item, also when a channel closes
/// meanwhile. Every other source's late value is dropped: a task's (write the receive inside
/// the `when_any`, not inside a task), a `oneshot::recv()` (its value stays only if the wait
/// was cancelled before it came), a `send()` that completed (its item *was* sent), an I/O
/// operation that completed (its bytes were read or written), a `join_handle` (the task's value).
/// Thread-safety: the sources may finish on different threads; the counter is atomic.
template <class... Sources>
[[nodiscard]] auto when_any(Sources&&... sources) {
  static_assert(sizeof...(Sources) > 0, "weft::when_any needs at least one task or awaitable");
  return detail::when_any_awaitable<std::remove_cvref_t<Sources>...>(
      std::forward<Sources>(sources)...);
}

/// `when_any` over a vector of tasks or awaitables of one type: gives the winner's index and
/// value; the losers are cancelled, waited for and settled as in the variadic form (receives
/// give back what they took). Throws std::invalid_argument when `sources` is empty.
template <class Source>
[[nodiscard]] auto when_any(std::vector<Source> sources) {
  return detail::when_any_range_awaitable<Source>(std::move(sources));
}

}  // namespace weft
