// run_options::shutdown_timeout: a bounded shutdown when tasks ignore cancellation.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include <weft/weft.hpp>

using namespace std::chrono_literals;

namespace {

const weft::mode all_modes[] = {weft::mode::cooperative, weft::mode::single_lock,
                                weft::mode::multi_thread};

weft::run_options options_for(weft::mode m, std::chrono::nanoseconds timeout) {
  weft::run_options o;
  o.mode = m;
  o.workers = 2;
  o.shutdown_timeout = timeout;
  return o;
}

// A blocking job that runs for 30 s: cancellation cannot interrupt it once it has started.
weft::task<void> sleep_in_blocking_pool(std::atomic<bool>& started) {
  co_await weft::spawn_blocking([&started] {
    started.store(true);
    std::this_thread::sleep_for(30s);
  });
}

// Spawns the stuck task and returns once its job runs (bounded: 10 s).
weft::task<int> main_leaving_a_stuck_task(std::atomic<bool>& started, bool throw_at_end) {
  weft::spawn(sleep_in_blocking_pool(started), weft::task_options{"stuck-sleeper"}).detach();
  for (int i = 0; i < 1000 && !started.load(); ++i) co_await weft::sleep_for(10ms);
  if (throw_at_end) throw std::runtime_error("main failed");
  co_return 1;
}

weft::task<int> main_leaving_a_sleeper() {
  weft::spawn([]() -> weft::task<void> { co_await weft::sleep_for(1h); }(),
              weft::task_options{"napper"})
      .detach();
  co_await weft::yield_now();
  co_return 7;
}

}  // namespace

TEST_CASE("shutdown_timeout: run gives up on a task stuck in spawn_blocking and names it",
          "[shutdown]") {
  for (weft::mode m : all_modes) {
    INFO(weft::to_string(m));
    static std::atomic<bool> started;  // static: the job left behind reads it
    started.store(false);
    const auto begin = std::chrono::steady_clock::now();
    try {
      weft::run(options_for(m, 200ms), main_leaving_a_stuck_task(started, false));
      FAIL("run returned although a task ignored cancellation");
    } catch (const weft::shutdown_timeout_error& e) {
      CHECK(std::string(e.stuck_tasks()).find("stuck-sleeper") != std::string::npos);
      CHECK(std::string(e.what()).find("stuck-sleeper") != std::string::npos);
      CHECK(std::string(e.what()).find("1 task ignored cancellation") != std::string::npos);
    }
    CHECK(started.load());
    // Bounded, not a speed claim: far below the job's 30 s.
    CHECK(std::chrono::steady_clock::now() - begin < 10s);
  }
}

TEST_CASE("shutdown_timeout: main's own exception is nested in the timeout error", "[shutdown]") {
  static std::atomic<bool> started{false};
  try {
    weft::run(options_for(weft::mode::cooperative, 100ms),
              main_leaving_a_stuck_task(started, true));
    FAIL("run returned");
  } catch (const weft::shutdown_timeout_error& e) {
    try {
      std::rethrow_if_nested(e);
      FAIL("main's exception is not nested");
    } catch (const std::runtime_error& inner) {
      CHECK(std::string(inner.what()) == "main failed");
    }
  }
}

// Statics, not locals of the test: a task left behind may still read them after run returned.
std::atomic<bool> spin_release{false};
std::atomic<bool> spinning{false};
std::thread::id spin_caller;

weft::task<void> spinner() {
  // Thread 0 (the caller's) must stay free to end run: move away from it first (a task
  // resumed from the blocking pool goes to the shared queue, where any worker may take it).
  for (int i = 0; i < 1000 && std::this_thread::get_id() == spin_caller; ++i) {
    co_await weft::spawn_blocking([] { std::this_thread::sleep_for(1ms); });
  }
  if (std::this_thread::get_id() == spin_caller) co_return;
  spinning.store(true);
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (!spin_release.load() && std::chrono::steady_clock::now() < until) {
  }  // no check point: cancellation cannot reach it
}

weft::task<void> main_leaving_a_spinner() {
  weft::spawn(spinner(), weft::task_options{"spinner"}).detach();
  // Not a sleep: its timer could sit on the spinner's worker, which never fires it.
  for (int i = 0; i < 1000 && !spinning.load(); ++i) {
    co_await weft::spawn_blocking([] { std::this_thread::sleep_for(10ms); });
  }
}

TEST_CASE("shutdown_timeout: a task spinning on another worker is left behind (multi-thread)",
          "[shutdown]") {
  spin_caller = std::this_thread::get_id();
  const auto begin = std::chrono::steady_clock::now();
  bool timed_out = false;
  try {
    weft::run(options_for(weft::mode::multi_thread, 200ms), main_leaving_a_spinner());
  } catch (const weft::shutdown_timeout_error& e) {
    timed_out = true;
    CHECK(std::string(e.stuck_tasks()).find("spinner") != std::string::npos);
  }
  spin_release.store(true);  // the detached worker leaves its loop
  if (spinning.load()) CHECK(timed_out);
  CHECK(std::chrono::steady_clock::now() - begin < 10s);
}

TEST_CASE("shutdown_timeout: the default path is unchanged", "[shutdown]") {
  CHECK(weft::run_options{}.shutdown_timeout == 5s);
  for (weft::mode m : all_modes) {
    INFO(weft::to_string(m));
    // Tasks that end when cancelled: no error, main's value, with the default and with 0.
    CHECK(weft::run(options_for(m, weft::run_options{}.shutdown_timeout),
                    main_leaving_a_sleeper()) == 7);
    CHECK(weft::run(options_for(m, std::chrono::nanoseconds::max()), main_leaving_a_sleeper()) ==
          7);
    CHECK(weft::run(options_for(m, 0ns), []() -> weft::task<int> { co_return 3; }()) == 3);
  }
}
