// The seed's `queue` demo: producers put items into a shared queue, consumers get them, for each
// of Python's three queue kinds (FIFO, LIFO, priority).
//
//   ./producer_consumer [--mode=cooperative|single-lock|multi-thread] [--workers=N]
//                       [--queue=fifo|lifo|priority|all] [--items=N] [--producers=P]
//                       [--consumers=C] [--maxsize=M] [--thread-producers=T]
//
// For each kind it first shows the order the kind gives (five items put, then got by one
// consumer), then runs the demo proper: P producer tasks and T plain std::threads (which use the
// blocking put, as Python threads would) put N items in all into a queue bounded at M; C
// consumer tasks get them, check them, and call task_done(); the main task waits in join() until
// every item is processed, then stops the consumers. One line per kind reports the counts and
// the rate; the last line is machine-readable: wall_s=<seconds for all kinds>.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>
#include <weft/cli.hpp>
#include <weft/weft.hpp>

namespace {

struct settings {
  std::uint64_t items = 100'000;
  unsigned producers = 2;
  unsigned consumers = 2;
  unsigned thread_producers = 1;
  std::size_t maxsize = 64;
};

// An item: its priority (what the priority queue orders by, smallest first) and a serial
// number. Every number from 0 to items-1 is put exactly once, so consumers can check that
// nothing was lost or duplicated.
struct item {
  std::uint64_t priority = 0;
  std::uint64_t serial = 0;
  friend bool operator<(const item& a, const item& b) {
    return a.priority != b.priority ? a.priority < b.priority : a.serial < b.serial;
  }
};

struct tally {
  std::atomic<std::uint64_t> consumed{0};
  std::atomic<std::uint64_t> serial_sum{0};
  std::vector<std::atomic<std::uint8_t>> seen;
  std::atomic<std::uint64_t> duplicates{0};
  explicit tally(std::uint64_t n) : seen(n) {}
};

// The serials [first, first + count) with a priority that scrambles their order.
item make_item(std::uint64_t serial) {
  return item{(serial * 2654435761u) % 1000, serial};
}

template <class Queue>
weft::task<> producer(Queue& q, std::uint64_t first, std::uint64_t count) {
  for (std::uint64_t s = first; s < first + count; ++s) {
    co_await q.put(make_item(s));  // waits while the queue is full: back-pressure
  }
}

template <class Queue>
weft::task<> consumer(Queue& q, tally& t) {
  for (;;) {
    item it = co_await q.get();  // cancelled by main once join() returned
    if (t.seen[it.serial].exchange(1) != 0) t.duplicates.fetch_add(1);
    t.serial_sum.fetch_add(it.serial, std::memory_order_relaxed);
    t.consumed.fetch_add(1, std::memory_order_relaxed);
    weft::check();  // a check point, as a Python thread would pass through the eval loop
    q.task_done();
  }
}

// Five items put, then five got: the order each kind gives.
template <class Queue>
weft::task<std::vector<std::uint64_t>> show_order() {
  Queue q;
  for (std::uint64_t p : {3, 1, 4, 5, 2}) co_await q.put(item{p, p});
  std::vector<std::uint64_t> order;
  while (!q.empty()) {
    const item it = co_await q.get();
    order.push_back(it.priority);
  }
  co_return order;
}

struct outcome {
  std::uint64_t consumed = 0;
  bool exact = false;  // every serial consumed once, none twice
  double seconds = 0;
};

template <class Queue>
weft::task<outcome> run_demo(const settings& s) {
  Queue q(s.maxsize);
  tally t(s.items);
  const auto start = std::chrono::steady_clock::now();

  // The items are split between producer tasks and producer threads.
  const unsigned sources = s.producers + s.thread_producers;
  auto share = [&](unsigned i) { return s.items / sources + (i == 0 ? s.items % sources : 0); };
  std::vector<weft::join_handle<void>> consumers;
  for (unsigned i = 0; i < s.consumers; ++i) consumers.push_back(weft::spawn(consumer(q, t)));
  std::vector<weft::join_handle<void>> producers;
  std::uint64_t next = 0;
  for (unsigned i = 0; i < s.producers; ++i) {
    producers.push_back(weft::spawn(producer(q, next, share(i))));
    next += share(i);
  }
  std::vector<std::thread> threads;
  for (unsigned i = s.producers; i < sources; ++i) {
    threads.emplace_back([&q, first = next, count = share(i)] {
      for (std::uint64_t serial = first; serial < first + count; ++serial) {
        q.put_blocking(make_item(serial));  // a plain thread: blocks while the queue is full
      }
    });
    next += share(i);
  }

  for (auto& p : producers) co_await p;
  // The threads block in put_blocking; wait for them off the executor's threads.
  co_await weft::spawn_blocking([&threads] {
    for (auto& th : threads) th.join();
  });
  co_await q.join();  // every item put has been processed (task_done)
  for (auto& c : consumers) c.cancel();
  for (auto& c : consumers) {
    try {
      co_await c;
    } catch (const std::system_error& e) {
      if (e.code() != weft::errc::cancelled) throw;
    }
  }
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  const std::uint64_t n = s.items;
  const bool exact = t.consumed.load() == n && t.duplicates.load() == 0 &&
                     t.serial_sum.load() == (n == 0 ? 0 : n * (n - 1) / 2);
  co_return outcome{t.consumed.load(), exact, took.count()};
}

template <class Queue>
weft::task<bool> one_kind(const char* name, const settings& s) {
  const auto order = co_await show_order<Queue>();
  fmt::print("{}: put 3 1 4 5 2, got {}\n", name, fmt::join(order, " "));
  const outcome o = co_await run_demo<Queue>(s);
  fmt::print(
      "{}: items={} producers={} thread_producers={} consumers={} maxsize={} consumed={} "
      "exact={} items_per_s={:.0f}\n",
      name, s.items, s.producers, s.thread_producers, s.consumers, s.maxsize, o.consumed,
      o.exact ? "yes" : "NO", o.seconds > 0 ? static_cast<double>(o.consumed) / o.seconds : 0.0);
  co_return o.exact;
}

weft::task<int> amain(std::string kind, settings s) {
  bool ok = true;
  if (kind == "fifo" || kind == "all") {
    ok = co_await one_kind<weft::fifo_queue<item>>("fifo", s) && ok;
  }
  if (kind == "lifo" || kind == "all") {
    ok = co_await one_kind<weft::lifo_queue<item>>("lifo", s) && ok;
  }
  if (kind == "priority" || kind == "all") {
    ok = co_await one_kind<weft::priority_queue<item>>("priority", s) && ok;
  }
  co_return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "The seed's queue demo: producers and consumers sharing FIFO, LIFO and priority "
      "queues"};
  weft::run_options options;
  weft::add_run_options(app, options);  // --mode, --workers, --switch-interval, --gil
  std::string kind = "all";
  std::int64_t items = 100'000;
  settings s;
  std::int64_t maxsize = 64;
  app.add_option("--queue", kind, "fifo, lifo, priority or all")
      ->capture_default_str()
      ->check(CLI::IsMember({"fifo", "lifo", "priority", "all"}));
  app.add_option("--items", items, "items to pass through each queue")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{100'000'000}));
  app.add_option("--producers", s.producers, "producer tasks")
      ->capture_default_str()
      ->check(CLI::Range(0u, 1000u));
  app.add_option("--consumers", s.consumers, "consumer tasks")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000u));
  app.add_option("--thread-producers", s.thread_producers,
                 "producers on plain std::threads (blocking put)")
      ->capture_default_str()
      ->check(CLI::Range(0u, 64u));
  app.add_option("--maxsize", maxsize, "queue bound (0: unbounded)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1'000'000}));
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;
  if (s.producers + s.thread_producers == 0) {  // a check on two options: CLI11 checks one
    fmt::print(stderr,
               "producer_consumer: --producers plus --thread-producers must be >= 1\n"
               "usage: producer_consumer [OPTIONS]\n{}",
               app.help());
    return 2;
  }
  s.items = static_cast<std::uint64_t>(items);
  s.maxsize = static_cast<std::size_t>(maxsize);

  try {
    const auto start = std::chrono::steady_clock::now();
    weft::run_report report;
    options.report = &report;
    const int status = weft::run(options, amain(kind, s));
    const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
    fmt::print("mode={} workers={}\n", weft::to_string(report.mode), report.workers);
    fmt::print("wall_s={:.6f}\n", wall.count());
    return status;
  } catch (const std::exception& e) {
    fmt::print(stderr, "producer_consumer: {}\n", e.what());
    return 1;
  }
}
