// Cross-thread paths of the cooperative executor: handles scheduled and tasks cancelled from
// plain std::threads. Run under ThreadSanitizer by ./run test.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <mutex>
#include <thread>
#include <vector>

#include <weft/weft.hpp>
#include "support.hpp"

using namespace std::chrono_literals;
using weft::testing::join_or_cancelled;
using weft::testing::mailbox;
using weft::testing::mailbox_waker;
using weft::testing::park_in;

namespace {

weft::task<> parked_task(mailbox& box, std::atomic<int>& resumed) {
  co_await park_in{box};
  resumed.fetch_add(1, std::memory_order_relaxed);
}

weft::task<int> remote_wakeups(int n) {
  mailbox box;
  std::atomic<int> resumed{0};
  const mailbox_waker waker(box);
  weft::task_group group;
  for (int i = 0; i < n; ++i) group.spawn(parked_task(box, resumed));
  co_await group.join();
  co_return resumed.load();
}

weft::task<> sleep_maybe_cancelled(std::chrono::microseconds d, std::atomic<int>& outcomes) {
  try {
    co_await weft::sleep_for(d);
  } catch (const std::system_error& e) {
    if (e.code() != weft::errc::cancelled) throw;
  }
  outcomes.fetch_add(1, std::memory_order_relaxed);
}

// Timers firing and cancels from another thread race on the same sleepers.
weft::task<int> cancel_races(int n) {
  std::atomic<int> outcomes{0};
  std::vector<weft::join_handle<void>> handles;
  for (int i = 0; i < n; ++i) {
    handles.push_back(
        weft::spawn(sleep_maybe_cancelled(std::chrono::microseconds(i % 200), outcomes)));
  }
  std::thread canceller([&handles] {
    for (auto& h : handles) h.cancel();
  });
  for (auto& h : handles) co_await h;
  canceller.join();
  co_return outcomes.load();
}

}  // namespace

TEST_CASE("10,000 tasks woken from another thread all resume once", "[threads]") {
  CHECK(weft::run(remote_wakeups(10'000)) == 10'000);
}

TEST_CASE("cancels from another thread race timers without loss or double resume", "[threads]") {
  for (int round = 0; round < 5; ++round) CHECK(weft::run(cancel_races(2'000)) == 2'000);
}

namespace {

weft::task<std::thread::id> thread_of_after(std::chrono::milliseconds d) {
  co_await weft::sleep_for(d);
  co_return std::this_thread::get_id();
}

// A task on executor A joins a task spawned onto executor B (running on another thread): the
// child runs on B's thread, and the joiner comes back to A's thread.
weft::task<bool> join_across_executors(weft::executor& other) {
  const auto home = std::this_thread::get_id();
  auto handle = weft::spawn_on(other, thread_of_after(2ms));
  const std::thread::id child_thread = co_await handle;
  co_return child_thread != home&& std::this_thread::get_id() == home;
}

weft::task<> serve_until(std::atomic<bool>& stop) {
  while (!stop.load()) co_await weft::sleep_for(1ms);
}

weft::task<int> read_pipe(int fd) {
  char buffer[8];
  co_return co_await weft::io::read_some(fd, buffer, sizeof buffer);
}

weft::task<bool> io_cancelled_from_another_thread(int fd) {
  auto h = weft::spawn(read_pipe(fd));
  co_await weft::sleep_for(2ms);
  std::thread canceller([&h] { h.cancel(); });
  const int result = co_await h;
  canceller.join();
  co_return result == -ECANCELED;
}

}  // namespace

TEST_CASE("joining a task of another executor resumes the joiner on its own executor",
          "[threads]") {
  weft::sched::cooperative other_executor;
  std::atomic<bool> stop{false};
  std::atomic<weft::sched::cooperative*> ready{nullptr};
  std::thread other([&] {
    // The loop runs on this thread; the other executor's tasks are spawned onto it remotely.
    ready.store(&other_executor);
    other_executor.block_on(serve_until(stop));
  });
  while (ready.load() == nullptr) std::this_thread::yield();
  std::this_thread::sleep_for(5ms);  // let block_on start its loop
  for (int i = 0; i < 20; ++i) CHECK(weft::run(join_across_executors(other_executor)));
  stop.store(true);
  other.join();
}

TEST_CASE("an I/O operation cancelled from another thread ends with -ECANCELED", "[threads]") {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  for (int i = 0; i < 20; ++i) CHECK(weft::run(io_cancelled_from_another_thread(fds[0])));
  ::close(fds[0]);
  ::close(fds[1]);
}

namespace {

std::atomic<long> finished_tasks{0};

weft::task<> count_finish() {
  finished_tasks.fetch_add(1, std::memory_order_relaxed);
  co_return;
}

std::size_t heap_in_use() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

weft::task<> wait_for_finished(long n) {
  while (finished_tasks.load() < n) co_await weft::sleep_for(1ms);
}

}  // namespace

TEST_CASE("frames spawned on one thread and freed on another are reused, not hoarded",
          "[threads][memory]") {
  // A producer thread spawns a million short tasks onto a running executor, keeping at most a
  // thousand alive. The executor's thread frees every frame; without the shared pool the
  // producer would carve ~100 MB of fresh slabs.
  constexpr long total = 1'000'000;
  finished_tasks = 0;
  weft::sched::cooperative executor;
  const std::size_t before = heap_in_use();
  std::thread producer([&] {
    for (long i = 0; i < total; ++i) {
      while (i - finished_tasks.load(std::memory_order_relaxed) > 1000) std::this_thread::yield();
      weft::spawn_on(executor, count_finish()).detach();
    }
  });
  executor.block_on(wait_for_finished(total));
  producer.join();
  const std::size_t growth = heap_in_use() - before;
  INFO("heap growth: " << growth << " bytes");
  CHECK(growth < 32u * 1024 * 1024);
}

namespace {

weft::task<> set_flag(bool& flag) {
  flag = true;
  co_return;
}

weft::task<int> returns_at_once() {
  co_return 3;
}

}  // namespace

TEST_CASE("tasks spawned from outside just before the end still run and are freed", "[threads]") {
  // spawn_on from a thread that is not the loop's (here: before the loop even started) goes
  // through the remote queue; shutdown must drain it rather than drop the task and leak it.
  weft::sched::cooperative executor;
  bool ran = false;
  auto handle = weft::spawn_on(executor, set_flag(ran));
  CHECK(executor.block_on(returns_at_once()) == 3);
  CHECK(ran);
  CHECK(handle.is_finished());
}

namespace {

weft::task<int> value_after_yields(int yields, int v) {
  for (int i = 0; i < yields; ++i) co_await weft::yield_now();
  co_return v;
}

// A joiner's stop, requested from another thread, races the joined task's completion, at
// every point of the join: before it suspends, while its stop waiter is only on the loop's
// deferred list, once it is registered in the scope (the task takes more than a loop turn),
// and after the completion. Each join ends once, with the value or cancelled.
weft::task<int> join_stop_races(int n) {
  int good = 0;
  for (int i = 0; i < n; ++i) {
    auto t = weft::spawn(value_after_yields(i % 90, i));
    auto j = weft::spawn(join_or_cancelled(t));
    std::atomic<bool> go{false};
    std::thread stopper([&go, &j, i] {
      while (!go.load(std::memory_order_acquire)) {
      }
      for (int k = 0; k < i % 7; ++k) std::this_thread::yield();
      j.cancel();
    });
    go.store(true, std::memory_order_release);
    const int got = co_await j;
    stopper.join();
    if (got == i) {
      ++good;
    } else if (got == -1) {
      const int later = co_await t;  // a cancelled join leaves the task joinable
      if (later == i) ++good;
    }
  }
  co_return good;
}

}  // namespace

TEST_CASE("a joiner's stop from another thread races the join's completion", "[threads]") {
  CHECK(weft::run(join_stop_races(400)) == 400);
}
