#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include <weft/weft.hpp>
#include "support.hpp"

using namespace std::chrono_literals;

namespace {

weft::task<int> one_nop() {
  co_return co_await weft::io::nop();
}

weft::task<int> many_nops(int n) {
  std::vector<weft::task<int>> ops;
  for (int i = 0; i < n; ++i) ops.push_back(one_nop());
  auto results = co_await weft::when_all(std::move(ops));
  int ok = 0;
  for (int r : results) ok += r == 0 ? 1 : 0;
  co_return ok;
}

weft::task<int> read_from_pipe(int fd) {
  char buffer[16];
  co_return co_await weft::io::read_some(fd, buffer, sizeof buffer);
}

weft::task<bool> cancelled_read_waits_for_its_completion(int fd) {
  auto h = weft::spawn(read_from_pipe(fd));
  co_await weft::sleep_for(2ms);  // the read is now in the kernel
  h.cancel();
  const int result = co_await h;
  co_return result == -ECANCELED;
}

// Yields until a read, started first, completes: the loop never blocks, so it sees the read's
// completion only by its non-blocking polls (the kernel flags completion work; see poll()).
weft::task<long> yield_until_read(int fd) {
  std::atomic<bool> done{false};
  auto reader = weft::spawn([](int f, std::atomic<bool>& d) -> weft::task<> {
    co_await read_from_pipe(f);
    d.store(true, std::memory_order_relaxed);
  }(fd, done));
  co_await weft::yield_now();  // the read is now in the kernel
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  long yields = 0;
  while (!done.load(std::memory_order_relaxed) && std::chrono::steady_clock::now() < give_up) {
    co_await weft::yield_now();
    ++yields;
  }
  const bool seen = done.load(std::memory_order_relaxed);  // before the join lets the loop block
  if (!seen) reader.cancel();
  co_await reader;
  co_return seen ? yields : -1;
}

}  // namespace

TEST_CASE("a loop that never blocks still sees completions", "[reactor]") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::thread writer([w = fds[1]] {
    std::this_thread::sleep_for(20ms);
    CHECK(::write(w, "x", 1) == 1);
  });
  weft::sched::cooperative executor;
  const long yields = executor.block_on(yield_until_read(fds[0]));
  writer.join();
  ::close(fds[0]);
  ::close(fds[1]);
  CHECK(yields > 0);  // -1: not seen within 10 s
}

TEST_CASE("the loop batches submissions: far fewer io_uring_enter calls than operations",
          "[reactor]") {
  weft::sched::cooperative executor;
  const int ok = executor.block_on(many_nops(1000));
  CHECK(ok == 1000);
  const auto& stats = executor.reactor().stats();
  INFO("enter calls: " << stats.enter_calls << ", completions: " << stats.completions);
  CHECK(stats.completions >= 1000);
  CHECK(stats.enter_calls < 50);  // one per loop turn, not one per operation
}

TEST_CASE("a full submission queue is submitted and retried, not fatal", "[reactor]") {
  weft::sched::cooperative executor(weft::sched::cooperative_options{.ring_entries = 4});
  CHECK(executor.block_on(many_nops(500)) == 500);
  CHECK(executor.reactor().in_flight() == 0);
}

TEST_CASE("a cancelled operation resumes only after its own completion", "[reactor][cancel]") {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  CHECK(weft::run(cancelled_read_waits_for_its_completion(fds[0])));
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("an operation outside a runtime is a clear error", "[reactor]") {
  auto nop_once = []() -> weft::task<> { co_await weft::io::nop(); };
  CHECK(weft::testing::fails_outside_runtime(nop_once()));
}

namespace {

weft::task<bool> throwing_prepare_then_nops() {
  bool threw = false;
  try {
    co_await weft::io::operation([](io_uring_sqe*) { throw std::runtime_error("prepare"); });
  } catch (const std::runtime_error&) {
    threw = true;
  }
  co_return threw&& co_await many_nops(20) == 20;
}

}  // namespace

// The claimed slot still holds a NOP of an earlier cycle whose frame is gone: submitted as it
// was, its CQE would resume freed memory (ASan: heap-use-after-free) and unbalance in_flight.
TEST_CASE("a prepare that throws leaves no stale SQE behind", "[reactor]") {
  weft::sched::cooperative executor(weft::sched::cooperative_options{.ring_entries = 4});
  CHECK(executor.block_on(many_nops(100)) == 100);
  const auto before = executor.reactor().stats().completions;
  CHECK(executor.block_on(throwing_prepare_then_nops()));
  CHECK(executor.reactor().in_flight() == 0);
  // 20 NOPs and the neutralized slot, nothing else.
  CHECK(executor.reactor().stats().completions - before == 21);
}
