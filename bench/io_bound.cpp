// I/O-bound concurrency: N tasks that only sleep, on weft's executors and on one OS thread each.
//
//   build/bench/io_bound --mode=single-lock|multi-thread|cooperative|threads [--workers=2]
//                        [--tasks=10000] [--sleep-ms=100] [--rounds=5]
//
// Every task sleeps `rounds` times for `sleep-ms` (weft::sleep_for on an executor; for
// --mode=threads, one std::thread per task doing std::this_thread::sleep_for, the
// thread-per-task baseline). The wall time runs from before the first task is created (spawn or
// thread creation) to after the last one is joined, so it includes creating and tearing down
// tasks or threads; the ideal is rounds * sleep-ms. When the system refuses to create all the
// threads, the baseline runs with as many as it got and says so (created < tasks, and a line on
// stderr). Used by bench/threads.py (./run bench threads).
//
// Prints exactly one machine-readable line on stdout:
//   mode=M workers=W tasks=N created=K rounds=R sleep_ms=S wall_s=X ideal_s=Y max_rss_kib=Z
// then, for single-lock, switches= forced_switches= lock_wait_s= tasks_run=, and for multi-thread
// tasks_run= steals= stolen= injected= parks= wakeups=. For --mode=threads, workers is the
// number of threads created.
// Exit status 0 when it ran, 1 when it failed, 2 on bad arguments.
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/cli.hpp>
#include <weft/weft.hpp>

namespace {

weft::task<> sleeper(int rounds, std::chrono::milliseconds d) {
  for (int i = 0; i < rounds; ++i) co_await weft::sleep_for(d);
}

weft::task<> sleep_all(int tasks, int rounds, std::chrono::milliseconds d) {
  std::vector<weft::join_handle<void>> handles;
  handles.reserve(static_cast<std::size_t>(tasks));
  for (int i = 0; i < tasks; ++i) handles.push_back(weft::spawn(sleeper(rounds, d)));
  for (auto& h : handles) co_await h;
}

// One std::thread per task; returns how many threads were created (fewer than `tasks` when the
// system refused more, in which case the rest of the work is simply not done).
int thread_per_task(int tasks, int rounds, std::chrono::milliseconds d, std::string& refusal) {
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(tasks));
  for (int i = 0; i < tasks; ++i) {
    try {
      threads.emplace_back([rounds, d] {
        for (int r = 0; r < rounds; ++r) std::this_thread::sleep_for(d);
      });
    } catch (const std::system_error& e) {
      refusal = e.what();
      break;
    }
  }
  for (auto& t : threads) t.join();
  return static_cast<int>(threads.size());
}

long max_rss_kib() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"io_bound: N tasks that only sleep, on weft's executors or one thread per task"};
  app.option_defaults()->always_capture_default();  // every --help shows the default
  std::string mode_name = "multi-thread";
  unsigned workers = 2;
  int tasks = 10'000, rounds = 5, sleep_ms = 100;
  app.add_option("--mode", mode_name, "cooperative, single-lock, multi-thread, or threads");
  app.add_option("--workers", workers, "threads of the weft executor");
  app.add_option("--tasks", tasks, "concurrent tasks (threads for --mode=threads)");
  app.add_option("--rounds", rounds, "sleeps per task");
  app.add_option("--sleep-ms", sleep_ms, "milliseconds per sleep");
  auto fail = [&](const std::string& message) {
    fmt::print(stderr, "io_bound: {}\n{}", message, app.help());
    return 2;
  };
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;
  if (tasks < 1 || tasks > 10'000'000) return fail("--tasks wants 1 to 10000000");
  if (rounds < 1 || rounds > 1'000'000) return fail("--rounds wants 1 to 1000000");
  if (sleep_ms < 0 || sleep_ms > 3'600'000) return fail("--sleep-ms wants 0 to 3600000");
  if (workers < 1 || workers > 1024) return fail("--workers wants 1 to 1024");
  const bool threads = mode_name == "threads";
  const auto mode = weft::parse_mode(mode_name);
  if (!threads && (!mode || !weft::mode_available(*mode))) {
    return fail("--mode wants cooperative, single-lock, multi-thread or threads, not '" +
                mode_name + "'");
  }
  const std::chrono::milliseconds d(sleep_ms);
  weft::run_report report;
  std::string refusal;
  int created = tasks;
  try {
    const auto start = std::chrono::steady_clock::now();
    if (threads) {
      created = thread_per_task(tasks, rounds, d, refusal);
    } else {
      weft::run_options options{*mode, *mode == weft::mode::cooperative ? 1u : workers};
      options.report = &report;
      weft::run(options, sleep_all(tasks, rounds, d));
    }
    const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
    if (!refusal.empty()) {
      fmt::print(stderr, "io_bound: created {} of {} threads, then: {}\n", created, tasks, refusal);
    }
    std::string extra;
    if (!threads && *mode == weft::mode::single_lock) {
      const auto& s = report.single_lock;
      extra = fmt::format(" switches={} forced_switches={} lock_wait_s={:.6f} tasks_run={}",
                          s.switches, s.forced_switches,
                          std::chrono::duration<double>(s.lock_wait).count(), s.tasks_run);
    } else if (!threads && *mode == weft::mode::multi_thread) {
      const auto& s = report.multi_thread;
      extra = fmt::format(" tasks_run={} steals={} stolen={} injected={} parks={} wakeups={}",
                          s.tasks_run, s.steals, s.stolen, s.injected, s.parks, s.wakeups);
    }
    fmt::print(
        "mode={} workers={} tasks={} created={} rounds={} sleep_ms={} wall_s={:.6f} "
        "ideal_s={:.6f} max_rss_kib={}{}\n",
        mode_name,
        threads ? static_cast<unsigned>(created)
                : (*mode == weft::mode::cooperative ? 1u : workers),
        tasks, created, rounds, sleep_ms, wall.count(), rounds * sleep_ms / 1000.0, max_rss_kib(),
        extra);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "io_bound: {}\n", e.what());
    return 1;
  }
}
