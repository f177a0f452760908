// Beazley's countdown experiment from the seed: count C down to zero, split over N workers.
//
//   ./countdown --mode=sequential|cooperative|single-lock|multi-thread --workers=N --count=C
//               [--switch-interval=5ms] [--gil=interval|ticks:100]
//
// sequential runs the whole count in one loop with no runtime at all (the baseline). The other
// modes split it over N spawned tasks on an executor with N threads (one thread for
// cooperative): multi-thread runs them in parallel; single-lock runs them on N threads that
// share one lock, so they take turns, as Python threads do under the GIL. The loop calls
// weft::check() on every iteration in every mode, so all modes run the same code. For
// single-lock the lock's hand-overs and the time threads waited for it are printed before the
// last line, which is machine-readable: wall_s=<seconds>.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/weft.hpp>

namespace {

// The seed's `while n > 0: n -= 1`. The empty asm keeps the compiler from folding the loop
// into a constant, so the work is a real count, as in Python.
// Not inlined: every mode runs this very machine code, whatever its caller looks like.
[[gnu::noinline]] void countdown(std::uint64_t n) {
  while (n > 0) {
    n -= 1;
    asm volatile("" : "+r"(n));
    weft::check();
  }
}

weft::task<> countdown_task(std::uint64_t n) {
  countdown(n);
  co_return;
}

weft::task<int> run_workers(std::uint64_t count, unsigned workers) {
  // Spawned, not awaited together: spawned tasks are what the threaded executors spread over
  // their threads (like starting N Python threads).
  std::vector<weft::join_handle<void>> parts;
  for (unsigned i = 0; i < workers; ++i) {
    // The remainder goes to the first worker, so the parts always add up to count.
    const std::uint64_t share = count / workers + (i == 0 ? count % workers : 0);
    parts.push_back(weft::spawn(countdown_task(share)));
  }
  for (auto& part : parts) co_await part;
  co_return 0;
}

constexpr const char* usage =
    "usage: countdown [--mode=sequential|cooperative|single-lock|multi-thread] [--workers=N]\n"
    "                 [--count=C] [--switch-interval=5ms] [--gil=interval|ticks:N]\n";

int usage_error(const std::string& message) {
  fmt::print(stderr, "countdown: {}\n{}", message, usage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Beazley's countdown: a CPU-bound loop split over workers"};
  std::string mode_name = "sequential";
  unsigned workers = 2;
  std::int64_t count = 1'000'000'000;  // signed, so that -5 is reported as -5
  app.add_option("--mode", mode_name, "sequential (no runtime), or a weft executor mode")
      ->capture_default_str();
  app.add_option("--workers", workers, "how many tasks share the count (not for sequential)")
      ->capture_default_str();
  app.add_option("--count", count, "how far to count down")->capture_default_str();
  std::string switch_interval = "5ms";
  std::string gil = "interval";
  app.add_option("--switch-interval", switch_interval,
                 "single-lock: how long a thread waits before asking for the lock")
      ->capture_default_str();
  app.add_option("--gil", gil, "single-lock: interval (new GIL) or ticks:N (old GIL)")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage_error(e.what());
  }
  if (workers < 1 || workers > 1024) {
    return usage_error(fmt::format("--workers wants 1 to 1024, not {}", workers));
  }
  if (count < 1 || count > (std::int64_t{1} << 50)) {
    return usage_error(fmt::format("--count wants 1 to 2^50, not {}", count));
  }
  const bool sequential = mode_name == "sequential";
  const std::optional<weft::mode> mode = weft::parse_mode(mode_name);
  if (!sequential && !mode) return usage_error("unknown mode '" + mode_name + "'");
  if (mode && !weft::mode_available(*mode)) {
    return usage_error("--mode=" + mode_name +
                       " runs no tasks (countdown runs on sequential, cooperative, single-lock "
                       "and multi-thread)");
  }
  weft::run_options options{mode.value_or(weft::mode::cooperative), workers};
  if (auto d = weft::parse_duration(switch_interval)) {
    options.switch_interval = *d;
  } else {
    return usage_error("--switch-interval wants a duration such as 5ms, not '" + switch_interval +
                       "'");
  }
  if (!weft::parse_gil(gil, options)) {
    return usage_error("--gil wants 'interval' or 'ticks:N', not '" + gil + "'");
  }
  weft::run_report report;
  options.report = &report;

  try {
    const auto start = std::chrono::steady_clock::now();
    if (sequential) {
      countdown(static_cast<std::uint64_t>(count));
    } else {
      if (options.mode == weft::mode::cooperative) options.workers = 1;
      weft::run(options, run_workers(static_cast<std::uint64_t>(count), workers));
    }
    const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
    if (sequential) {
      fmt::print("countdown of {} with mode=sequential: {:.3f} s\n", count, wall.count());
    } else {
      fmt::print("countdown of {} with mode={} workers={}: {:.3f} s\n", count, mode_name, workers,
                 wall.count());
    }
    if (options.mode == weft::mode::single_lock && !sequential) {
      const auto& lock = report.single_lock;
      fmt::print(
          "single-lock: gil={} switch_interval_us={} switches={} forced_switches={} "
          "drop_requests={} releases_at_check={} lock_wait_s={:.3f}\n",
          gil, std::chrono::duration<double, std::micro>(options.switch_interval).count(),
          lock.switches, lock.forced_switches, lock.drop_requests, lock.releases_at_check,
          std::chrono::duration<double>(lock.lock_wait).count());
    }
    fmt::print("wall_s={:.6f}\n", wall.count());
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "countdown: {}\n", e.what());
    return 1;
  }
}
