// Deterministic testing: seeded scheduling (run_options::seed) and the paused clock.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>

using namespace std::chrono_literals;

namespace {

// Eight tasks that each yield five times, writing their letter at every turn: the string is
// the interleaving the executor chose.
weft::task<void> writer(std::string& out, char letter) {
  for (int i = 0; i < 5; ++i) {
    out += letter;
    co_await weft::yield_now();
  }
}

weft::task<std::string> interleaving() {
  std::string out;
  std::vector<weft::join_handle<void>> tasks;
  for (char c = 'a'; c < 'a' + 8; ++c) tasks.push_back(weft::spawn(writer(out, c)));
  for (auto& t : tasks) co_await std::move(t);
  co_return out;
}

std::string order_with(std::optional<std::uint64_t> seed, weft::mode m = weft::mode::cooperative) {
  weft::run_options o;
  o.mode = m;
  o.workers = 1;
  o.seed = seed;
  return weft::run(o, interleaving());
}

}  // namespace

TEST_CASE("seed: the same seed gives the same order; seeds differ; no seed is FIFO", "[seed]") {
  if (std::getenv("WEFT_SEED") != nullptr) return;  // the variable would override every seed
  const std::string fifo = order_with(std::nullopt);
  CHECK(fifo == "abcdefghabcdefghabcdefghabcdefghabcdefgh");
  std::set<std::string> orders;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    INFO("seed " << seed);
    const std::string first = order_with(seed);
    CHECK(first == order_with(seed));  // replays
    CHECK(first.size() == fifo.size());
    orders.insert(first);
  }
  CHECK(orders.size() > 1);                   // seeds perturb differently
  CHECK(orders.count(fifo) < orders.size());  // and away from FIFO
  // Single-lock with one thread has one order too.
  CHECK(order_with(7, weft::mode::single_lock) == order_with(7, weft::mode::single_lock));
  CHECK(order_with(7, weft::mode::multi_thread).size() == fifo.size());  // ignored there
}

TEST_CASE("seed: WEFT_SEED wins over run_options and a bad value is ignored", "[seed]") {
  if (std::getenv("WEFT_SEED") != nullptr) return;
  const std::string with_3 = order_with(3);
  ::setenv("WEFT_SEED", "3", 1);
  const std::string env_3 = order_with(std::nullopt);
  ::setenv("WEFT_SEED", "three", 1);
  const std::string bad = order_with(std::nullopt);
  ::unsetenv("WEFT_SEED");
  CHECK(env_3 == with_3);
  CHECK(bad == order_with(std::nullopt));
}

namespace {

weft::run_options paused() {
  weft::run_options o;
  o.paused_clock = true;
  return o;
}

}  // namespace

TEST_CASE("paused clock: sleep(1h) returns at once and now() reads an hour later", "[paused]") {
  const auto real_begin = std::chrono::steady_clock::now();
  const auto slept = weft::run(paused(), []() -> weft::task<std::chrono::nanoseconds> {
    const auto t0 = weft::now();
    co_await weft::sleep_for(1h);
    co_return weft::now() - t0;
  }());
  CHECK(slept >= 1h);
  CHECK(slept < 1h + 1s);  // no drift: time moved by the jump only
  CHECK(std::chrono::steady_clock::now() - real_begin < 10s);  // bounded, not a speed claim
}

TEST_CASE("paused clock: timers fire in deadline order and a timeout expires", "[paused]") {
  auto body = []() -> weft::task<std::string> {
    std::string order;
    auto sleeper = [&order](std::chrono::minutes m, char c) -> weft::task<void> {
      co_await weft::sleep_for(m);
      order += c;
    };
    auto a = weft::spawn(sleeper(30min, 'c'));
    auto b = weft::spawn(sleeper(10min, 'a'));
    auto c = weft::spawn(sleeper(20min, 'b'));
    co_await a;
    co_await b;
    co_await c;
    const auto t0 = weft::now();
    bool timed_out = false;
    try {
      co_await weft::with_timeout(5min, weft::sleep_for(24h));
    } catch (const std::system_error& e) {
      timed_out = e.code() == weft::errc::timed_out;
    }
    CHECK(timed_out);
    CHECK(weft::now() - t0 >= 5min);
    CHECK(weft::now() - t0 < 6min);
    co_return order;
  };
  const auto real_begin = std::chrono::steady_clock::now();
  CHECK(weft::run(paused(), body()) == "abc");
  weft::run_options one = paused();
  one.mode = weft::mode::single_lock;
  one.workers = 1;
  CHECK(weft::run(one, body()) == "abc");
  CHECK(std::chrono::steady_clock::now() - real_begin < 10s);
}

TEST_CASE("paused clock: time stands still while I/O is in flight", "[paused]") {
  // A pipe read that completes only when a thread writes 50 ms (real) later: a 1 h sleep
  // beside it must not jump while the read is pending, so the read wins the race.
  auto body = []() -> weft::task<std::string> {
    auto [in, out] = weft::io::make_pipe().value();
    std::thread writer([fd = out.native_handle()] {
      std::this_thread::sleep_for(50ms);
      [[maybe_unused]] auto n = ::write(fd, "x", 1);
    });
    std::string first;
    auto sleep_then_mark = [&first]() -> weft::task<void> {  // named: the frame points at it
      co_await weft::sleep_for(1h);
      if (first.empty()) first = "sleep";
    };
    auto sleeper = weft::spawn(sleep_then_mark());
    std::array<std::byte, 1> byte{};
    (void)co_await in.read(byte);
    if (first.empty()) first = "read";
    writer.join();
    co_await sleeper;
    co_return first;
  };
  CHECK(weft::run(paused(), body()) == "read");
}

TEST_CASE("paused clock: single-lock with one thread; refused where threads would race",
          "[paused]") {
  weft::run_options one = paused();
  one.mode = weft::mode::single_lock;
  one.workers = 1;
  const auto slept = weft::run(one, []() -> weft::task<std::chrono::nanoseconds> {
    const auto t0 = weft::now();
    co_await weft::sleep_for(1h);
    co_return weft::now() - t0;
  }());
  CHECK(slept >= 1h);
  CHECK(slept < 1h + 1s);
  for (weft::mode m : {weft::mode::single_lock, weft::mode::multi_thread}) {
    weft::run_options o = paused();
    o.mode = m;
    o.workers = 2;
    CHECK_THROWS_AS(weft::run(o, []() -> weft::task<int> { co_return 1; }()),
                    std::invalid_argument);
  }
}
