// Beazley's countdown experiment from the seed: count C down to zero, split over N workers.
//
//   ./countdown --mode=sequential|cooperative --workers=N --count=C
//
// sequential runs the whole count in one loop with no runtime at all (the baseline);
// cooperative splits it over N tasks on one thread. The loop calls weft::check() on every
// iteration in every mode, so all modes run the same code. The last line is machine-readable:
// wall_s=<seconds>.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/weft.hpp>

namespace {

// The seed's `while n > 0: n -= 1`. The empty asm keeps the compiler from folding the loop
// into a constant, so the work is a real count, as in Python.
void countdown(std::uint64_t n) {
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
  std::vector<weft::task<>> parts;
  for (unsigned i = 0; i < workers; ++i) {
    // The remainder goes to the first worker, so the parts always add up to count.
    const std::uint64_t share = count / workers + (i == 0 ? count % workers : 0);
    parts.push_back(countdown_task(share));
  }
  co_await weft::when_all(std::move(parts));
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Beazley's countdown: a CPU-bound loop split over workers"};
  std::string mode_name = "sequential";
  unsigned workers = 2;
  std::uint64_t count = 1'000'000'000;
  app.add_option("--mode", mode_name, "sequential, or a weft executor mode")
      ->check(CLI::IsMember({"sequential", "cooperative", "single-lock", "multi-thread"}));
  app.add_option("--workers", workers, "how many tasks share the count")
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--count", count, "how far to count down")->check(CLI::Range(1ull, 1ull << 50));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  try {
    const auto start = std::chrono::steady_clock::now();
    if (mode_name == "sequential") {
      countdown(count);
    } else {
      weft::run_options options{*weft::parse_mode(mode_name), workers};
      weft::run(options, run_workers(count, workers));
    }
    const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
    fmt::print("countdown of {} with mode={} workers={}: {:.3f} s\n", count, mode_name,
               mode_name == "sequential" ? 1 : workers, wall.count());
    fmt::print("wall_s={:.6f}\n", wall.count());
    return 0;
  } catch (const std::system_error& e) {
    fmt::print(stderr, "countdown: {}\n", e.what());
    return e.code() == weft::errc::mode_unavailable ? 2 : 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "countdown: {}\n", e.what());
    return 1;
  }
}
