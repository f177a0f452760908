// weft::channel and weft::oneshot: ordering, close, back-pressure, cancellation, tasks and
// threads on both ends, grants racing cancels, and a many-producer many-consumer stress test.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <weft/channel.hpp>
#include <weft/weft.hpp>
#include "support.hpp"
#include "sync_support.hpp"

using namespace std::chrono_literals;
using namespace weft::testing;  // the shared helpers of support.hpp and sync_support.hpp

namespace {

bool is_error(const std::exception_ptr& e, weft::errc code) {
  return weft::testing::holds_error(e, code);
}

weft::task<> unbounded_in_order() {
  auto ch = weft::channel<std::string>::unbounded();
  CHECK(ch.capacity() == weft::channel<std::string>::unlimited);
  for (int i = 0; i < 100; ++i) co_await ch.send(std::to_string(i));
  CHECK(ch.size() == 100);
  CHECK(ch.try_send(std::string("100")));
  const std::string copied = "101";
  CHECK(ch.try_send(copied));
  for (int i = 0; i < 102; ++i) {
    std::optional<std::string> v = co_await ch.recv();
    REQUIRE(v.has_value());
    CHECK(*v == std::to_string(i));
  }
  CHECK(ch.size() == 0);
  CHECK_FALSE(ch.try_recv().has_value());
}

weft::task<std::vector<int>> drain(weft::channel<int>& ch) {
  std::vector<int> got;
  while (std::optional<int> v = co_await ch.recv()) got.push_back(*v);
  co_return got;
}

weft::task<> close_semantics() {
  weft::channel<int> ch(8);
  co_await ch.send(1);
  co_await ch.send(2);
  co_await ch.send(3);
  ch.close();
  CHECK(ch.is_closed());
  ch.close();  // idempotent
  // Sends fail after close...
  const std::exception_ptr send_error = co_await error_of(ch.send(4));
  CHECK(is_error(send_error, weft::errc::channel_closed));
  CHECK_THROWS_AS(ch.try_send(5), std::system_error);
  // ...receivers drain what is buffered, then get nullopt, again and again.
  const std::vector<int> drained = co_await drain(ch);
  CHECK(drained == std::vector<int>{1, 2, 3});
  const bool end1 = !(co_await ch.recv()).has_value();
  const bool end2 = !(co_await ch.recv()).has_value();
  CHECK(end1);
  CHECK(end2);
  CHECK_FALSE(ch.try_recv().has_value());
}

weft::task<> send_all(weft::channel<int>& ch, int first, int n) {
  for (int i = first; i < first + n; ++i) co_await ch.send(i);
}

weft::task<> close_wakes_waiters() {
  weft::channel<int> empty(1);
  auto r1 = weft::spawn(drain(empty));
  auto r2 = weft::spawn(drain(empty));
  co_await weft::yield_now();
  empty.close();
  const std::vector<int> got1 = co_await r1;
  const std::vector<int> got2 = co_await r2;
  CHECK(got1.empty());
  CHECK(got2.empty());

  weft::channel<int> full(1);
  co_await full.send(7);
  auto s1 = weft::spawn(send_all(full, 8, 1));
  auto s2 = weft::spawn(send_all(full, 9, 1));
  co_await weft::yield_now();
  full.close();
  const std::exception_ptr e1 = co_await error_of(s1);
  const std::exception_ptr e2 = co_await error_of(s2);
  CHECK(is_error(e1, weft::errc::channel_closed));
  CHECK(is_error(e2, weft::errc::channel_closed));
  const std::vector<int> drained = co_await drain(full);
  CHECK(drained == std::vector<int>{7});  // the waiting senders' items never got in
}

weft::task<> count_sends(weft::channel<int>& ch, int n, std::atomic<int>& sent) {
  for (int i = 0; i < n; ++i) {
    co_await ch.send(i);
    sent.fetch_add(1);
  }
}

weft::task<> back_pressure() {
  auto ch = weft::channel<int>::bounded(3);
  std::atomic<int> sent{0};
  auto producer = weft::spawn(count_sends(ch, 10, sent));
  for (int i = 0; i < 5; ++i) co_await weft::yield_now();
  CHECK(sent.load() == 3);  // the fourth send waits for room
  CHECK(ch.size() == 3);
  CHECK_FALSE(ch.try_send(99));
  for (int expected = 0; expected < 10; ++expected) {
    std::optional<int> v = co_await ch.recv();
    REQUIRE(v.has_value());
    CHECK(*v == expected);
    co_await weft::yield_now();
    co_await weft::yield_now();
    CHECK(sent.load() <= expected + 1 + 3);  // never more than the capacity ahead
  }
  co_await producer;
  CHECK(sent.load() == 10);
  CHECK_THROWS_AS(weft::channel<int>::bounded(0), std::invalid_argument);
}

weft::task<std::optional<int>> recv_one(weft::channel<int>& ch) {
  co_return co_await ch.recv();
}

weft::task<> cancellation() {
  weft::channel<int> ch(1);
  // A cancelled receiver takes nothing: the item goes to the next receiver.
  auto r1 = weft::spawn(recv_one(ch));
  auto r2 = weft::spawn(recv_one(ch));
  co_await weft::yield_now();
  r1.cancel();
  co_await ch.send(5);  // r1's node is still queued, cancelled: skipped
  const bool r1_cancelled = co_await ends_cancelled(r1);
  CHECK(r1_cancelled);
  const std::optional<int> v2 = co_await r2;
  CHECK(v2 == 5);
  // A cancelled sender's item never gets in.
  co_await ch.send(6);
  auto s = weft::spawn(send_all(ch, 7, 1));
  co_await weft::yield_now();
  s.cancel();
  const bool s_cancelled = co_await ends_cancelled(s);
  CHECK(s_cancelled);
  CHECK(ch.try_recv() == 6);
  CHECK_FALSE(ch.try_recv().has_value());
  // with_timeout on a recv: timed_out, and an item sent later is still there.
  const bool timed_out = co_await ends_timed_out(weft::with_timeout(2ms, ch.recv()));
  CHECK(timed_out);
  co_await ch.send(8);
  const std::optional<int> v8 = co_await ch.recv();
  CHECK(v8 == 8);
}

weft::task<> recv_twice(weft::channel<int>& ch) {
  (void)co_await ch.recv();
  (void)co_await ch.recv();
}

// Threads and tasks on either end of one channel.
weft::task<> threads_and_tasks() {
  weft::channel<int> to_task(2), to_thread(2);
  int sum = 0;
  std::exception_ptr late_send;
  std::thread thread([&] {
    for (int i = 0; i < 100; ++i) to_task.send_blocking(i);
    to_task.close();
    while (std::optional<int> v = to_thread.recv_blocking()) sum += *v;
    try {
      to_task.send_blocking(sum);  // closed: throws channel_closed
    } catch (...) {
      late_send = std::current_exception();
    }
  });
  std::vector<int> got = co_await drain(to_task);
  std::vector<int> expected(100);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(got == expected);
  for (int i = 1; i <= 100; ++i) co_await to_thread.send(i);
  to_thread.close();
  thread.join();
  CHECK(sum == 5050);
  CHECK(is_error(late_send, weft::errc::channel_closed));
  // A blocking call on an executor's thread is refused rather than stalling the executor.
  weft::channel<int> empty(1);
  CHECK_THROWS_AS(empty.recv_blocking(), std::logic_error);
}

weft::task<bool> recv_report(weft::channel<int>& ch, std::atomic<bool>& started, int& value) {
  started.store(true);
  std::optional<int> v = co_await ch.recv();
  value = v.value_or(-1);
  co_return v.has_value();
}

// channel<int>(1) as check_room_race sees it.
struct channel_slot {
  weft::channel<int> ch{1};
  bool try_put(int v) { return ch.try_send(int(v)); }
  std::optional<int> try_take() { return ch.try_recv(); }
  auto put(int v) { return ch.send(int(v)); }
  std::size_t size() const { return ch.size(); }
};

// Stress: producer tasks on some executors, consumer tasks on others and consumer threads.
weft::task<> produce(weft::channel<int>& ch, int producer, int n) {
  for (int i = 0; i < n; ++i) co_await ch.send(producer * n + i);
}

weft::task<std::vector<int>> consume(weft::channel<int>& ch) {
  std::vector<int> got;
  while (std::optional<int> v = co_await ch.recv()) got.push_back(*v);
  co_return got;
}

weft::task<std::vector<int>> channel_stress(executor_pool& producers, executor_pool& consumers,
                                            int per_producer) {
  auto ch = weft::channel<int>::bounded(64);
  std::vector<std::vector<int>> thread_got(2);
  std::vector<std::thread> threads;
  for (auto& got : thread_got) {
    threads.emplace_back([&ch, &got] {
      while (std::optional<int> v = ch.recv_blocking()) got.push_back(*v);
    });
  }
  std::vector<weft::join_handle<std::vector<int>>> readers;
  for (std::size_t c = 0; c < consumers.size(); ++c) {
    readers.push_back(weft::spawn_on(consumers[c], consume(ch)));
  }
  std::vector<weft::join_handle<void>> writers;
  for (int p = 0; p < 4; ++p)
    writers.push_back(weft::spawn_on(producers[p], produce(ch, p, per_producer)));
  for (auto& w : writers) co_await w;
  ch.close();
  std::vector<int> all;
  for (auto& r : readers) {
    std::vector<int> got = co_await r;
    all.insert(all.end(), got.begin(), got.end());
  }
  for (auto& t : threads) t.join();
  for (auto& got : thread_got) all.insert(all.end(), got.begin(), got.end());
  co_return all;
}

// oneshot

weft::task<int> recv_oneshot(weft::oneshot<int>& o) {
  co_return co_await o.recv();
}

weft::task<> oneshot_semantics() {
  {
    weft::oneshot<int> o;  // sent before anyone waits
    o.send(1);
    CHECK_THROWS_AS(o.send(2), std::logic_error);
    const int v = co_await o.recv();
    CHECK(v == 1);
    bool threw = false;
    try {
      (void)co_await o.recv();
    } catch (const std::logic_error&) {
      threw = true;
    }
    CHECK(threw);
  }
  {
    weft::oneshot<int> o;  // the receiver waits; a thread sends
    auto r = weft::spawn(recv_oneshot(o));
    co_await weft::yield_now();
    std::thread sender([&o] { o.send(42); });
    const int v = co_await r;
    CHECK(v == 42);
    sender.join();
  }
  {
    weft::oneshot<int> o;  // the sender handle is dropped unsent: the receiver is told
    auto r = weft::spawn(recv_oneshot(o));
    co_await weft::yield_now();
    {
      weft::oneshot<int>::sender s = o.get_sender();
      CHECK(s.valid());
      CHECK_THROWS_AS(o.get_sender(), std::logic_error);
    }
    const std::exception_ptr error = co_await error_of(r);
    CHECK(is_error(error, weft::errc::channel_closed));
    CHECK(o.is_closed());
    std::exception_ptr send_error;
    try {
      o.send(1);
    } catch (...) {
      send_error = std::current_exception();
    }
    CHECK(is_error(send_error, weft::errc::channel_closed));
  }
  {
    weft::oneshot<int> o;  // a sender handle that sends; its destruction closes nothing
    {
      auto s = o.get_sender();
      s.send(9);
      CHECK_FALSE(s.valid());
      CHECK_THROWS_AS(s.send(10), std::logic_error);
    }
    CHECK_FALSE(o.is_closed());
    CHECK(o.try_recv() == 9);
  }
  {
    weft::oneshot<int> o;  // close() before anyone waits
    o.close();
    const std::exception_ptr error = co_await error_of(o.recv());
    CHECK(is_error(error, weft::errc::channel_closed));
  }
  {
    weft::oneshot<int> o;  // a cancelled receiver: the value sent later is kept for the next one
    auto r = weft::spawn(recv_oneshot(o));
    co_await weft::yield_now();
    auto second = weft::spawn(recv_oneshot(o));  // two receivers at once: refused
    const std::exception_ptr error = co_await error_of(second);
    bool logic = false;
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::logic_error&) {
      logic = true;
    }
    CHECK(logic);
    r.cancel();
    o.send(3);
    const bool r_cancelled = co_await ends_cancelled(r);
    CHECK(r_cancelled);
    const int v = co_await o.recv();
    CHECK(v == 3);
  }
}

weft::task<bool> oneshot_report(weft::oneshot<int>& o, std::atomic<bool>& started, int& value) {
  started.store(true);
  value = co_await o.recv();
  co_return true;
}

}  // namespace

TEST_CASE("channel: unbounded, FIFO order", "[channel]") {
  weft::run(unbounded_in_order());
}

TEST_CASE("channel: close lets receivers drain, then nullopt; sends fail", "[channel][close]") {
  weft::run(close_semantics());
}

TEST_CASE("channel: close wakes waiting receivers and senders", "[channel][close]") {
  weft::run(close_wakes_waiters());
}

TEST_CASE("channel: a bounded channel makes senders wait (back-pressure)", "[channel]") {
  weft::run(back_pressure());
}

TEST_CASE("channel: cancelled sends and receives lose nothing", "[channel][cancel]") {
  weft::run(cancellation());
}

TEST_CASE("channel: a wait outside a runtime is no_runtime", "[channel]") {
  weft::channel<int> ch(1);
  CHECK(ch.try_send(1));
  CHECK(weft::testing::fails_outside_runtime(recv_twice(ch)));
  CHECK(ch.size() == 0);
}

TEST_CASE("channel: blocking threads and tasks share a channel", "[channel][threads]") {
  weft::run(threads_and_tasks());
}

TEST_CASE("channel: a stop racing a send never loses or duplicates the item",
          "[channel][race][threads]") {
  executor_pool pool(1);
  weft::channel<int> ch;
  int item = 0, received = -2;
  const int rounds = scaled(1500, 500);
  const int got = weft::run(race_grant_and_cancel(
      pool[0], rounds,
      [&](std::atomic<bool>& started) {
        ++item;
        received = -2;
        return recv_report(ch, started, received);
      },
      [&] { REQUIRE(ch.try_send(int(item))); },
      [&](bool got_it) {
        if (got_it) {
          REQUIRE(received == item);
        } else {
          REQUIRE(ch.try_recv() == item);  // still in the channel
        }
        REQUIRE(ch.size() == 0);
      }));
  CHECK(got > 0);
  CHECK(got < rounds);
}

TEST_CASE("channel: a stop racing a receive that makes room never loses the waiting send",
          "[channel][race][threads]") {
  check_room_race<channel_slot>();
}

TEST_CASE("channel: 4 producers x 50,000 items to consumers on other threads, each once",
          "[channel][stress][threads]") {
  const int per_producer = scaled(50'000, 15'000);
  executor_pool producers(4), consumers(2);
  std::vector<int> all = weft::run(channel_stress(producers, consumers, per_producer));
  REQUIRE(all.size() == std::size_t(4 * per_producer));
  CHECK(each_once(std::move(all), 4 * per_producer));
}

TEST_CASE("oneshot: send, receive, dropped sender, close, cancel", "[fifo][channel][oneshot]") {
  weft::run(oneshot_semantics());
}

TEST_CASE("oneshot: a stop racing send keeps the value", "[channel][oneshot][race][threads]") {
  executor_pool pool(1);
  const int rounds = scaled(1000, 400);
  std::vector<std::unique_ptr<weft::oneshot<int>>> shots;
  for (int i = 0; i < rounds; ++i) shots.push_back(std::make_unique<weft::oneshot<int>>());
  int round = 0, value = 0;
  weft::run(race_grant_and_cancel(
      pool[0], rounds,
      [&](std::atomic<bool>& started) { return oneshot_report(*shots[round], started, value); },
      [&] { shots[round]->send(round); },
      [&](bool got_it) {
        if (got_it) {
          REQUIRE(value == round);
        } else {
          REQUIRE(shots[round]->try_recv() == round);
        }
        ++round;
      }));
}
