// The seed's `threading` module, as tasks: Thread.start/join become spawn() and co_await on a
// join_handle, Lock becomes weft::mutex, Event weft::event and Semaphore weft::semaphore.
//
//   ./threading [--mode=cooperative|single-lock|multi-thread] [--workers=N] [--tasks=T]
//               [--deposits=D] [--tellers=K]
//
// T depositor tasks are spawned and wait on one start event (so they all begin together). Each
// makes D deposits of 1 into a shared balance. A deposit takes one of K teller permits (a
// semaphore), then the balance's mutex, reads the balance, yields to the other tasks (a co_await
// in the middle of the update, where an unprotected read-modify-write would lose deposits), and
// writes it back. The main task joins every depositor and checks that the balance is T x D and
// that no more than K deposits were ever in progress at once. One line each, then the
// machine-readable last line: wall_s=<seconds>. Exit status 1 if a check fails; bad options: one
// error line and the usage on stderr, exit status 2.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/cli.hpp>
#include <weft/weft.hpp>

namespace {

struct bank {
  weft::mutex lock;  // protects balance
  std::uint64_t balance = 0;
  weft::semaphore tellers;
  weft::event open;  // set once every depositor exists: the start signal
  std::atomic<unsigned> at_counters{0};
  std::atomic<unsigned> most_at_counters{0};

  explicit bank(unsigned teller_count) : tellers(teller_count) {}
};

weft::task<> depositor(bank& b, std::uint64_t deposits) {
  co_await b.open.wait();
  for (std::uint64_t i = 0; i < deposits; ++i) {
    co_await b.tellers.acquire();
    const unsigned now = b.at_counters.fetch_add(1) + 1;
    unsigned most = b.most_at_counters.load();
    while (now > most && !b.most_at_counters.compare_exchange_weak(most, now)) {
    }
    {
      auto guard = co_await b.lock.scoped_lock();  // unlocks when it leaves the scope
      const std::uint64_t read = b.balance;
      co_await weft::yield_now();  // let everyone else run mid-update: the lock keeps it whole
      b.balance = read + 1;
    }
    b.at_counters.fetch_sub(1);
    b.tellers.release();
  }
}

weft::task<int> amain(unsigned tasks, std::uint64_t deposits, unsigned tellers) {
  const auto start = weft::clock::now();
  bank b(tellers);
  std::vector<weft::join_handle<void>> depositors;
  for (unsigned t = 0; t < tasks; ++t) depositors.push_back(weft::spawn(depositor(b, deposits)));
  fmt::print("{} depositor tasks started; they wait on the start event\n", tasks);
  b.open.set();
  for (auto& d : depositors) co_await d;  // Thread.join()
  const std::uint64_t expected = std::uint64_t{tasks} * deposits;
  fmt::print("balance={} (expected {}), at most {} deposit(s) in progress at once ({} tellers)\n",
             b.balance, expected, b.most_at_counters.load(), tellers);
  const std::chrono::duration<double> wall = weft::clock::now() - start;
  fmt::print("wall_s={:.3f}\n", wall.count());
  const bool kept = b.balance == expected && b.most_at_counters.load() <= tellers;
  co_return kept ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"threading: the seed's threading module (Thread, Lock, Event, Semaphore) as tasks"};
  weft::run_options options;
  weft::add_run_options(app, options);  // --mode, --workers, --switch-interval, --gil
  unsigned tasks = 8;
  std::uint64_t deposits = 1000;
  unsigned tellers = 2;
  app.add_option("--tasks", tasks, "depositor tasks")
      ->capture_default_str()
      ->check(CLI::Range(1u, 10000u));
  app.add_option("--deposits", deposits, "deposits per task")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1'000'000}));
  app.add_option("--tellers", tellers, "semaphore permits")
      ->capture_default_str()
      ->check(CLI::Range(1u, 10000u));
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;
  try {
    return weft::run(options, amain(tasks, deposits, tellers));
  } catch (const std::exception& e) {
    fmt::print(stderr, "threading: {}\n", e.what());
    return 1;
  }
}
