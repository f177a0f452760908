// weft::fifo_queue, lifo_queue and priority_queue (Python's queue module): order, back-pressure,
// task_done/join, std::threads and tasks sharing a queue, cancellation, races and a stress test.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <weft/queue.hpp>
#include <weft/weft.hpp>
#include "support.hpp"
#include "sync_support.hpp"

using namespace std::chrono_literals;
using namespace weft::testing;  // the shared helpers of support.hpp and sync_support.hpp

namespace {

template <class Queue>
weft::task<std::vector<int>> put_then_get(Queue& q, std::vector<int> items) {
  for (int v : items) co_await q.put(v);
  std::vector<int> out;
  while (!q.empty()) out.push_back(co_await q.get());
  co_return out;
}

weft::task<> orders() {
  const std::vector<int> items{5, 1, 4, 2, 3, 2};
  weft::fifo_queue<int> fifo;
  weft::lifo_queue<int> lifo;
  weft::priority_queue<int> smallest_first;
  weft::priority_queue<int, std::greater<int>> largest_first;
  const auto f = co_await put_then_get(fifo, items);
  const auto l = co_await put_then_get(lifo, items);
  const auto p = co_await put_then_get(smallest_first, items);
  const auto g = co_await put_then_get(largest_first, items);
  CHECK(f == std::vector<int>{5, 1, 4, 2, 3, 2});
  CHECK(l == std::vector<int>{2, 3, 2, 4, 1, 5});
  CHECK(p == std::vector<int>{1, 2, 2, 3, 4, 5});
  CHECK(g == std::vector<int>{5, 4, 3, 2, 2, 1});

  // (priority, sequence, payload) tuples, as Python programs do with PriorityQueue.
  weft::priority_queue<std::pair<int, std::string>> jobs;
  CHECK(jobs.try_put({3, "low"}));
  CHECK(jobs.try_put({1, "urgent"}));
  CHECK(jobs.try_put({2, "normal"}));
  const auto first = co_await jobs.get();
  CHECK(first.second == "urgent");
  CHECK(jobs.try_get()->second == "normal");
  CHECK(jobs.size() == 1);
}

// The seed's example: a producer and a consumer share a Queue.
weft::task<> producer(weft::fifo_queue<int>& q, int n) {
  for (int i = 0; i < n; ++i) co_await q.put(i);  // produce some data
  co_await q.put(-1);                             // and say that it is all
}

weft::task<long> consumer(weft::fifo_queue<int>& q, std::vector<int>& seen) {
  long sum = 0;
  for (;;) {
    const int data = co_await q.get();  // get some data
    q.task_done();
    if (data < 0) co_return sum;
    seen.push_back(data);  // process the data
    sum += data;
  }
}

weft::task<> seed_producer_consumer() {
  weft::fifo_queue<int> q(4);
  std::vector<int> seen;
  auto c = weft::spawn(consumer(q, seen));
  auto p = weft::spawn(producer(q, 1000));
  co_await q.join();  // returns once every item was processed
  co_await p;
  const long sum = co_await c;
  CHECK(sum == 999L * 1000 / 2);
  std::vector<int> expected(1000);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(seen == expected);
  CHECK(q.unfinished_tasks() == 0);
}

weft::task<> count_puts(weft::fifo_queue<int>& q, int n, std::atomic<int>& put) {
  for (int i = 0; i < n; ++i) {
    co_await q.put(i);
    put.fetch_add(1);
  }
}

weft::task<> back_pressure_and_sizes() {
  weft::fifo_queue<int> q(2);
  CHECK(q.maxsize() == 2);
  CHECK(q.empty());
  CHECK_FALSE(q.full());
  std::atomic<int> put{0};
  auto p = weft::spawn(count_puts(q, 6, put));
  for (int i = 0; i < 4; ++i) co_await weft::yield_now();
  CHECK(put.load() == 2);  // the third put waits: the queue is full
  CHECK(q.full());
  CHECK(q.size() == 2);
  CHECK_FALSE(q.try_put(100));
  for (int expected = 0; expected < 6; ++expected) {
    const int v = co_await q.get();
    CHECK(v == expected);
  }
  co_await p;
  CHECK(q.empty());
  CHECK_FALSE(q.try_get().has_value());
  weft::fifo_queue<int> unbounded;
  for (int i = 0; i < 10'000; ++i) REQUIRE(unbounded.try_put(i));
  CHECK_FALSE(unbounded.full());
  CHECK(unbounded.size() == 10'000);
  CHECK(unbounded.maxsize() == 0);
}

weft::task<> join_semantics() {
  weft::lifo_queue<std::string> q;
  co_await q.join();  // nothing unfinished: at once
  co_await q.put("a");
  co_await q.put("b");
  CHECK(q.unfinished_tasks() == 2);
  auto joiner = weft::spawn(weft::invoke([&q]() -> weft::task<> { co_await q.join(); }));
  co_await weft::yield_now();
  CHECK_FALSE(joiner.is_finished());
  const std::string b = co_await q.get();
  CHECK(b == "b");
  q.task_done();
  co_await weft::yield_now();
  CHECK_FALSE(joiner.is_finished());
  const std::string a = co_await q.get();
  CHECK(a == "a");
  q.task_done();
  co_await joiner;
  CHECK_THROWS_AS(q.task_done(), std::logic_error);  // more than items put
  // A cancelled join.
  co_await q.put("c");
  auto cancelled = weft::spawn(weft::invoke([&q]() -> weft::task<> { co_await q.join(); }));
  co_await weft::yield_now();
  cancelled.cancel();
  const bool was_cancelled = co_await ends_cancelled(cancelled);
  CHECK(was_cancelled);
}

weft::task<int> get_one(weft::fifo_queue<int>& q) {
  co_return co_await q.get();
}

weft::task<> put_one(weft::fifo_queue<int>& q, int v) {
  co_await q.put(v);
}

weft::task<> cancellation() {
  weft::fifo_queue<int> q(1);
  auto g1 = weft::spawn(get_one(q));
  auto g2 = weft::spawn(get_one(q));
  co_await weft::yield_now();
  g1.cancel();
  co_await q.put(1);  // g1 was cancelled: the item goes to g2
  const bool g1_cancelled = co_await ends_cancelled(g1);
  CHECK(g1_cancelled);
  const int v = co_await g2;
  CHECK(v == 1);
  co_await q.put(2);
  auto p = weft::spawn(put_one(q, 3));
  co_await weft::yield_now();
  p.cancel();
  const bool p_cancelled = co_await ends_cancelled(p);
  CHECK(p_cancelled);
  CHECK(q.try_get() == 2);
  CHECK_FALSE(q.try_get().has_value());  // 3 was never put
  CHECK(q.unfinished_tasks() == 2);      // 1 and 2
  const bool timed_out = co_await ends_timed_out(weft::with_timeout(2ms, q.get()));
  CHECK(timed_out);
}

weft::task<> get_twice(weft::fifo_queue<int>& q) {
  (void)co_await q.get();
  (void)co_await q.get();
}

// std::threads and tasks on one queue.
weft::task<> threads_and_tasks() {
  weft::fifo_queue<int> to_task(3), to_thread(3);
  long thread_sum = 0;
  std::thread worker([&] {
    for (int i = 0; i < 200; ++i) to_task.put_blocking(i);  // wakes the task in get()
    for (;;) {
      const int v = to_thread.get_blocking();  // woken by the task's put()
      to_thread.task_done();
      if (v < 0) break;
      thread_sum += v;
    }
  });
  long task_sum = 0;
  for (int i = 0; i < 200; ++i) {
    task_sum += co_await to_task.get();
    to_task.task_done();
  }
  for (int i = 1; i <= 200; ++i) co_await to_thread.put(i);
  co_await to_thread.put(-1);
  co_await to_thread.join();  // the thread's task_done() calls wake this task
  worker.join();
  CHECK(task_sum == 199L * 200 / 2);
  CHECK(thread_sum == 200L * 201 / 2);
  CHECK_THROWS_AS(to_task.get_blocking(), std::logic_error);  // would block this executor
}

weft::task<> delayed_put(weft::fifo_queue<int>& q, std::chrono::milliseconds d, int v) {
  co_await weft::sleep_for(d);
  co_await q.put(v);
}

weft::task<bool> get_report(weft::fifo_queue<int>& q, std::atomic<bool>& started, int& value) {
  started.store(true);
  value = co_await q.get();
  co_return true;
}

// fifo_queue<int>(1) as check_room_race sees it.
struct queue_slot {
  weft::fifo_queue<int> q{1};
  bool try_put(int v) { return q.try_put(int(v)); }
  std::optional<int> try_take() { return q.try_get(); }
  auto put(int v) { return q.put(int(v)); }
  std::size_t size() const { return q.size(); }
};

weft::task<bool> join_report(weft::fifo_queue<int>& q, std::atomic<bool>& started) {
  started.store(true);
  co_await q.join();
  co_return true;
}

// Stress: producer std::threads, consumer tasks on executors of their own.
weft::task<long> consume_until_sentinel(weft::fifo_queue<int>& q, std::vector<int>& got) {
  for (;;) {
    const int v = co_await q.get();
    q.task_done();
    if (v < 0) co_return static_cast<long>(got.size());
    got.push_back(v);
  }
}

}  // namespace

TEST_CASE("queue: FIFO, LIFO and priority order", "[queue]") {
  weft::run(orders());
}

TEST_CASE("queue: the seed's producer/consumer, with task_done and join", "[queue]") {
  weft::run(seed_producer_consumer());
}

TEST_CASE("queue: a full queue makes put wait; sizes", "[queue]") {
  weft::run(back_pressure_and_sizes());
}

TEST_CASE("queue: join waits for task_done; task_done too often is an error", "[queue]") {
  weft::run(join_semantics());
}

TEST_CASE("queue: cancelled gets, puts and joins lose nothing", "[queue][cancel]") {
  weft::run(cancellation());
}

TEST_CASE("queue: a get that must wait outside a runtime is no_runtime", "[queue]") {
  weft::fifo_queue<int> q;
  CHECK(q.try_put(1));
  CHECK(weft::testing::fails_outside_runtime(get_twice(q)));
}

TEST_CASE("queue: std::threads and tasks share a queue both ways", "[queue][threads]") {
  weft::run(threads_and_tasks());
}

TEST_CASE("queue: blocking calls with a timeout", "[queue][threads]") {
  weft::fifo_queue<int> q(1);
  auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(q.get_blocking_for(20ms).has_value());
  CHECK(std::chrono::steady_clock::now() - start >= 20ms);
  CHECK(q.put_blocking_for(1, 0ms));
  start = std::chrono::steady_clock::now();
  int kept = 2;
  CHECK_FALSE(q.put_blocking_for(std::move(kept), 20ms));  // full
  CHECK(kept == 2);
  CHECK(std::chrono::steady_clock::now() - start >= 20ms);
  CHECK_FALSE(q.join_blocking_for(5ms));
  CHECK(q.get_blocking() == 1);
  q.task_done();
  CHECK(q.join_blocking_for(0ms));
  q.join_blocking();
  // A task's put wakes a thread blocked with a timeout.
  executor_pool pool(1);
  auto h = weft::spawn_on(pool[0], delayed_put(q, 5ms, 7));
  CHECK(q.get_blocking_for(10s) == 7);
  weft::run(weft::invoke([&h]() -> weft::task<> { co_await h; }));
}

TEST_CASE("queue: a stop racing a put_blocking never loses or duplicates the item",
          "[queue][race][threads]") {
  executor_pool pool(1);
  weft::fifo_queue<int> q;
  int item = 0, received = -2;
  const int rounds = scaled(1500, 500);
  std::atomic<bool> on_thread{false};
  const int got = weft::run(race_grant_and_cancel(
      pool[0], rounds,
      [&](std::atomic<bool>& started) {
        ++item;
        received = -2;
        return get_report(q, started, received);
      },
      [&] {
        // From the racing std::thread: the blocking put (never blocks: unbounded); from this
        // task: try_put.
        if (weft::executor::current() == nullptr) {
          on_thread.store(true);
          q.put_blocking(item);
        } else {
          REQUIRE(q.try_put(int(item)));
        }
      },
      [&](bool got_it) {
        if (got_it) {
          REQUIRE(received == item);
        } else {
          REQUIRE(q.try_get() == item);
        }
        REQUIRE(q.empty());
      }));
  CHECK(on_thread.load());
  CHECK(got > 0);
  CHECK(got < rounds);
}

TEST_CASE("queue: a stop racing a get that makes room never loses the waiting put",
          "[queue][race][threads]") {
  check_room_race<queue_slot>();
}

TEST_CASE("queue: a stop racing the last task_done ends join exactly once",
          "[queue][race][threads]") {
  executor_pool pool(1);
  weft::fifo_queue<int> q;
  const int rounds = scaled(1000, 400);
  weft::run(race_grant_and_cancel(
      pool[0], rounds,
      [&](std::atomic<bool>& started) {
        REQUIRE(q.try_put(1));
        REQUIRE(q.try_get() == 1);
        return join_report(q, started);
      },
      [&] { q.task_done(); }, [&](bool) { REQUIRE(q.unfinished_tasks() == 0); }));
}

TEST_CASE("queue: 4 producer threads x 50,000 items to 4 consumer tasks, each once",
          "[queue][stress][threads]") {
  const int per_producer = scaled(50'000, 15'000);
  executor_pool pool(4);
  weft::fifo_queue<int> q(64);
  std::vector<std::thread> producers;
  for (int p = 0; p < 4; ++p) {
    producers.emplace_back([&q, p, per_producer] {
      for (int i = 0; i < per_producer; ++i) q.put_blocking(p * per_producer + i);
      q.put_blocking(-1);  // each consumer stops at the first sentinel it gets
    });
  }
  std::vector<std::vector<int>> got(4);
  std::vector<weft::join_handle<long>> consumers;
  for (int c = 0; c < 4; ++c)
    consumers.push_back(weft::spawn_on(pool[c], consume_until_sentinel(q, got[c])));
  q.join_blocking();  // every item, sentinels included, was marked done
  for (auto& t : producers) t.join();
  long total = 0;
  weft::run(weft::invoke([&]() -> weft::task<> {
    for (auto& c : consumers) total += co_await c;
  }));
  CHECK(total == 4L * per_producer);
  std::vector<int> all;
  for (auto& g : got) all.insert(all.end(), g.begin(), g.end());
  REQUIRE(all.size() == std::size_t(4 * per_producer));
  CHECK(each_once(std::move(all), 4 * per_producer));
  CHECK(q.empty());
  CHECK(q.unfinished_tasks() == 0);
}
