// Beazley's countdown experiment from the seed: count C down to zero, split over N workers.
//
//   ./countdown --mode=sequential|cooperative|single-lock|multi-thread|processes --workers=N
//               --count=C [--switch-interval=5ms] [--gil=interval|ticks:100]
//               [--start-method=spawn|fork]
//
// sequential runs the whole count in one loop with no runtime at all (the baseline). The other
// modes split it over N spawned tasks on an executor with N threads (one thread for
// cooperative): multi-thread runs them in parallel; single-lock runs them on N threads that
// share one lock, so they take turns, as Python threads do under the GIL. processes runs the
// N parts in a weft::pool::process_pool of N worker processes (the seed's multiprocessing version),
// the parent waiting on the cooperative executor. The loop calls
// weft::check() on every iteration in every mode, so all modes run the same code. For
// single-lock the lock's hand-overs and the time threads waited for it are printed before the
// last line, which is machine-readable: wall_s=<seconds>.
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/cli.hpp>
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

// The processes version: one registered function per part, run by a pool worker.
std::uint64_t countdown_part(std::uint64_t n) {
  countdown(n);
  return n;
}
WEFT_PROCESS_FUNCTION(countdown_part);

weft::task<int> run_in_pool(weft::pool::process_pool& pool, std::uint64_t count, unsigned workers) {
  std::vector<std::uint64_t> shares;
  for (unsigned i = 0; i < workers; ++i) {
    shares.push_back(count / workers + (i == 0 ? count % workers : 0));
  }
  const std::vector<std::uint64_t> done = co_await pool.map(countdown_part, shares);
  std::uint64_t total = 0;
  for (std::uint64_t n : done) total += n;
  if (total != count) throw std::runtime_error("the workers counted a different total");
  co_await pool.shutdown();
  co_return 0;
}

weft::task<int> run_workers(std::uint64_t count, unsigned workers) {
  // Spawned, not awaited together: spawned tasks are what the threaded executors spread over
  // their threads (like starting N Python threads).
  std::vector<weft::join_handle<void>> parts;
  for (unsigned i = 0; i < workers; ++i) {
    // The remainder goes to the first worker, so the parts always add up to count.
    const std::uint64_t share = count / workers + (i == 0 ? count % workers : 0);
    // Named, so a trace (WEFT_TRACE=FILE) and a task dump tell the parts apart.
    parts.push_back(weft::spawn(countdown_task(share), {.name = fmt::format("countdown {}", i)}));
  }
  for (auto& part : parts) co_await part;
  co_return 0;
}

constexpr const char* usage =
    "usage: countdown [--mode=sequential|cooperative|single-lock|multi-thread|processes]\n"
    "                 [--workers=N] [--count=C] [--switch-interval=5ms]\n"
    "                 [--gil=interval|ticks:N] [--start-method=spawn|fork]\n";

int usage_error(const std::string& message) {
  fmt::print(stderr, "countdown: {}\n{}", message, usage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // With --mode=processes this program is re-executed as its own pool workers.
  weft::pool::serve_if_pool_worker();
  CLI::App app{"Beazley's countdown: a CPU-bound loop split over workers"};
  std::string mode_name = "sequential";
  std::int64_t count = 1'000'000'000;  // signed, so that -5 is reported as -5
  app.add_option("--mode", mode_name, "sequential (no runtime), or a weft executor mode")
      ->capture_default_str();
  // weft's other options; here --workers is also how many tasks (or processes) share the count.
  weft::run_options options;
  options.workers = 2;
  weft::add_run_options(
      app, options, weft::run_flag_workers | weft::run_flag_switch_interval | weft::run_flag_gil);
  app.add_option("--count", count, "how far to count down")->capture_default_str();
  std::string start_method = "spawn";
  app.add_option("--start-method", start_method, "processes: spawn (re-exec) or fork")
      ->capture_default_str();
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;
  const unsigned workers = options.workers;
  if (count < 1 || count > (std::int64_t{1} << 50)) {
    return usage_error(fmt::format("--count wants 1 to 2^50, not {}", count));
  }
  // "processes" is this program's own: a pool of worker processes, not an executor mode.
  const bool sequential = mode_name == "sequential";
  const bool processes = mode_name == "processes";
  const std::optional<weft::mode> mode = weft::parse_mode(mode_name);
  if (!sequential && !processes && !mode) return usage_error("unknown mode '" + mode_name + "'");
  if (start_method != "spawn" && start_method != "fork") {
    return usage_error("--start-method wants spawn or fork, not '" + start_method + "'");
  }
  options.mode = mode.value_or(weft::mode::cooperative);
  weft::run_report report;
  options.report = &report;

  try {
    const auto start = std::chrono::steady_clock::now();
    if (sequential) {
      countdown(static_cast<std::uint64_t>(count));
    } else if (processes) {
      // Started before weft::run: start method fork needs a process with no thread or ring.
      // The workers' start-up is part of the measured time, as in the seed's Python version.
      weft::pool::process_pool pool(workers, start_method == "fork"
                                                 ? weft::pool::start_method::fork
                                                 : weft::pool::start_method::spawn);
      weft::run(options, run_in_pool(pool, static_cast<std::uint64_t>(count), workers));
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
          options.gil == weft::sched::gil_policy::ticks ? fmt::format("ticks:{}", options.gil_ticks)
                                                        : std::string("interval"),
          std::chrono::duration<double, std::micro>(options.switch_interval).count(), lock.switches,
          lock.forced_switches, lock.drop_requests, lock.releases_at_check,
          std::chrono::duration<double>(lock.lock_wait).count());
    }
    fmt::print("wall_s={:.6f}\n", wall.count());
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "countdown: {}\n", e.what());
    return 1;
  }
}
