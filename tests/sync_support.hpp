// Helpers shared by the sync, channel and queue tests: executors on threads of their own, and a
// harness that races a grant against a cancel.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <random>
#include <system_error>
#include <thread>
#include <vector>

#include <weft/event.hpp>
#include <weft/weft.hpp>

namespace weft::testing {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif

/// `normal` in a plain build, `reduced` under a sanitizer (which runs 5 to 20 times slower).
constexpr int scaled(int normal, int reduced) {
  return sanitized ? reduced : normal;
}

/// Run options for each executor mode this machine offers (cooperative, single-lock,
/// multi-thread), each with `workers` threads: for a test that runs one body on every mode.
inline std::vector<weft::run_options> every_mode(unsigned workers) {
  std::vector<weft::run_options> out;
  for (const weft::mode m :
       {weft::mode::cooperative, weft::mode::single_lock, weft::mode::multi_thread}) {
    if (!weft::mode_available(m)) continue;
    weft::run_options options;
    options.mode = m;
    options.workers = workers;
    out.push_back(options);
  }
  return out;
}

/// `n` cooperative executors, each running its loop on a thread of its own until the pool is
/// destroyed. Tasks reach them with `weft::spawn_on(pool[i], ...)`; join every such task before
/// the pool goes (the executors cancel what is still running when they stop).
class executor_pool {
 public:
  explicit executor_pool(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      executors_.push_back(std::make_unique<weft::sched::cooperative>());
    }
    for (auto& ex : executors_) {
      threads_.emplace_back([this, e = ex.get()] { e->block_on(serve(stop_)); });
    }
  }
  executor_pool(const executor_pool&) = delete;
  executor_pool& operator=(const executor_pool&) = delete;
  ~executor_pool() {
    stop_.set();
    for (auto& t : threads_) t.join();
  }

  weft::executor& operator[](std::size_t i) { return *executors_[i % executors_.size()]; }
  std::size_t size() const { return executors_.size(); }

 private:
  static weft::task<> serve(weft::event& stop) { co_await stop.wait(); }

  weft::event stop_;
  std::vector<std::unique_ptr<weft::sched::cooperative>> executors_;
  std::vector<std::thread> threads_;
};

/// Busy-waits about `n` short steps (shifts the timing of a race without a system call).
inline void spin(unsigned n) {
  for (unsigned i = 0; i < n; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
}

/// True when `items` holds 0, 1, ..., n - 1, each exactly once, in any order: what a stress test
/// that sends each number once must get back, nothing lost and nothing delivered twice.
inline bool each_once(std::vector<int> items, int n) {
  std::sort(items.begin(), items.end());
  if (items.size() != static_cast<std::size_t>(n)) return false;
  for (int i = 0; i < n; ++i) {
    if (items[static_cast<std::size_t>(i)] != i) return false;
  }
  return true;
}

/// Races a grant against a cancel, `rounds` times. Each round spawns `make_waiter(started)` (a
/// `task<bool>`: true when it obtained the resource; it sets `started` just before it waits) on
/// `home` and, once it started, grants the resource (`grant()`) and requests stop on the waiter:
/// in turn grant then stop, stop then grant (both from this thread), and both at once from two
/// threads after random short delays. `check(got)` then verifies that nothing was lost or given
/// twice. Returns how many rounds the waiter got the resource.
template <class MakeWaiter, class Grant, class Check>
weft::task<int> race_grant_and_cancel(weft::executor& home, int rounds, MakeWaiter make_waiter,
                                      Grant grant, Check check) {
  int got_count = 0;
  std::minstd_rand rng(20240601);
  for (int round = 0; round < rounds; ++round) {
    std::atomic<bool> started{false};
    std::atomic<bool> ready{false};
    std::atomic<bool> go{false};
    std::atomic<bool> granting{false};
    const unsigned grant_delay = rng() % 3000;
    const unsigned cancel_delay = rng() % 3000;
    auto handle = weft::spawn_on(home, make_waiter(started));
    std::thread granter;
    if (round % 3 == 2) {
      granter = std::thread([&] {
        ready.store(true);
        while (!go.load()) std::this_thread::yield();
        granting.store(true);  // both threads are on a CPU now: the delays decide the race
        spin(grant_delay);
        grant();
      });
    } else {
      ready.store(true);
    }
    while (!started.load() || !ready.load()) std::this_thread::yield();
    if (round % 3 == 0) grant();
    go.store(true);
    if (granter.joinable()) {
      // Spin a little first: a yield can hand this CPU away for a while.
      for (int i = 0; i < 20000 && !granting.load(); ++i) spin(1);
      while (!granting.load()) std::this_thread::yield();
    }
    spin(cancel_delay);
    handle.cancel();
    if (round % 3 == 1) grant();
    bool got = false;
    try {
      got = co_await handle;
    } catch (const std::system_error& e) {
      if (e.code() != weft::errc::cancelled) {
        if (granter.joinable()) granter.join();
        throw;
      }
    }
    if (granter.joinable()) granter.join();
    check(got);
    got_count += got ? 1 : 0;
  }
  co_return got_count;
}

/// A one-slot container as check_room_race sees it (a channel or a queue of capacity 1):
/// `bool try_put(int)`, `std::optional<int> try_take()`, `put(int)` (awaitable: waits for room)
/// and `std::size_t size()`.
template <class Slot>
weft::task<bool> put_report(Slot& slot, std::atomic<bool>& started, int item) {
  started.store(true);
  co_await slot.put(item);
  co_return true;
}

/// A stop racing a take that makes room never loses the put waiting for that room, nor puts it
/// twice: each round fills a fresh `Slot`'s one place, lets a task wait to put the next item,
/// then takes the filler while the waiter is stopped (race_grant_and_cancel's three orders).
/// Some rounds must go each way, or the race was never run.
template <class Slot>
void check_room_race() {
  executor_pool pool(1);
  Slot slot;
  int item = 0;
  std::atomic<int> taken{0};
  const int rounds = scaled(1500, 500);
  const int got = weft::run(race_grant_and_cancel(
      pool[0], rounds,
      [&](std::atomic<bool>& started) {
        REQUIRE(slot.try_put(-1));  // full: the waiter's put has to wait
        ++item;
        return put_report(slot, started, item);
      },
      [&] { taken.store(slot.try_take().value_or(-3)); },
      [&](bool got_it) {
        REQUIRE(taken.load() == -1);
        if (got_it) REQUIRE(slot.try_take() == item);  // the put completed: exactly once
        REQUIRE(slot.size() == 0);
      }));
  CHECK(got > 0);
  CHECK(got < rounds);
}

}  // namespace weft::testing
