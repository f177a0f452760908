// weft::mutex, semaphore, event, latch and condition_variable: semantics on one executor, then
// across executors on several threads, cancellation, and grants racing cancels.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include <weft/channel.hpp>
#include <weft/condition_variable.hpp>
#include <weft/event.hpp>
#include <weft/latch.hpp>
#include <weft/mutex.hpp>
#include <weft/queue.hpp>
#include <weft/semaphore.hpp>
#include <weft/weft.hpp>
#include "support.hpp"
#include "sync_support.hpp"

using namespace std::chrono_literals;
using namespace weft::testing;  // the shared helpers of support.hpp and sync_support.hpp

namespace {

// ---------------------------------------------------------------------------------------------
// mutex

weft::task<> lock_and_record(weft::mutex& m, int id, std::vector<int>& order) {
  auto guard = co_await m.scoped_lock();
  order.push_back(id);
  co_await weft::yield_now();  // hold it across a suspension
}

weft::task<> mutex_fifo_handoff() {
  weft::mutex m;
  std::vector<int> order;
  auto guard = co_await m.scoped_lock();
  CHECK(guard.owns_lock());
  std::vector<weft::join_handle<void>> waiters;
  for (int id = 0; id < 6; ++id) waiters.push_back(weft::spawn(lock_and_record(m, id, order)));
  co_await weft::yield_now();  // every waiter ran up to its lock()
  CHECK_FALSE(m.try_lock());
  guard.unlock();
  CHECK_FALSE(guard.owns_lock());
  // Ownership went straight to the first waiter: nobody can barge in now.
  CHECK(m.is_locked());
  CHECK_FALSE(m.try_lock());
  for (auto& w : waiters) co_await w;
  CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5});
  CHECK_FALSE(m.is_locked());
  CHECK(m.try_lock());
  weft::lock_guard adopted(m, std::adopt_lock);
  CHECK(adopted.owns_lock());
  weft::lock_guard moved = std::move(adopted);
  CHECK_FALSE(adopted.owns_lock());
  CHECK(moved.get_mutex() == &m);
}

weft::task<> add_under_lock(weft::mutex& m, long& counter, int n) {
  for (int i = 0; i < n; ++i) {
    co_await m.lock();
    const long seen = counter;
    if (i % 64 == 0) co_await weft::yield_now();  // suspend inside the critical section
    counter = seen + 1;
    m.unlock();
  }
}

weft::task<long> mutex_across_executors(executor_pool& pool, int tasks, int n) {
  weft::mutex m;
  long counter = 0;
  std::vector<weft::join_handle<void>> handles;
  for (int t = 0; t < tasks; ++t)
    handles.push_back(weft::spawn_on(pool[t], add_under_lock(m, counter, n)));
  handles.push_back(weft::spawn(add_under_lock(m, counter, n)));
  for (auto& h : handles) co_await h;
  co_return counter;
}

weft::task<> lock_once(weft::mutex& m) {
  co_await m.lock();
  m.unlock();
}

weft::task<> mutex_cancelled_lock() {
  weft::mutex m;
  co_await m.lock();
  auto first = weft::spawn(lock_once(m));
  auto second = weft::spawn(lock_once(m));
  co_await weft::yield_now();  // both wait
  first.cancel();              // its wake-up is queued; it is still first in line
  m.unlock();                  // skips the cancelled waiter: the second one gets the lock
  const bool first_cancelled = co_await ends_cancelled(first);
  CHECK(first_cancelled);
  co_await second;
  CHECK_FALSE(m.is_locked());

  // A task already stopped does not even take a free mutex.
  auto stopped = weft::spawn(lock_once(m));
  stopped.cancel();
  const bool stopped_cancelled = co_await ends_cancelled(stopped);
  CHECK(stopped_cancelled);
  CHECK_FALSE(m.is_locked());

  // Awaitables can be moved before they are awaited: with_timeout on a lock.
  co_await m.lock();
  const bool timed_out = co_await ends_timed_out(weft::with_timeout(5ms, m.lock()));
  CHECK(timed_out);
  m.unlock();
  CHECK(m.try_lock());
  m.unlock();
  CHECK_THROWS_AS(m.unlock(), std::logic_error);
}

weft::task<> lock_twice(weft::mutex& m) {
  co_await m.lock();
  co_await m.lock();  // would wait: there is no executor to resume it
}

weft::task<bool> lock_and_report(weft::mutex& m, std::atomic<bool>& started) {
  started.store(true);
  co_await m.lock();
  co_return true;  // owns the mutex: the check unlocks it
}

// ---------------------------------------------------------------------------------------------
// semaphore

weft::task<> bounded_worker(weft::semaphore& s, std::atomic<int>& inside, std::atomic<int>& peak) {
  co_await s.acquire();
  const int now = inside.fetch_add(1) + 1;
  int seen = peak.load();
  while (now > seen && !peak.compare_exchange_weak(seen, now)) {
  }
  co_await weft::sleep_for(1ms);
  inside.fetch_sub(1);
  s.release();
}

weft::task<int> semaphore_limits(executor_pool& pool) {
  weft::semaphore s(3);
  std::atomic<int> inside{0}, peak{0};
  std::vector<weft::join_handle<void>> handles;
  for (int i = 0; i < 24; ++i)
    handles.push_back(weft::spawn_on(pool[i], bounded_worker(s, inside, peak)));
  for (auto& h : handles) co_await h;
  CHECK(s.available() == 3);
  co_return peak.load();
}

weft::task<> acquire_and_record(weft::semaphore& s, int id, std::vector<int>& order) {
  co_await s.acquire();
  order.push_back(id);
}

weft::task<> semaphore_fifo_and_cancel() {
  weft::semaphore s(1);
  CHECK(s.try_acquire());
  CHECK_FALSE(s.try_acquire());
  std::vector<int> order;
  auto a = weft::spawn(acquire_and_record(s, 1, order));
  auto b = weft::spawn(acquire_and_record(s, 2, order));
  auto c = weft::spawn(acquire_and_record(s, 3, order));
  co_await weft::yield_now();
  b.cancel();
  s.release(3);  // a and c get one each (b was cancelled), one is left over
  co_await a;
  const bool b_cancelled = co_await ends_cancelled(b);
  CHECK(b_cancelled);
  co_await c;
  CHECK(order == std::vector<int>{1, 3});
  CHECK(s.available() == 1);
  CHECK_THROWS_AS(s.release(std::numeric_limits<std::size_t>::max()), std::overflow_error);
  CHECK(s.available() == 1);
}

weft::task<bool> acquire_and_report(weft::semaphore& s, std::atomic<bool>& started) {
  started.store(true);
  co_await s.acquire();
  co_return true;
}

// ---------------------------------------------------------------------------------------------
// event and latch

weft::task<> wait_event(weft::event& e, std::atomic<int>& woken) {
  co_await e.wait();
  woken.fetch_add(1);
}

weft::task<> event_wakes_everyone(executor_pool& pool) {
  weft::event e;
  std::atomic<int> woken{0};
  std::vector<weft::join_handle<void>> handles;
  for (int i = 0; i < 16; ++i) handles.push_back(weft::spawn_on(pool[i], wait_event(e, woken)));
  co_await weft::sleep_for(2ms);
  CHECK(woken.load() == 0);
  CHECK_FALSE(e.is_set());
  std::thread setter([&e] { e.set(); });
  for (auto& h : handles) co_await h;
  setter.join();
  CHECK(woken.load() == 16);
  CHECK(e.is_set());
  co_await e.wait();  // set: returns at once
  e.reset();
  CHECK_FALSE(e.is_set());
  auto late = weft::spawn(wait_event(e, woken));
  co_await weft::yield_now();
  CHECK(woken.load() == 16);
  late.cancel();
  const bool late_cancelled = co_await ends_cancelled(late);
  CHECK(late_cancelled);
  auto again = weft::spawn(wait_event(e, woken));
  co_await weft::yield_now();
  e.set();
  e.reset();  // a waiter that set() woke returns even if the event is reset before it runs
  co_await again;
  CHECK(woken.load() == 17);
}

weft::task<bool> wait_event_report(weft::event& e, std::atomic<bool>& started) {
  started.store(true);
  co_await e.wait();
  co_return true;
}

weft::task<> count_down_later(weft::latch& l, std::chrono::milliseconds d) {
  co_await weft::sleep_for(d);
  l.count_down();
}

weft::task<> wait_latch(weft::latch& l, std::atomic<int>& passed) {
  co_await l.wait();
  passed.fetch_add(1);
}

weft::task<> latch_opens_once(executor_pool& pool) {
  weft::latch l(4);
  std::atomic<int> passed{0};
  std::vector<weft::join_handle<void>> waiters, counters;
  for (int i = 0; i < 8; ++i) waiters.push_back(weft::spawn_on(pool[i], wait_latch(l, passed)));
  for (int i = 0; i < 4; ++i) {
    counters.push_back(
        weft::spawn_on(pool[i + 1], count_down_later(l, std::chrono::milliseconds(i))));
  }
  co_await l.wait();
  CHECK(l.try_wait());
  for (auto& h : waiters) co_await h;
  for (auto& h : counters) co_await h;
  CHECK(passed.load() == 8);
  CHECK_THROWS_AS(l.count_down(), std::logic_error);

  weft::latch two(2);
  CHECK_FALSE(two.try_wait());
  CHECK_THROWS_AS(two.count_down(3), std::logic_error);
  auto cancelled = weft::spawn(wait_latch(two, passed));
  co_await weft::yield_now();
  cancelled.cancel();
  const bool cancelled_cancelled = co_await ends_cancelled(cancelled);
  CHECK(cancelled_cancelled);
  two.count_down(2);
  CHECK(two.try_wait());
  weft::latch zero(0);
  co_await zero.wait();
}

weft::task<bool> wait_latch_report(weft::latch& l, std::atomic<bool>& started) {
  started.store(true);
  co_await l.wait();
  co_return true;
}

// ---------------------------------------------------------------------------------------------
// condition_variable

struct mailbox {
  weft::mutex m;
  weft::condition_variable cv;
  std::vector<int> items;
  bool done = false;
};

weft::task<> cv_producer(mailbox& box, int first, int n) {
  for (int i = first; i < first + n; ++i) {
    auto guard = co_await box.m.scoped_lock();
    box.items.push_back(i);
    box.cv.notify_one();
  }
}

weft::task<> cv_consumer(mailbox& box, std::vector<int>& got) {
  auto guard = co_await box.m.scoped_lock();
  for (;;) {
    co_await box.cv.wait(guard, [&] { return !box.items.empty() || box.done; });
    CHECK(guard.owns_lock());
    if (box.items.empty()) co_return;  // done and drained
    got.push_back(box.items.back());
    box.items.pop_back();
  }
}

weft::task<> cv_producer_consumer(executor_pool& pool, int n) {
  mailbox box;
  std::vector<std::vector<int>> got(4);
  std::vector<weft::join_handle<void>> consumers, producers;
  for (int c = 0; c < 4; ++c)
    consumers.push_back(weft::spawn_on(pool[c], cv_consumer(box, got[c])));
  for (int p = 0; p < 4; ++p)
    producers.push_back(weft::spawn_on(pool[p + 1], cv_producer(box, p * n, n)));
  for (auto& h : producers) co_await h;
  {
    auto guard = co_await box.m.scoped_lock();
    box.done = true;
    box.cv.notify_all();
  }
  for (auto& h : consumers) co_await h;
  std::vector<int> all;
  for (auto& g : got) all.insert(all.end(), g.begin(), g.end());
  std::sort(all.begin(), all.end());
  std::vector<int> expected(4 * n);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(all == expected);
}

weft::task<> cv_wait_once(weft::mutex& m, weft::condition_variable& cv, int id,
                          std::vector<int>& order, bool& relocked_on_cancel) {
  auto guard = co_await m.scoped_lock();
  try {
    co_await cv.wait(guard);
  } catch (const std::system_error&) {
    relocked_on_cancel = guard.owns_lock() && m.is_locked();
    throw;
  }
  CHECK(m.is_locked());
  order.push_back(id);
}

weft::task<> cv_semantics() {
  weft::mutex m;
  weft::condition_variable cv;
  std::vector<int> order;
  bool relocked = false;
  auto a = weft::spawn(cv_wait_once(m, cv, 1, order, relocked));
  auto b = weft::spawn(cv_wait_once(m, cv, 2, order, relocked));
  auto c = weft::spawn(cv_wait_once(m, cv, 3, order, relocked));
  co_await weft::yield_now();
  co_await weft::yield_now();
  CHECK_FALSE(m.is_locked());  // every waiter unlocked it as it started waiting
  // The stopped waiter re-locks the mutex before it throws. Hold the mutex so that it must wait.
  co_await m.lock();
  a.cancel();
  cv.notify_one();  // a is cancelled: the notification goes to b
  m.unlock();
  const bool a_cancelled = co_await ends_cancelled(a);
  CHECK(a_cancelled);
  CHECK(relocked);
  co_await b;
  CHECK(order == std::vector<int>{2});
  cv.notify_all();
  co_await c;
  CHECK(order == std::vector<int>{2, 3});
  CHECK_FALSE(m.is_locked());

  // Misuse is reported.
  bool threw = false;
  try {
    co_await cv.wait(m);
  } catch (const std::logic_error&) {
    threw = true;
  }
  CHECK(threw);
  weft::lock_guard empty;
  CHECK_THROWS_AS(cv.wait(empty), std::logic_error);

  // with_timeout on a wait: the mutex is owned again when the timeout is reported.
  auto guard = co_await m.scoped_lock();
  const bool timed_out = co_await ends_timed_out(weft::with_timeout(2ms, cv.wait(guard)));
  CHECK(timed_out);
  CHECK(guard.owns_lock());
  CHECK(m.is_locked());
}

weft::task<bool> cv_wait_report(weft::mutex& m, weft::condition_variable& cv,
                                std::atomic<bool>& started, std::atomic<int>& broken) {
  auto guard = co_await m.scoped_lock();
  started.store(true);
  try {
    co_await cv.wait(guard);
  } catch (const std::system_error&) {
    if (!guard.owns_lock() || !m.is_locked()) broken.fetch_add(1);
    throw;
  }
  if (!m.is_locked()) broken.fetch_add(1);
  co_return true;
}

}  // namespace

TEST_CASE("mutex: waiters get it in FIFO order, handed off without barging",
          "[fifo][sync][mutex]") {
  weft::run(mutex_fifo_handoff());
}

TEST_CASE("mutex: excludes tasks on five executors", "[sync][mutex][threads]") {
  executor_pool pool(4);
  const int n = scaled(5000, 2000);
  CHECK(weft::run(mutex_across_executors(pool, 8, n)) == 9L * n);
}

TEST_CASE("mutex: a cancelled lock throws and does not own it", "[sync][mutex][cancel]") {
  weft::run(mutex_cancelled_lock());
}

TEST_CASE("mutex: a lock that must wait outside a runtime is no_runtime", "[sync][mutex]") {
  weft::mutex m;
  CHECK(weft::testing::fails_outside_runtime(lock_twice(m)));
  m.unlock();
  CHECK_FALSE(m.is_locked());
}

TEST_CASE("mutex: a stop racing unlock() never loses the mutex", "[sync][mutex][race][threads]") {
  executor_pool pool(1);
  weft::mutex m;
  const int rounds = scaled(1500, 500);
  const int got = weft::run(race_grant_and_cancel(
      pool[0], rounds,
      [&m](std::atomic<bool>& started) {
        REQUIRE(m.try_lock());  // held by the round: the waiter has to wait
        return lock_and_report(m, started);
      },
      [&m] { m.unlock(); },
      [&m](bool got_it) {
        if (got_it) {
          REQUIRE(m.is_locked());
          m.unlock();
        }
        REQUIRE(m.try_lock());  // free again: the hand-off was neither lost nor doubled
        m.unlock();
      }));
  INFO("lock obtained in " << got << " of " << rounds << " rounds");
  CHECK(got > 0);       // grant first: the waiter owns the mutex
  CHECK(got < rounds);  // stop first: it does not
}

TEST_CASE("semaphore: limits concurrency across executors", "[sync][semaphore][threads]") {
  executor_pool pool(4);
  const int peak = weft::run(semaphore_limits(pool));
  CHECK(peak >= 1);
  CHECK(peak <= 3);
}

TEST_CASE("semaphore: FIFO permits, cancelled waiters skipped", "[fifo][sync][semaphore][cancel]") {
  weft::run(semaphore_fifo_and_cancel());
}

TEST_CASE("semaphore: a stop racing release() never loses the permit",
          "[sync][semaphore][race][threads]") {
  executor_pool pool(1);
  weft::semaphore s(0);
  const int rounds = scaled(1500, 500);
  weft::run(race_grant_and_cancel(
      pool[0], rounds, [&s](std::atomic<bool>& started) { return acquire_and_report(s, started); },
      [&s] { s.release(); },
      [&s](bool got_it) {
        REQUIRE(s.available() == (got_it ? 0u : 1u));
        if (!got_it) REQUIRE(s.try_acquire());
      }));
}

TEST_CASE("event: set() wakes every waiter on every executor", "[fifo][sync][event][threads]") {
  executor_pool pool(4);
  weft::run(event_wakes_everyone(pool));
}

TEST_CASE("event: a stop racing set() ends the wait exactly once", "[sync][event][race][threads]") {
  executor_pool pool(1);
  weft::event e;
  const int rounds = scaled(1000, 400);
  weft::run(race_grant_and_cancel(
      pool[0], rounds,
      [&e](std::atomic<bool>& started) {
        e.reset();
        return wait_event_report(e, started);
      },
      [&e] { e.set(); }, [&e](bool) { REQUIRE(e.is_set()); }));
}

TEST_CASE("latch: opens once for every waiter", "[sync][latch][threads]") {
  executor_pool pool(4);
  weft::run(latch_opens_once(pool));
}

TEST_CASE("latch: a stop racing the last count_down ends the wait exactly once",
          "[sync][latch][race][threads]") {
  executor_pool pool(1);
  const int rounds = scaled(1000, 400);
  std::vector<std::unique_ptr<weft::latch>> latches;
  for (int i = 0; i < rounds; ++i) latches.push_back(std::make_unique<weft::latch>(1));
  int round = 0;
  weft::run(race_grant_and_cancel(
      pool[0], rounds,
      [&](std::atomic<bool>& started) { return wait_latch_report(*latches[round], started); },
      [&] { latches[round]->count_down(); }, [&](bool) { REQUIRE(latches[round++]->try_wait()); }));
}

TEST_CASE("condition_variable: producers and consumers on several executors",
          "[sync][condition_variable][threads]") {
  executor_pool pool(4);
  weft::run(cv_producer_consumer(pool, scaled(2000, 1000)));
}

TEST_CASE("condition_variable: FIFO notify, cancelled waiters re-lock and pass the notification",
          "[fifo][sync][condition_variable][cancel]") {
  weft::run(cv_semantics());
}

TEST_CASE("condition_variable: a stop racing notify_one() re-locks and never hangs",
          "[sync][condition_variable][race][threads]") {
  executor_pool pool(1);
  weft::mutex m;
  weft::condition_variable cv;
  std::atomic<int> broken{0};
  const int rounds = scaled(1000, 400);
  weft::run(race_grant_and_cancel(
      pool[0], rounds,
      [&](std::atomic<bool>& started) { return cv_wait_report(m, cv, started, broken); },
      [&] { cv.notify_one(); },
      [&](bool) {
        REQUIRE_FALSE(m.is_locked());
        REQUIRE(broken.load() == 0);
      }));
}

// ---------------------------------------------------------------------------------------------
// The same primitives under every executor this build has: on the threaded ones, tasks run in
// parallel and may resume on any worker.

namespace {

weft::task<> produce_into(weft::channel<int>& ch, int first, int n) {
  for (int i = first; i < first + n; ++i) co_await ch.send(i);
}

weft::task<long> sum_from(weft::channel<int>& ch) {
  long sum = 0;
  while (std::optional<int> v = co_await ch.recv()) sum += *v;
  co_return sum;
}

weft::task<long> sum_queue(weft::fifo_queue<int>& q) {
  long sum = 0;
  for (;;) {
    const int v = co_await q.get();
    q.task_done();
    if (v < 0) co_return sum;
    sum += v;
  }
}

weft::task<bool> acquire_flag(weft::semaphore& s) {
  co_await s.acquire();
  co_return true;
}

weft::task<> mixed_workload(int n) {
  // A mutex guarding a plain counter.
  weft::mutex m;
  long counter = 0;
  {
    std::vector<weft::join_handle<void>> hs;
    for (int t = 0; t < 8; ++t) hs.push_back(weft::spawn(add_under_lock(m, counter, n)));
    for (auto& h : hs) co_await h;
  }
  CHECK(counter == 8L * n);

  // A bounded channel: 4 producers, 4 consumers.
  auto ch = weft::channel<int>::bounded(16);
  {
    std::vector<weft::join_handle<long>> readers;
    std::vector<weft::join_handle<void>> writers;
    for (int c = 0; c < 4; ++c) readers.push_back(weft::spawn(sum_from(ch)));
    for (int p = 0; p < 4; ++p) writers.push_back(weft::spawn(produce_into(ch, p * n, n)));
    for (auto& w : writers) co_await w;
    ch.close();
    long sum = 0;
    for (auto& r : readers) sum += co_await r;
    const long total = 4L * n;
    CHECK(sum == total * (total - 1) / 2);
  }

  // A bounded queue fed by tasks and a plain thread, drained by tasks, joined.
  weft::fifo_queue<int> q(16);
  {
    std::vector<weft::join_handle<long>> readers;
    for (int c = 0; c < 4; ++c) readers.push_back(weft::spawn(sum_queue(q)));
    weft::event fed;
    std::thread feeder([&q, &fed, n] {
      for (int i = 0; i < n; ++i) q.put_blocking(1);
      fed.set();
    });
    for (int i = 0; i < n; ++i) co_await q.put(2);
    co_await fed.wait();  // (joining the thread here could block the consumers' executor)
    co_await q.join();
    feeder.join();
    for (int c = 0; c < 4; ++c) co_await q.put(-1);
    long sum = 0;
    for (auto& r : readers) sum += co_await r;
    CHECK(sum == 3L * n);
  }

  // Permits released from a thread while the waiters are being cancelled: none is lost.
  weft::semaphore s(0);
  std::vector<weft::join_handle<bool>> waiters;
  for (int i = 0; i < 200; ++i) waiters.push_back(weft::spawn(acquire_flag(s)));
  std::thread releaser([&s] {
    for (int i = 0; i < 100; ++i) s.release();
  });
  for (std::size_t i = 0; i < waiters.size(); i += 2) waiters[i].cancel();
  releaser.join();
  for (auto& w : waiters) w.cancel();
  long got = 0;
  for (auto& w : waiters) {
    try {
      got += (co_await w) ? 1 : 0;
    } catch (const std::system_error& e) {
      if (e.code() != weft::errc::cancelled) throw;
    }
  }
  CHECK(got + static_cast<long>(s.available()) == 100);
}

}  // namespace

TEST_CASE("sync, channel and queue under every executor mode", "[sync][modes][threads]") {
  for (const weft::run_options& options : every_mode(4)) {
    INFO("mode " << weft::to_string(options.mode));
    weft::run(options, mixed_workload(scaled(20000, 5000)));
  }
}
