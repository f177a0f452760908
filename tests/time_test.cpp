#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include <weft/weft.hpp>
#include "support.hpp"

using namespace std::chrono_literals;

namespace {

weft::task<> sleep_and_record(std::chrono::milliseconds d, int id, std::vector<int>& order) {
  co_await weft::sleep_for(d);
  order.push_back(id);
}

weft::task<std::vector<int>> sleepers_wake_in_deadline_order() {
  std::vector<int> order;
  weft::task_group group;
  for (int id : {5, 1, 4, 2, 3})
    group.spawn(sleep_and_record(std::chrono::milliseconds(id * 3), id, order));
  co_await group.join();
  co_return order;
}

weft::task<bool> sleep_until_is_not_early() {
  const auto deadline = weft::clock::now() + 20ms;
  co_await weft::sleep_until(deadline);
  const bool past_now = weft::clock::now() >= deadline;
  co_await weft::sleep_until(deadline - 1s);  // in the past: returns at once
  co_await weft::sleep_for(-5ms);
  co_return past_now;
}

weft::task<int> slow_value(std::chrono::milliseconds d, int v) {
  co_await weft::sleep_for(d);
  co_return v;
}

weft::task<bool> timeout_expires() {
  const auto start = weft::clock::now();
  try {
    co_await weft::with_timeout(10ms, slow_value(10s, 1));
  } catch (const std::system_error& e) {
    co_return e.code() == weft::errc::timed_out&& weft::clock::now() - start < 5s;
  }
  co_return false;
}

weft::task<int> timeout_not_reached() {
  co_return co_await weft::with_timeout(5s, slow_value(1ms, 11));
}

// A task that swallows the cancellation and still produces a value: with_timeout must return
// that value rather than drop it.
weft::task<int> ignores_cancel() {
  try {
    co_await weft::sleep_for(10s);
  } catch (const std::system_error&) {
  }
  co_return 99;
}
weft::task<int> timeout_keeps_late_value() {
  co_return co_await weft::with_timeout(1ms, ignores_cancel());
}

weft::task<bool> already_cancelled_sleep_throws() {
  auto inner = []() -> weft::task<bool> {
    try {
      co_await weft::sleep_for(1h);
    } catch (const std::system_error& e) {
      co_return e.code() == weft::errc::cancelled;
    }
    co_return false;
  };
  auto h = weft::spawn(inner());
  h.cancel();  // before it even started
  co_return co_await h;
}

weft::task<bool> cancel_from_another_thread() {
  auto h = weft::spawn(slow_value(1h, 0));
  co_await weft::sleep_for(1ms);
  const auto start = weft::clock::now();
  std::thread canceller([&h] { h.cancel(); });
  const bool ok = co_await weft::testing::ends_cancelled(h);
  canceller.join();
  co_return ok&& weft::clock::now() - start < 5s;
}

weft::task<bool> stop_token_is_visible() {
  auto inner = []() -> weft::task<bool> {
    std::stop_token token = co_await weft::get_stop_token();
    co_return token.stop_possible() && !token.stop_requested();
  };
  co_return co_await weft::spawn(inner());
}

}  // namespace

TEST_CASE("sleepers wake in deadline order", "[time]") {
  CHECK(weft::run(sleepers_wake_in_deadline_order()) == std::vector<int>{1, 2, 3, 4, 5});
}

TEST_CASE("sleep_until never returns before its deadline", "[time]") {
  CHECK(weft::run(sleep_until_is_not_early()));
}

TEST_CASE("with_timeout: the limit cancels the task and reports timed_out", "[time][timeout]") {
  CHECK(weft::run(timeout_expires()));
  CHECK(weft::run(timeout_not_reached()) == 11);
  CHECK(weft::run(timeout_keeps_late_value()) == 99);
}

TEST_CASE("a sleep whose stop was already requested ends with cancelled", "[time][cancel]") {
  CHECK(weft::run(already_cancelled_sleep_throws()));
}

TEST_CASE("cancel from another thread wakes the sleeper", "[time][cancel][threads]") {
  CHECK(weft::run(cancel_from_another_thread()));
}

TEST_CASE("a task sees its stop token", "[cancel]") {
  CHECK(weft::run(stop_token_is_visible()));
}

TEST_CASE("sleep outside a runtime is a clear error", "[time]") {
  auto nap = []() -> weft::task<> { co_await weft::sleep_for(1ms); };
  CHECK(weft::testing::fails_outside_runtime(nap()));
}

TEST_CASE("timer heap keeps order under random insertions and removals", "[time][timer_heap]") {
  std::mt19937 rng(12345);
  std::vector<weft::detail::timer_node> nodes(2000);
  weft::detail::timer_heap heap;
  const auto base = weft::clock::time_point{};
  for (auto& n : nodes) {
    n.deadline = base + std::chrono::microseconds(rng() % 100000);
    heap.push(n);
  }
  // Remove a third of them from arbitrary positions.
  for (std::size_t i = 0; i < nodes.size(); i += 3) heap.remove(nodes[i]);
  heap.remove(nodes[0]);  // removing twice is harmless
  std::vector<weft::clock::time_point> popped;
  while (auto* n = heap.pop_expired(base + 1h)) {
    CHECK_FALSE(n->queued());
    popped.push_back(n->deadline);
  }
  CHECK(popped.size() == nodes.size() - (nodes.size() + 2) / 3);
  CHECK(std::is_sorted(popped.begin(), popped.end()));
  CHECK(heap.empty());
}

namespace {

// User code that only knows std::stop_token: a std::stop_callback on the task's token must
// fire when the task is cancelled, and the token must then report stop_requested().
weft::task<bool> std_stop_callback_fires(bool& fired) {
  std::stop_token token = co_await weft::get_stop_token();
  std::stop_callback callback(token, [&fired] { fired = true; });
  try {
    co_await weft::sleep_for(1h);
  } catch (const std::system_error&) {
  }
  co_return token.stop_requested();
}

weft::task<bool> cancel_reaches_std_stop_token() {
  bool fired = false;
  auto h = weft::spawn(std_stop_callback_fires(fired));
  co_await weft::sleep_for(1ms);
  h.cancel();
  const bool requested = co_await h;
  co_return requested&& fired;
}

}  // namespace

TEST_CASE("cancelling a task stops its std::stop_token and runs std::stop_callbacks", "[cancel]") {
  CHECK(weft::run(cancel_reaches_std_stop_token()));
}

namespace {

weft::task<int> quick_value() {
  co_await weft::sleep_for(1ms);
  co_return 4;
}

weft::task<bool> huge_durations_mean_forever() {
  // A limit of "forever" must not overflow into the past and time out at once.
  const int a = co_await weft::with_timeout(std::chrono::hours::max(), quick_value());
  const int b = co_await weft::with_timeout(weft::clock::duration::max(), quick_value());
  auto sleeper =
      weft::spawn([]() -> weft::task<> { co_await weft::sleep_for(std::chrono::hours::max()); }());
  co_await weft::sleep_for(5ms);
  const bool still_sleeping = !sleeper.is_finished();
  sleeper.cancel();
  const bool cancelled = co_await weft::testing::ends_cancelled(sleeper);
  co_return a == 4 && b == 4 && still_sleeping&& cancelled;
}

weft::task<bool> yield_is_a_cancellation_point() {
  auto spinner = weft::spawn([]() -> weft::task<> {
    for (;;) co_await weft::yield_now();
  }());
  co_await weft::sleep_for(2ms);
  spinner.cancel();
  try {
    co_await spinner;
  } catch (const std::system_error& e) {
    co_return e.code() == weft::errc::cancelled;
  }
  co_return false;
}

weft::task<int> busy_yielding(std::chrono::milliseconds d) {
  const auto start = weft::clock::now();
  while (weft::clock::now() - start < d) co_await weft::yield_now();
  co_return 7;
}

weft::task<bool> timeout_stops_a_yielding_loop() {
  const auto start = weft::clock::now();
  try {
    co_await weft::with_timeout(20ms, busy_yielding(10s));
  } catch (const std::system_error& e) {
    co_return e.code() == weft::errc::timed_out&& weft::clock::now() - start < 5s;
  }
  co_return false;
}

weft::task<> spin_forever() {
  for (;;) co_await weft::yield_now();
}

weft::task<int> leaves_a_spinner_behind() {
  weft::spawn(spin_forever()).detach();
  co_await weft::yield_now();
  co_return 1;
}

}  // namespace

TEST_CASE("durations too large for the clock mean forever, not the past", "[time]") {
  CHECK(weft::run(huge_durations_mean_forever()));
}

TEST_CASE("yield_now is a cancellation point", "[time][cancel]") {
  CHECK(weft::run(yield_is_a_cancellation_point()));
  CHECK(weft::run(timeout_stops_a_yielding_loop()));
  CHECK(weft::run(leaves_a_spinner_behind()) == 1);  // shutdown stops the spinner
}
