#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include <weft/weft.hpp>
#include "support.hpp"

using namespace std::chrono_literals;

namespace {

weft::task<int> value_after(std::chrono::milliseconds d, int v) {
  co_await weft::sleep_for(d);
  co_return v;
}
weft::task<std::string> text_now(std::string s) {
  co_return s;
}
weft::task<> sleep_ms(std::chrono::milliseconds d) {
  co_await weft::sleep_for(d);
}
weft::task<int> fail_after(std::chrono::milliseconds d, std::string what) {
  co_await weft::sleep_for(d);
  throw std::runtime_error(what);
}
weft::task<> record_cancel(bool& was_cancelled) {
  try {
    co_await weft::sleep_for(10s);
  } catch (const std::system_error& e) {
    was_cancelled = e.code() == weft::errc::cancelled;
    throw;
  }
}

weft::task<bool> all_variadic() {
  const auto start = weft::clock::now();
  auto [a, b, c] = co_await weft::when_all(value_after(20ms, 1), text_now("x"), sleep_ms(20ms));
  const auto elapsed = weft::clock::now() - start;
  static_assert(std::is_same_v<decltype(c), std::monostate>);
  co_return a == 1 && b == "x" && elapsed < 1s;  // concurrent, not 40 ms + queueing
}

weft::task<int> all_range() {
  std::vector<weft::task<int>> tasks;
  for (int i = 0; i < 100; ++i) tasks.push_back(value_after(std::chrono::milliseconds(i % 5), i));
  auto values = co_await weft::when_all(std::move(tasks));
  int sum = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (values[i] != static_cast<int>(i)) co_return -1;  // order is the input order
    sum += values[i];
  }
  co_return sum;
}

weft::task<std::string> all_first_failure() {
  try {
    co_await weft::when_all(fail_after(20ms, "late"), fail_after(1ms, "early"),
                            value_after(5ms, 1));
  } catch (const std::runtime_error& e) {
    co_return e.what();
  }
  co_return "no exception";
}

weft::task<bool> any_first_wins_and_losers_are_cancelled() {
  bool loser_cancelled = false;
  const auto start = weft::clock::now();
  auto result = co_await weft::when_any(value_after(1ms, 7), record_cancel(loser_cancelled));
  co_return result.index() == 0 && std::get<0>(result) == 7 &&
      loser_cancelled&& weft::clock::now() - start < 5s;
}

weft::task<std::string> any_rethrows_winner() {
  try {
    co_await weft::when_any(fail_after(1ms, "winner failed"), value_after(1s, 1));
  } catch (const std::runtime_error& e) {
    co_return e.what();
  }
  co_return "no exception";
}

weft::task<> group_member(int& done, std::chrono::milliseconds d) {
  co_await weft::sleep_for(d);
  ++done;
}

weft::task<int> group_waits_for_all() {
  int done = 0;
  weft::task_group group;
  for (int i = 0; i < 10; ++i) group.spawn(group_member(done, std::chrono::milliseconds(i)));
  co_await group.join();
  co_return done;
}

weft::task<bool> group_first_failure_cancels_siblings() {
  bool sibling_cancelled = false;
  weft::task_group group;
  group.spawn(record_cancel(sibling_cancelled));
  group.spawn(fail_after(2ms, "member failed"));
  const auto start = weft::clock::now();
  try {
    co_await group.join();
  } catch (const std::runtime_error& e) {
    co_return std::string(e.what()) == "member failed" &&
        sibling_cancelled&& group.running() == 0 && weft::clock::now() - start < 5s;
  }
  co_return false;
}

weft::task<bool> cancelling_the_joiner_cancels_the_group() {
  bool member_cancelled = false;
  auto outer = [](bool& flag) -> weft::task<> {
    weft::task_group group;
    group.spawn(record_cancel(flag));
    co_await group.join();
  };
  auto h = weft::spawn(outer(member_cancelled));
  co_await weft::sleep_for(1ms);
  h.cancel();
  try {
    co_await h;
  } catch (const std::system_error& e) {
    co_return e.code() == weft::errc::cancelled&& member_cancelled;
  }
  co_return false;
}

}  // namespace

TEST_CASE("when_all waits for every task and gives a tuple", "[when_all]") {
  CHECK(weft::run(all_variadic()));
}

TEST_CASE("when_all over a range keeps the input order", "[when_all]") {
  CHECK(weft::run(all_range()) == 4950);
}

TEST_CASE("when_all rethrows the first failure in time", "[when_all]") {
  CHECK(weft::run(all_first_failure()) == "early");
}

TEST_CASE("when_any gives the winner and waits for cancelled losers", "[when_any]") {
  CHECK(weft::run(any_first_wins_and_losers_are_cancelled()));
  CHECK(weft::run(any_rethrows_winner()) == "winner failed");
}

TEST_CASE("task_group joins all children", "[task_group]") {
  CHECK(weft::run(group_waits_for_all()) == 10);
}

TEST_CASE("task_group: the first failure cancels the siblings", "[task_group]") {
  CHECK(weft::run(group_first_failure_cancels_siblings()));
}

TEST_CASE("task_group: cancelling the joining task cancels the children", "[task_group]") {
  CHECK(weft::run(cancelling_the_joiner_cancels_the_group()));
}
