// weft's process costs: a small job's round trip through a weft::pool::process_pool, and spawning
// and waiting for a child process with weft::io::command.
//
//   build/bench/process_bench [--only=roundtrip|spawn] [--jobs=20000] [--warmup=1000]
//                             [--map-items=10000] [--children=2000] [--concurrency=8]
//                             [--spawn-warmup=100] [--start-method=spawn|fork]
//                             [--program=/bin/true]
//
// roundtrip (each pool is created before weft::run, on the cooperative executor):
//   pool_start      process_pool(1) constructed, then the first `submit(square, 1)` returns: the
//                   time until a fresh pool gives its first result (the worker's start), for
//                   both start methods (fork=0: spawn, fork=1: fork); the other figures use
//                   --start-method.
//   roundtrip       pool of 1 worker, --warmup submits, then --jobs sequential
//                   `co_await pool.submit(square, i)`; wall / jobs (us per job).
//   roundtrip_concurrent  pool of 2 workers, 2 tasks each submitting --jobs/2 jobs one after the
//                   other, at once; wall / jobs (us per job: the pool's throughput).
//   map             `co_await pool.map(square, items)` over --map-items items, pools of 1 and 2
//                   workers, after a warm-up map; wall / items (us per item).
// spawn:
//   spawn           after --spawn-warmup children, --children times `command(program).spawn()` then
//   `co_await child.wait()`,
//                   one after the other; wall / children (us per child).
//   spawn_concurrent  the same number of children, --concurrency tasks each spawning and
//                   waiting for its share one after the other; wall / children.
// Every result is checked (square's value, the children's exit status). Python's counterparts
// are bench/reference/pool_apply.py and bench/reference/asyncio_spawn.py; bench/processes.py
// (./run bench processes) runs them all in one run.
//
// Stdout gets one line per measurement: its name, then key=value fields, numbers only, e.g.
//   roundtrip workers=1 submitters=1 jobs=20000 wall_s=0.41 us_per_job=20.5
// Exit status 0 when it ran, 1 when it failed, 2 on bad arguments.
#include <spawn.h>
#include <sys/wait.h>
#include <chrono>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/cli.hpp>
#include <weft/weft.hpp>

extern char** environ;

namespace {

using clock_type = std::chrono::steady_clock;

long square(long x) {
  return x * x;
}
WEFT_PROCESS_FUNCTION(square);

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

void check_square(long x, long got) {
  if (got != x * x) {
    throw std::runtime_error(fmt::format("square({}) came back as {}", x, got));
  }
}

// `n` sequential submits of square(first + i).
weft::task<> submit_many(weft::pool::process_pool& pool, long first, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const long x = first + static_cast<long>(i);
    const long got = co_await pool.submit(square, x);
    check_square(x, got);
  }
}

weft::task<> first_job(weft::pool::process_pool& pool) {
  const long got = co_await pool.submit(square, 1L);
  check_square(1, got);
}

weft::task<> timed_submits(weft::pool::process_pool& pool, std::int64_t warmup, std::int64_t jobs,
                           unsigned submitters, double& wall) {
  co_await submit_many(pool, 0, warmup);
  const auto start = clock_type::now();
  if (submitters == 1) {
    co_await submit_many(pool, 0, jobs);
  } else {
    std::vector<weft::join_handle<void>> handles;
    const std::int64_t share = jobs / submitters;
    for (unsigned k = 0; k < submitters; ++k) {
      const std::int64_t n = k + 1 == submitters ? jobs - share * (submitters - 1) : share;
      handles.push_back(weft::spawn(submit_many(pool, static_cast<long>(k) * share, n)));
    }
    for (auto& h : handles) co_await h;
  }
  wall = seconds_since(start);
  co_await pool.shutdown();
}

weft::task<> timed_map(weft::pool::process_pool& pool, std::int64_t items, double& wall) {
  std::vector<long> xs;
  xs.reserve(static_cast<std::size_t>(items));
  for (std::int64_t i = 0; i < items; ++i) xs.push_back(static_cast<long>(i));
  const std::vector<long> warm = co_await pool.map(square, xs);
  const auto start = clock_type::now();
  const std::vector<long> got = co_await pool.map(square, xs);
  wall = seconds_since(start);
  if (warm.size() != xs.size() || got.size() != xs.size()) {
    throw std::runtime_error("map gave a wrong number of results");
  }
  for (std::size_t i = 0; i < xs.size(); ++i) check_square(xs[i], got[i]);
  co_await pool.shutdown();
}

weft::task<> spawn_wait_many(const weft::io::command& cmd, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    auto child = cmd.spawn();
    if (!child) throw std::runtime_error("spawn " + cmd.program() + ": " + child.message());
    auto status = co_await child->wait();
    if (!status) throw std::runtime_error("wait: " + status.message());
    if (!status->success()) {
      throw std::runtime_error(cmd.program() + " ended with " + status->describe());
    }
  }
}

weft::task<> timed_spawns(const weft::io::command& cmd, std::int64_t warmup, std::int64_t children,
                          unsigned concurrency, double& wall) {
  co_await spawn_wait_many(cmd, warmup);
  const auto start = clock_type::now();
  if (concurrency == 1) {
    co_await spawn_wait_many(cmd, children);
  } else {
    std::vector<weft::join_handle<void>> handles;
    const std::int64_t share = children / concurrency;
    for (unsigned k = 0; k < concurrency; ++k) {
      const std::int64_t n = k + 1 == concurrency ? children - share * (concurrency - 1) : share;
      handles.push_back(weft::spawn(spawn_wait_many(cmd, n)));
    }
    for (auto& h : handles) co_await h;
  }
  wall = seconds_since(start);
}

// The floor: blocking posix_spawn + waitpid with no runtime at all. What is left above it is
// weft's own cost; what is below it is the kernel's exec and exit.
double floor_spawns(const std::string& program, std::int64_t warmup, std::int64_t children) {
  std::string arg0 = program;
  char* argv[] = {arg0.data(), nullptr};
  auto once = [&] {
    pid_t pid = -1;
    if (::posix_spawn(&pid, program.c_str(), nullptr, nullptr, argv, environ) != 0) {
      throw std::runtime_error("posix_spawn " + program + " failed");
    }
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      throw std::runtime_error(program + " did not exit with 0");
    }
  };
  for (std::int64_t i = 0; i < warmup; ++i) once();
  const auto start = clock_type::now();
  for (std::int64_t i = 0; i < children; ++i) once();
  return seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  // The pools re-execute this program as their workers (start method spawn).
  weft::pool::serve_if_pool_worker();
  CLI::App app{"process_bench: process pool round trips and child spawn+wait"};
  app.option_defaults()->always_capture_default();  // every --help shows the default
  std::string only, start_method = "spawn", program = "/bin/true";
  std::int64_t jobs = 20'000, warmup = 1'000, map_items = 10'000, children = 2'000;
  std::int64_t spawn_warmup = 100;
  unsigned concurrency = 8;
  app.add_option("--only", only, "roundtrip or spawn (default: both)");
  app.add_option("--jobs", jobs, "sequential submits per round-trip measurement");
  app.add_option("--warmup", warmup, "submits before the clock starts");
  app.add_option("--spawn-warmup", spawn_warmup, "children spawned before the clock starts");
  app.add_option("--map-items", map_items, "items per map");
  app.add_option("--children", children, "children spawned and waited for");
  app.add_option("--concurrency", concurrency, "children in flight in spawn_concurrent");
  app.add_option("--start-method", start_method, "the pools' start method: spawn or fork");
  app.add_option("--program", program, "the program spawned");
  auto fail = [&](const std::string& message) {
    fmt::print(stderr, "process_bench: {}\n{}", message, app.help());
    return 2;
  };
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;
  if (!only.empty() && only != "roundtrip" && only != "spawn") {
    return fail("--only wants roundtrip or spawn, not '" + only + "'");
  }
  if (start_method != "spawn" && start_method != "fork") {
    return fail("--start-method wants spawn or fork, not '" + start_method + "'");
  }
  constexpr std::int64_t most = 100'000'000;
  if (jobs < 2 || jobs > most) return fail("--jobs wants 2 to 100000000");
  if (warmup < 0 || warmup > most) return fail("--warmup wants 0 to 100000000");
  if (spawn_warmup < 0 || spawn_warmup > most) return fail("--spawn-warmup wants 0 to 100000000");
  if (map_items < 1 || map_items > most) return fail("--map-items wants 1 to 100000000");
  if (children < 1 || children > most) return fail("--children wants 1 to 100000000");
  if (concurrency < 1 || concurrency > 1024) return fail("--concurrency wants 1 to 1024");
  const weft::pool::start_method method =
      start_method == "fork" ? weft::pool::start_method::fork : weft::pool::start_method::spawn;
  const int fork_flag = method == weft::pool::start_method::fork ? 1 : 0;

  try {
    if (only.empty() || only == "roundtrip") {
      for (const auto m : {weft::pool::start_method::spawn, weft::pool::start_method::fork}) {
        const auto start = clock_type::now();
        weft::pool::process_pool pool(1, m);
        const double constructed = seconds_since(start);
        weft::run(first_job(pool));
        const double first = seconds_since(start);
        fmt::print("pool_start workers=1 fork={} constructor_s={:.6f} first_result_s={:.6f}\n",
                   m == weft::pool::start_method::fork ? 1 : 0, constructed, first);
      }
      for (const unsigned w : {1u, 2u}) {
        weft::pool::process_pool pool(w, method);
        double wall = 0;
        weft::run(timed_submits(pool, warmup, jobs, w, wall));
        fmt::print("{} workers={} submitters={} fork={} jobs={} wall_s={:.6f} us_per_job={:.3f}\n",
                   w == 1 ? "roundtrip" : "roundtrip_concurrent", w, w, fork_flag, jobs, wall,
                   wall * 1e6 / static_cast<double>(jobs));
      }
      for (const unsigned w : {1u, 2u}) {
        weft::pool::process_pool pool(w, method);
        double wall = 0;
        weft::run(timed_map(pool, map_items, wall));
        fmt::print("map workers={} fork={} items={} wall_s={:.6f} us_per_item={:.3f}\n", w,
                   fork_flag, map_items, wall, wall * 1e6 / static_cast<double>(map_items));
      }
    }
    if (only.empty() || only == "spawn") {
      weft::io::command cmd(program);
      for (const unsigned c : {1u, concurrency}) {
        double wall = 0;
        weft::run(timed_spawns(cmd, spawn_warmup, children, c, wall));
        fmt::print("{} concurrency={} children={} wall_s={:.6f} us_per_child={:.3f}\n",
                   c == 1 ? "spawn" : "spawn_concurrent", c, children, wall,
                   wall * 1e6 / static_cast<double>(children));
        if (concurrency == 1) break;
      }
      const double floor = floor_spawns(program, spawn_warmup, children);
      fmt::print("spawn_floor children={} wall_s={:.6f} us_per_child={:.3f}\n", children, floor,
                 floor * 1e6 / static_cast<double>(children));
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "process_bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
