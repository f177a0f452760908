// spawn_blocking and the blocking pool: values, errors, cancellation, limits, several executors.
// Cross-thread by nature: meant to run under ThreadSanitizer too.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <weft/blocking.hpp>
#include <weft/weft.hpp>
#include "support.hpp"
#include "sync_support.hpp"

using namespace std::chrono_literals;

namespace {

constexpr std::size_t default_limit = 64;

// Restores the pool's defaults when a test case ends, however it ends.
struct pool_config {
  explicit pool_config(std::size_t limit, std::chrono::nanoseconds keep_alive = 10s) {
    weft::set_blocking_pool_limit(limit);
    weft::set_blocking_pool_keep_alive(keep_alive);
  }
  pool_config(const pool_config&) = delete;
  pool_config& operator=(const pool_config&) = delete;
  ~pool_config() {
    weft::detail::set_blocking_thread_creation_fails_for_testing(false);
    weft::set_blocking_pool_limit(default_limit);
    weft::set_blocking_pool_keep_alive(10s);
  }
};

// A one-shot gate that blocked jobs wait on.
struct gate {
  std::atomic<bool> is_open{false};
  void wait() const {
    while (!is_open.load()) is_open.wait(false);
  }
  void open() {
    is_open.store(true);
    is_open.notify_all();
  }
};

// Polls `pred` from a plain thread (no executor involved) for up to `limit`.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 3s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// The same from inside a task: sleeps between polls so the executor keeps running.
weft::task<bool> eventually_async(std::function<bool()> pred,
                                  std::chrono::milliseconds limit = 3s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) co_return false;
    co_await weft::sleep_for(1ms);
  }
  co_return true;
}

bool is_cancelled(const std::exception_ptr& e) {
  return weft::testing::holds_error(e, weft::errc::cancelled);
}

// ---------------------------------------------------------------------------------------------

weft::task<bool> value_on_pool_thread() {
  const auto home = std::this_thread::get_id();
  std::thread::id ran_on;
  const int v = co_await weft::spawn_blocking([&ran_on] {
    ran_on = std::this_thread::get_id();
    return 42;
  });
  const bool ok = v == 42 && ran_on != home && std::this_thread::get_id() == home;
  co_return ok;
}

weft::task<int> void_result() {
  int calls = 0;
  co_await weft::spawn_blocking([&calls] { ++calls; });
  co_await weft::spawn_blocking([&calls] { ++calls; });
  co_return calls;
}

weft::task<std::string> exception_result() {
  try {
    co_await weft::spawn_blocking([]() -> int { throw std::runtime_error("boom"); });
  } catch (const std::runtime_error& e) {
    co_return e.what();
  }
  co_return "no exception";
}

// The callables are named before the co_await: g++ 12 destroys a lambda temporary with
// non-trivial captures twice when it is written inside a co_await expression (a compiler bug,
// see spawn_blocking's comment).
weft::task<int> move_only_fn_and_result() {
  auto input = std::make_unique<int>(20);
  auto fn = [p = std::move(input)]() mutable { return std::make_unique<int>(*p + 1); };
  std::unique_ptr<int> out = co_await weft::spawn_blocking(std::move(fn));
  auto fn2 = [q = std::make_unique<int>(21)]() mutable { return std::move(q); };
  std::unique_ptr<int> out2 = co_await weft::spawn_blocking(std::move(fn2));
  co_return *out + *out2;
}

weft::task<std::string> copied_fn() {
  const std::string greeting = "hello";
  const auto fn = [greeting] { return greeting + " world"; };
  co_return co_await weft::spawn_blocking(fn);  // an lvalue: copied into the awaitable
}

weft::task<> awaits_blocking() {
  co_await weft::spawn_blocking([] { return 1; });
}

}  // namespace

TEST_CASE("spawn_blocking gives fn's value, void, exception, move-only fn and result",
          "[blocking]") {
  CHECK(weft::run(value_on_pool_thread()));
  CHECK(weft::run(void_result()) == 2);
  CHECK(weft::run(exception_result()) == "boom");
  CHECK(weft::run(move_only_fn_and_result()) == 42);
  CHECK(weft::run(copied_fn()) == "hello world");
  CHECK(weft::testing::fails_outside_runtime(awaits_blocking()));
}

namespace {

weft::task<> sleep_on_pool(std::chrono::milliseconds d) {
  co_await weft::spawn_blocking([d] { std::this_thread::sleep_for(d); });
}

weft::task<double> hundred_sleepers() {
  const auto start = std::chrono::steady_clock::now();
  weft::task_group group;
  for (int i = 0; i < 100; ++i) group.spawn(sleep_on_pool(50ms));
  co_await group.join();
  co_return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

TEST_CASE("100 blocking sleeps of 50 ms run concurrently", "[blocking]") {
  pool_config config(32);
  const auto before = weft::blocking_pool_stats().jobs_run;
  const double seconds = weft::run(hundred_sleepers());
  INFO("100 x 50 ms took " << seconds << " s");
  CHECK(seconds < 2.5);
  CHECK(weft::blocking_pool_stats().jobs_run - before >= 100);
  CHECK(weft::blocking_pool_stats().threads <= 32);
}

namespace {

weft::task<> wait_gate(gate& g, std::atomic<int>& done) {
  co_await weft::spawn_blocking([&g] { g.wait(); });
  done.fetch_add(1);
}

weft::task<bool> limit_respected(std::size_t limit, std::size_t extra) {
  gate g;
  std::atomic<int> done{0};
  std::atomic<std::size_t> most_threads{0};
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling.load()) {
      const std::size_t t = weft::blocking_pool_stats().threads;
      if (t > most_threads.load()) most_threads.store(t);
      std::this_thread::sleep_for(100us);
    }
  });
  std::vector<weft::join_handle<void>> handles;
  for (std::size_t i = 0; i < limit + extra; ++i)
    handles.push_back(weft::spawn(wait_gate(g, done)));
  const bool saturated = co_await eventually_async([&] {
    const auto s = weft::blocking_pool_stats();
    return s.busy == limit && s.queued == extra;
  });
  const auto s = weft::blocking_pool_stats();
  g.open();
  for (auto& h : handles) co_await h;
  sampling.store(false);
  sampler.join();
  INFO("threads " << s.threads << " busy " << s.busy << " queued " << s.queued << " most "
                  << most_threads.load());
  const bool ok = saturated && s.threads == limit &&
                  done.load() == static_cast<int>(limit + extra) && most_threads.load() <= limit &&
                  weft::blocking_pool_stats().queued == 0;
  co_return ok;
}

}  // namespace

TEST_CASE("the pool never has more threads than its limit; extra jobs wait", "[blocking]") {
  constexpr std::size_t limit = 4;
  pool_config config(limit);
  // Threads left by earlier cases above the new limit exit once idle.
  REQUIRE(eventually([] { return weft::blocking_pool_stats().threads <= limit; }));
  CHECK(weft::run(limit_respected(limit, 3)));
  CHECK_THROWS_AS(weft::set_blocking_pool_limit(0), std::invalid_argument);
}

namespace {

weft::task<> mark_if_run(std::atomic<bool>& ran) {
  co_await weft::spawn_blocking([&ran] { ran.store(true); });
}

weft::task<bool> cancel_queued_job() {
  gate g;
  std::atomic<int> done{0};
  auto b1 = weft::spawn(wait_gate(g, done));
  auto b2 = weft::spawn(wait_gate(g, done));
  REQUIRE(co_await eventually_async([] { return weft::blocking_pool_stats().busy == 2; }));
  std::atomic<bool> ran{false};
  auto queued = weft::spawn(mark_if_run(ran));
  REQUIRE(co_await eventually_async([] { return weft::blocking_pool_stats().queued == 1; }));
  queued.cancel();
  const std::exception_ptr queued_error = co_await weft::testing::error_of(queued);
  const bool threw_cancelled = is_cancelled(queued_error);
  const bool withdrawn = weft::blocking_pool_stats().queued == 0;
  // Stopped before its first wait: never queued at all.
  std::atomic<bool> ran2{false};
  auto early = weft::spawn(mark_if_run(ran2));
  early.cancel();
  const std::exception_ptr early_error = co_await weft::testing::error_of(early);
  const bool early_cancelled = is_cancelled(early_error);
  g.open();
  co_await b1;
  co_await b2;
  const bool ok = threw_cancelled && withdrawn && early_cancelled && !ran.load() && !ran2.load() &&
                  done.load() == 2;
  co_return ok;
}

}  // namespace

TEST_CASE("a job cancelled before it starts never runs and throws cancelled", "[blocking]") {
  pool_config config(2);
  REQUIRE(eventually([] { return weft::blocking_pool_stats().threads <= 2; }));
  CHECK(weft::run(cancel_queued_job()));
}

namespace {

struct started_job_state {
  gate g;
  std::atomic<bool> started{false};
  std::atomic<bool> finished{false};
  bool finished_seen_at_resume = false;
};

weft::task<int> started_job(started_job_state& st) {
  const int v = co_await weft::spawn_blocking([&st] {
    st.started.store(true);
    st.g.wait();
    st.finished.store(true);
    return 7;
  });
  st.finished_seen_at_resume = st.finished.load();
  co_return v;
}

weft::task<bool> cancel_started_job() {
  started_job_state st;
  auto h = weft::spawn(started_job(st));
  REQUIRE(co_await eventually_async([&st] { return st.started.load(); }));
  h.cancel();
  co_await weft::sleep_for(20ms);
  const bool still_waiting = !h.is_finished();
  st.g.open();
  const int v = co_await h;
  const bool ok = still_waiting && v == 7 && st.finished_seen_at_resume;
  co_return ok;
}

}  // namespace

TEST_CASE("a job cancelled after it started runs to completion and gives its value", "[blocking]") {
  CHECK(weft::run(cancel_started_job()));
}

namespace {

// Resumed on its own executor (on the multi-thread one, possibly another of its workers; never on
// a pool thread, where no executor runs).
weft::task<long> sum_on_pool(int n) {
  weft::executor* const home = weft::executor::current();
  long sum = 0;
  for (int i = 0; i < n; ++i) {
    sum += co_await weft::spawn_blocking([i] { return i; });
    if (weft::executor::current() != home) co_return -1;
  }
  co_return sum;
}

weft::task<long> many_from_one_executor(int tasks, int per_task) {
  std::vector<weft::task<long>> children;
  for (int t = 0; t < tasks; ++t) children.push_back(sum_on_pool(per_task));
  const std::vector<long> sums = co_await weft::when_all(std::move(children));
  long total = 0;
  for (long s : sums) total += s;
  co_return total;
}

}  // namespace

TEST_CASE("several executors on their own threads share the pool", "[blocking]") {
  pool_config config(16);
  constexpr int executors = 4, tasks = 20, per_task = 25;
  std::vector<long> totals(executors, 0);
  std::vector<std::thread> threads;
  for (int e = 0; e < executors; ++e) {
    threads.emplace_back(
        [&totals, e] { totals[e] = weft::run(many_from_one_executor(tasks, per_task)); });
  }
  for (auto& t : threads) t.join();
  const long expected = tasks * (per_task * (per_task - 1) / 2);
  for (long total : totals) CHECK(total == expected);
  CHECK(weft::blocking_pool_stats().threads <= 16);
}

namespace {

weft::task<> tick(std::atomic<int>& ticks) {
  for (;;) {
    co_await weft::sleep_for(5ms);
    ticks.fetch_add(1);
  }
}

weft::task<int> ticks_while_blocked() {
  std::atomic<int> ticks{0};
  auto ticker = weft::spawn(tick(ticks));
  co_await weft::spawn_blocking([] { std::this_thread::sleep_for(150ms); });
  const int seen = ticks.load();
  ticker.cancel();
  try {
    co_await ticker;
  } catch (const std::system_error&) {
  }
  co_return seen;
}

}  // namespace

TEST_CASE("the executor runs other tasks while a job blocks", "[blocking]") {
  const int ticks = weft::run(ticks_while_blocked());
  INFO(ticks << " ticks of 5 ms during a 150 ms job");
  CHECK(ticks >= 5);
}

namespace {

weft::task<int> blocking_under_timeout(std::chrono::milliseconds job,
                                       std::chrono::milliseconds limit) {
  co_return co_await weft::with_timeout(limit, weft::spawn_blocking([job] {
                                          std::this_thread::sleep_for(job);
                                          return 5;
                                        }));
}

weft::task<bool> timeout_of_queued_job() {
  gate g;
  std::atomic<int> done{0};
  auto blocker = weft::spawn(wait_gate(g, done));
  REQUIRE(co_await eventually_async([] { return weft::blocking_pool_stats().busy == 1; }));
  const bool timed_out = co_await weft::testing::ends_timed_out(blocking_under_timeout(1ms, 20ms));
  g.open();
  co_await blocker;
  co_return timed_out;
}

}  // namespace

TEST_CASE("with_timeout: a started job is waited for, a queued one times out", "[blocking]") {
  CHECK(weft::run(blocking_under_timeout(100ms, 10ms)) == 5);
  pool_config config(1);
  REQUIRE(eventually([] { return weft::blocking_pool_stats().threads <= 1; }));
  CHECK(weft::run(timeout_of_queued_job()));
}

namespace {

weft::task<bool> shutdown_waits_for_started_job(std::atomic<bool>& finished) {
  std::atomic<bool> started{false};
  weft::spawn(weft::invoke([&started, &finished]() -> weft::task<> {
    co_await weft::spawn_blocking([&started, &finished] {
      started.store(true);
      std::this_thread::sleep_for(50ms);
      finished.store(true);
    });
  })).detach();
  co_return co_await eventually_async([&started] { return started.load(); });
}

}  // namespace

TEST_CASE("run's shutdown waits for a started job of a detached task", "[blocking]") {
  std::atomic<bool> finished{false};
  CHECK(weft::run(shutdown_waits_for_started_job(finished)));
  CHECK(finished.load());
}

namespace {

weft::task<> count_outcome(std::atomic<int>& fn_runs, std::atomic<int>& values,
                           std::atomic<int>& cancels) {
  try {
    const int v = co_await weft::spawn_blocking([&fn_runs] {
      fn_runs.fetch_add(1);
      return 1;
    });
    values.fetch_add(v);
  } catch (const std::system_error& e) {
    if (e.code() != weft::errc::cancelled) throw;
    cancels.fetch_add(1);
  }
}

weft::task<bool> cancel_races(int n) {
  std::atomic<int> fn_runs{0}, values{0}, cancels{0};
  std::vector<weft::join_handle<void>> handles;
  for (int i = 0; i < n; ++i)
    handles.push_back(weft::spawn(count_outcome(fn_runs, values, cancels)));
  std::thread canceller([&handles] {
    for (std::size_t i = 0; i < handles.size(); i += 2) handles[i].cancel();
  });
  co_await weft::sleep_for(1ms);
  canceller.join();
  for (auto& h : handles) co_await h;
  INFO("ran " << fn_runs.load() << " cancelled " << cancels.load());
  const bool ok = fn_runs.load() == values.load() && values.load() + cancels.load() == n;
  co_return ok;
}

}  // namespace

TEST_CASE("cancels from another thread race job starts without loss or double resume",
          "[blocking]") {
  pool_config config(8);
  for (int round = 0; round < 5; ++round) CHECK(weft::run(cancel_races(1000)));
  CHECK(weft::blocking_pool_stats().queued == 0);
}

TEST_CASE("spawn_blocking works on every executor mode", "[blocking]") {
  pool_config config(8);
  for (const weft::run_options& options : weft::testing::every_mode(4)) {
    INFO("mode " << weft::to_string(options.mode));
    CHECK(weft::run(options, many_from_one_executor(8, 20)) == 8 * (20 * 19 / 2));
    for (int round = 0; round < 3; ++round) CHECK(weft::run(options, cancel_races(500)));
  }
}

namespace {

weft::task<bool> creation_fails_with_no_thread(std::atomic<bool>& ran) {
  try {
    co_await weft::spawn_blocking([&ran] { ran.store(true); });
  } catch (const std::system_error& e) {
    co_return e.code() == std::errc::resource_unavailable_try_again;
  }
  co_return false;
}

weft::task<int> creation_fails_with_a_thread_alive() {
  gate g;
  std::atomic<int> done{0};
  auto blocker = weft::spawn(wait_gate(g, done));
  REQUIRE(co_await eventually_async([] { return weft::blocking_pool_stats().busy == 1; }));
  weft::detail::set_blocking_thread_creation_fails_for_testing(true);
  auto h = weft::spawn(weft::invoke(
      []() -> weft::task<int> { co_return co_await weft::spawn_blocking([] { return 5; }); }));
  // No new thread: the job waits for the busy one.
  REQUIRE(co_await eventually_async([] { return weft::blocking_pool_stats().queued == 1; }));
  const bool one_thread = weft::blocking_pool_stats().threads == 1;
  g.open();
  const int v = co_await h;
  co_await blocker;
  co_return one_thread ? v : -1;
}

}  // namespace

TEST_CASE("idle threads exit after the keep-alive; thread creation failures reach the awaiter",
          "[blocking]") {
  pool_config config(2, 10ms);
  REQUIRE(eventually([] { return weft::blocking_pool_stats().threads == 0; }));
  weft::detail::set_blocking_thread_creation_fails_for_testing(true);
  std::atomic<bool> ran{false};
  CHECK(weft::run(creation_fails_with_no_thread(ran)));
  CHECK_FALSE(ran.load());
  CHECK(weft::blocking_pool_stats().queued == 0);
  weft::detail::set_blocking_thread_creation_fails_for_testing(false);
  weft::set_blocking_pool_keep_alive(10s);
  CHECK(weft::run(creation_fails_with_a_thread_alive()) == 5);
}

// ThreadSanitizer stops a child of a multi-threaded process that starts threads
// (die_after_fork), which this test does on purpose.
#if !defined(__SANITIZE_THREAD__)
namespace {

weft::task<int> one_job() {
  co_return co_await weft::spawn_blocking([] { return 11; });
}

}  // namespace

TEST_CASE("a child of fork() starts with an empty, working pool", "[blocking]") {
  pool_config config(4);
  REQUIRE(weft::run(one_job()) == 11);  // the parent's pool has a thread now
  REQUIRE(weft::blocking_pool_stats().threads >= 1);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const bool empty = weft::blocking_pool_stats().threads == 0;
    int value = 0;
    try {
      value = weft::run(one_job());
    } catch (...) {
    }
    ::_exit(empty && value == 11 ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
#endif
