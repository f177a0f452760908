#include <catch2/catch.hpp>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include <weft/weft.hpp>
#include "support.hpp"

namespace {

weft::task<int> answer() {
  co_return 42;
}
weft::task<> nothing() {
  co_return;
}
weft::task<std::unique_ptr<int>> move_only_value() {
  co_return std::make_unique<int>(7);
}
weft::task<int&> reference_to(int& x) {
  co_return x;
}
weft::task<int> fails() {
  throw std::runtime_error("boom");
  co_return 0;
}
weft::task<int> add_after(weft::task<int> t, int extra) {
  co_return co_await std::move(t) + extra;
}

weft::task<std::uint64_t> sync_value(std::uint64_t i) {
  co_return i;
}

weft::task<std::uint64_t> loop_of_sync_awaits(std::uint64_t n) {
  std::uint64_t sum = 0;
  for (std::uint64_t i = 0; i < n; ++i) sum += co_await sync_value(i);
  co_return sum;
}

// Records the deepest stack address seen, to prove nesting does not grow the stack.
// A coroutine's locals live in its heap frame, so the stack position is read in a plain function.
thread_local const char* deepest = nullptr;

[[gnu::noinline]] const char* stack_position() {
  return static_cast<const char*>(__builtin_frame_address(0));
}

weft::task<std::uint64_t> nested(std::uint64_t depth) {
  if (depth == 0) {
    deepest = stack_position();
    co_return 0;
  }
  co_return 1 + co_await nested(depth - 1);
}

}  // namespace

TEST_CASE("task is lazy and produces values, void and references", "[task]") {
  bool started = false;
  auto probe = [](bool& flag) -> weft::task<int> {
    flag = true;
    co_return 1;
  };
  auto t = probe(started);  // the lambda has no captures, so its frame outlives nothing
  CHECK_FALSE(started);
  CHECK(weft::run(std::move(t)) == 1);
  CHECK(started);

  CHECK(weft::run(answer()) == 42);
  weft::run(nothing());
  CHECK(*weft::run(move_only_value()) == 7);
  int x = 5;
  int& r = weft::run(reference_to(x));
  CHECK(&r == &x);
  CHECK(weft::run(add_after(answer(), 1)) == 43);
}

TEST_CASE("task exceptions propagate to the awaiter", "[task]") {
  CHECK_THROWS_WITH(weft::run(fails()), "boom");
  CHECK_THROWS_WITH(weft::run(add_after(fails(), 1)), "boom");
}

TEST_CASE("task is move-only and an unstarted task frees its frame", "[task]") {
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<weft::task<int>>);
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<weft::task<int>>);
  weft::task<int> a = answer();
  weft::task<int> b = std::move(a);
  CHECK_FALSE(a.valid());
  CHECK(b.valid());
  // b goes out of scope without running: ASan reports a leak if the frame is not freed.
}

TEST_CASE("awaiting an empty task is a clear error", "[task]") {
  auto outer = []() -> weft::task<int> {
    weft::task<int> empty;
    co_return co_await std::move(empty);
  };
  CHECK_THROWS_AS(weft::run(outer()), std::logic_error);
}

TEST_CASE("1,000,000 synchronous awaits in a loop do not grow the stack", "[task][stack]") {
  std::uint64_t sum = 0;
  weft::testing::run_on_small_stack(512 * 1024,
                                    [&] { sum = weft::run(loop_of_sync_awaits(1'000'000)); });
  CHECK(sum == 999'999ull * 1'000'000ull / 2);
}

TEST_CASE("1,000,000 nested awaits do not grow the stack", "[task][stack]") {
  std::uint64_t depth = 0;
  std::ptrdiff_t growth = 0;
  weft::testing::run_on_small_stack(512 * 1024, [&] {
    const char* top = stack_position();
    depth = weft::run(nested(1'000'000));
    growth = top - deepest;
  });
  CHECK(depth == 1'000'000);
  // Without symmetric transfer the chain would need tens of megabytes of stack.
  CHECK(growth < 64 * 1024);
}

TEST_CASE("generator yields a sequence and rethrows", "[generator]") {
  auto numbers = [](int n) -> weft::generator<int> {
    for (int i = 0; i < n; ++i) co_yield i* i;
  };
  int sum = 0;
  int count = 0;
  for (int v : numbers(5)) {
    sum += v;
    ++count;
  }
  CHECK(count == 5);
  CHECK(sum == 0 + 1 + 4 + 9 + 16);

  auto strings = []() -> weft::generator<std::string> {
    std::string s = "a";
    co_yield s;
    co_yield s + "b";
  };
  std::string joined;
  for (const std::string& s : strings()) joined += s + ",";
  CHECK(joined == "a,ab,");

  auto broken = []() -> weft::generator<int> {
    co_yield 1;
    throw std::runtime_error("generator failed");
  };
  auto g = broken();
  auto it = g.begin();
  CHECK(*it == 1);
  CHECK_THROWS_WITH(++it, "generator failed");

  int empty_count = 0;
  for ([[maybe_unused]] int v : numbers(0)) ++empty_count;
  CHECK(empty_count == 0);
}

namespace {

weft::task<std::string> run_capturing_lambda() {
  auto handle = [] {
    std::string name = "weft";  // owned by the closure, which dies at the end of this scope
    return weft::spawn(weft::invoke([name]() -> weft::task<std::string> {
      co_await weft::sleep_for(std::chrono::milliseconds(2));  // the closure must outlive this
      co_return name + " done";
    }));
  }();
  co_return co_await handle;
}

weft::task<> void_lambda(int& out) {
  co_await weft::invoke([&out]() -> weft::task<> {
    co_await weft::yield_now();
    out = 5;
  });
}

}  // namespace

TEST_CASE("invoke keeps a capturing lambda coroutine's closure alive", "[task]") {
  // Without invoke this is a heap-use-after-free that ASan reports.
  CHECK(weft::run(run_capturing_lambda()) == "weft done");
  int out = 0;
  weft::run(void_lambda(out));
  CHECK(out == 5);
}
