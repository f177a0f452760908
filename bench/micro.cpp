// Micro-benchmarks of the cooperative executor (Google Benchmark).
//
//   build/bench/micro [--tasks=N] [--switches=N] [--sleepers=N] [--sleep-ms=N]
//                     [Google Benchmark flags, e.g. --benchmark_out=micro.json]
//
// spawn_join: spawn N trivial tasks, then join each one (ns per task; N frames alive at once).
// spawn_join_each: spawn one trivial task and join it, N times (ns per task).
// switch:     two tasks ping-pong through yield_now() (ns per switch).
// switch_run, switch_traced: the same through weft::run, tracing off and on (WEFT_TRACE's
//             cost: recording and writing one `run` span per switch).
// trace_span: recording one span alone (two clock reads and a store into the buffer).
// sleepers:   N tasks asleep at once until one deadline: heap bytes per sleeping task (glibc
//             mallinfo2, so it counts frames, timer-heap slots and stop states), the time to wake
//             them all, and how late the last one woke after the deadline.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>
#include <weft/weft.hpp>

namespace {

std::int64_t tasks_n = 1'000'000;
std::int64_t switches_n = 1'000'000;
std::int64_t sleepers_n = 1'000'000;
std::int64_t sleep_ms = 1000;

weft::task<> trivial() {
  co_return;
}

weft::task<> spawn_join(std::int64_t n) {
  std::vector<weft::join_handle<void>> handles;
  handles.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) handles.push_back(weft::spawn(trivial()));
  for (auto& h : handles) co_await h;
}

// Wall-clock nanoseconds of `fn`, the figure each counter reports per item.
template <class Fn>
double wall_ns(Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
}

// Runs `make_task(count)` to completion on a fresh executor per iteration and reports the wall
// time per item as `counter` (items: `count`).
template <class MakeTask>
void per_item(benchmark::State& state, std::int64_t count, const char* items, const char* counter,
              MakeTask make_task) {
  weft::sched::cooperative executor;
  double ns = 0;
  for (auto _ : state) ns += wall_ns([&] { executor.block_on(make_task(count)); });
  state.counters[items] = static_cast<double>(count);
  state.counters[counter] =
      ns / (static_cast<double>(count) * static_cast<double>(state.iterations()));
}

void BM_spawn_join(benchmark::State& state) {
  per_item(state, tasks_n, "tasks", "ns_per_task", spawn_join);
}

weft::task<> spawn_join_each(std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) co_await weft::spawn(trivial());
}

// The same work with one task alive at a time: the per-task cost without a million frames'
// worth of cache misses.
void BM_spawn_join_each(benchmark::State& state) {
  per_item(state, tasks_n, "tasks", "ns_per_task", spawn_join_each);
}

weft::task<> yielder(std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) co_await weft::yield_now();
}

weft::task<> ping_pong(std::int64_t switches) {
  // Each yield is one switch to the other task.
  co_await weft::when_all(yielder(switches / 2), yielder(switches / 2));
}

void BM_switch(benchmark::State& state) {
  per_item(state, switches_n, "switches", "ns_per_switch", ping_pong);
}

// The same ping-pong through weft::run, with tracing on (switch_traced) or off (switch_run):
// the difference per switch is what recording one `run` span costs, plus writing it out as
// JSON when run returns (to /dev/null here: the formatting, not the disk).
void switch_through_run(benchmark::State& state, bool traced) {
  weft::run_options options;
  if (traced) {
    options.trace_path = "/dev/null";
    options.trace_events = static_cast<std::size_t>(switches_n) + 4096;  // none dropped
  }
  double ns = 0;
  for (auto _ : state) ns += wall_ns([&] { weft::run(options, ping_pong(switches_n)); });
  state.counters["switches"] = static_cast<double>(switches_n);
  state.counters["ns_per_switch"] =
      ns / (static_cast<double>(switches_n) * static_cast<double>(state.iterations()));
}

void BM_switch_run(benchmark::State& state) {
  switch_through_run(state, false);
}
void BM_switch_traced(benchmark::State& state) {
  switch_through_run(state, true);
}

// What recording one `run` span costs, without writing it: two steady-clock reads and a store
// into a thread's trace buffer, around an empty resumption.
void BM_trace_span(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(switches_n);
  double ns = 0;
  for (auto _ : state) {
    weft::detail::trace_buffer buffer(n);
    ns += wall_ns([&] {
      for (std::size_t i = 0; i < n; ++i) weft::detail::traced_resume(buffer, [] {});
    });
    benchmark::DoNotOptimize(buffer.events().data());
  }
  state.counters["spans"] = static_cast<double>(n);
  state.counters["ns_per_span"] =
      ns / (static_cast<double>(n) * static_cast<double>(state.iterations()));
}

struct sleep_results {
  double bytes_per_sleeper = 0;
  double wake_all_s = 0;
  double late_max_s = 0;
};

// Bytes the heap has handed out: arena blocks plus blocks served by mmap (large ones).
std::size_t heap_in_use() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

weft::task<> sleeper(weft::clock::time_point deadline, weft::clock::time_point& latest_wake) {
  co_await weft::sleep_until(deadline);
  latest_wake = std::max(latest_wake, weft::clock::now());
}

weft::task<> sleep_many(std::int64_t n, std::chrono::milliseconds delay, sleep_results& out) {
  weft::clock::time_point latest_wake{};
  // The deadline must lie after the last spawn; it is fixed first so every task shares it.
  const auto deadline = weft::clock::now() + delay;
  std::vector<weft::join_handle<void>> handles;
  handles.reserve(static_cast<std::size_t>(n));
  const std::size_t heap_after_vector = heap_in_use();
  for (std::int64_t i = 0; i < n; ++i)
    handles.push_back(weft::spawn(sleeper(deadline, latest_wake)));
  co_await weft::yield_now();  // every sleeper has now run to its sleep
  const std::size_t heap_asleep = heap_in_use();
  if (weft::clock::now() >= deadline) {
    out.bytes_per_sleeper = -1;  // the spawn phase outlasted the delay: the figure would lie
  } else {
    // The handles vector is the benchmark's own bookkeeping, not a cost of sleeping.
    out.bytes_per_sleeper =
        static_cast<double>(heap_asleep - heap_after_vector) / static_cast<double>(n);
  }
  for (auto& h : handles) co_await h;
  out.late_max_s = std::chrono::duration<double>(latest_wake - deadline).count();
  out.wake_all_s = out.late_max_s;  // all woke by deadline + late_max
}

void BM_sleepers(benchmark::State& state) {
  weft::sched::cooperative executor;
  sleep_results r;
  for (auto _ : state)
    executor.block_on(sleep_many(sleepers_n, std::chrono::milliseconds(sleep_ms), r));
  state.counters["sleepers"] = static_cast<double>(sleepers_n);
  state.counters["bytes_per_sleeper"] = r.bytes_per_sleeper;
  state.counters["wake_all_s"] = r.wake_all_s;
  state.counters["late_max_s"] = r.late_max_s;
}

bool take_flag(std::string_view arg, std::string_view name, std::int64_t& value) {
  if (arg.substr(0, name.size()) != name || arg.size() <= name.size() || arg[name.size()] != '=') {
    return false;
  }
  const std::string text(arg.substr(name.size() + 1));
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || v <= 0) {
    std::fprintf(stderr, "micro: %s wants a positive number, not '%s'\n", std::string(name).c_str(),
                 text.c_str());
    std::exit(2);
  }
  value = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // Our own flags first; the rest goes to Google Benchmark.
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (take_flag(a, "--tasks", tasks_n) || take_flag(a, "--switches", switches_n) ||
        take_flag(a, "--sleepers", sleepers_n) || take_flag(a, "--sleep-ms", sleep_ms)) {
      continue;
    }
    rest.push_back(argv[i]);
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;
  benchmark::RegisterBenchmark("spawn_join", BM_spawn_join)
      ->Unit(benchmark::kMillisecond)
      ->Repetitions(5)
      ->Iterations(1);
  benchmark::RegisterBenchmark("spawn_join_each", BM_spawn_join_each)
      ->Unit(benchmark::kMillisecond)
      ->Repetitions(5)
      ->Iterations(1);
  benchmark::RegisterBenchmark("switch", BM_switch)
      ->Unit(benchmark::kMillisecond)
      ->Repetitions(5)
      ->Iterations(1);
  benchmark::RegisterBenchmark("switch_run", BM_switch_run)
      ->Unit(benchmark::kMillisecond)
      ->Repetitions(5)
      ->Iterations(1);
  benchmark::RegisterBenchmark("switch_traced", BM_switch_traced)
      ->Unit(benchmark::kMillisecond)
      ->Repetitions(5)
      ->Iterations(1);
  benchmark::RegisterBenchmark("trace_span", BM_trace_span)
      ->Unit(benchmark::kMillisecond)
      ->Repetitions(5)
      ->Iterations(1);
  benchmark::RegisterBenchmark("sleepers", BM_sleepers)
      ->Unit(benchmark::kMillisecond)
      ->Iterations(1);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
