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
// floor_spawn_join, floor_spawn_join_each, floor_switch: the same three workloads with bare
//             coroutines (a minimal promise, frames from operator new) and a FIFO ring of
//             handles, no runtime: the floor that weft's figures are divided by (report.py).
// channel_round_trip: two tasks pass a value there and back through two channels (ns per
//             round trip: two sends, two receives, two switches).
// sleepers:   N tasks asleep at once until one deadline: heap bytes per sleeping task (glibc
//             mallinfo2, so it counts frames, timer-heap slots and stop states), the time to wake
//             them all, and how late the last one woke after the deadline.
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <weft/weft.hpp>
#include "flags.hpp"

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

// --- the floor: what a spawn, a join and a yield cost with no runtime at all ---

// A FIFO ring of coroutine handles, the run queue of the floor (a power-of-two array; grows).
class handle_ring {
 public:
  void push(std::coroutine_handle<> h) {
    if (tail_ - head_ == slots_.size()) grow();
    slots_[tail_++ & (slots_.size() - 1)] = h;
  }
  bool empty() const noexcept { return head_ == tail_; }
  std::coroutine_handle<> pop() noexcept { return slots_[head_++ & (slots_.size() - 1)]; }
  void run() {
    while (!empty()) pop().resume();
  }

 private:
  void grow() {
    std::vector<std::coroutine_handle<>> bigger(slots_.size() * 2);
    for (std::size_t i = head_; i != tail_; ++i)
      bigger[i - head_] = slots_[i & (slots_.size() - 1)];
    tail_ -= head_;
    head_ = 0;
    slots_.swap(bigger);
  }
  std::vector<std::coroutine_handle<>> slots_ = std::vector<std::coroutine_handle<>>(1024);
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
};

// A bare lazy coroutine: starts suspended, stays suspended at its end until destroyed.
struct bare_task {
  struct promise_type {
    bare_task get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_always final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> handle;
};

bare_task bare_trivial() {
  co_return;
}

// Spawn: allocate the frame and queue it; run the ring; join: see it done, free the frame.
void floor_spawn_join(std::int64_t n, handle_ring& ring) {
  std::vector<bare_task> tasks;
  tasks.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    tasks.push_back(bare_trivial());
    ring.push(tasks.back().handle);
  }
  ring.run();
  for (bare_task& t : tasks) {
    if (!t.handle.done()) std::terminate();
    t.handle.destroy();
  }
}

void floor_spawn_join_each(std::int64_t n, handle_ring& ring) {
  for (std::int64_t i = 0; i < n; ++i) {
    bare_task t = bare_trivial();
    ring.push(t.handle);
    ring.run();
    if (!t.handle.done()) std::terminate();
    t.handle.destroy();
  }
}

// A yield: the coroutine queues itself behind the ring's others.
struct ring_yield {
  handle_ring& ring;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) { ring.push(h); }
  void await_resume() const noexcept {}
};

bare_task bare_yielder(std::int64_t n, handle_ring& ring) {
  for (std::int64_t i = 0; i < n; ++i) co_await ring_yield{ring};
}

void floor_switch(std::int64_t switches, handle_ring& ring) {
  bare_task a = bare_yielder(switches / 2, ring);
  bare_task b = bare_yielder(switches / 2, ring);
  ring.push(a.handle);
  ring.push(b.handle);
  ring.run();
  a.handle.destroy();
  b.handle.destroy();
}

// Runs `fn(count, ring)` once per iteration and reports ns per item as `counter`.
template <class Fn>
void floor_per_item(benchmark::State& state, std::int64_t count, const char* items,
                    const char* counter, Fn fn) {
  handle_ring ring;
  double ns = 0;
  for (auto _ : state) ns += wall_ns([&] { fn(count, ring); });
  state.counters[items] = static_cast<double>(count);
  state.counters[counter] =
      ns / (static_cast<double>(count) * static_cast<double>(state.iterations()));
}

void BM_floor_spawn_join(benchmark::State& state) {
  floor_per_item(state, tasks_n, "tasks", "ns_per_task", floor_spawn_join);
}
void BM_floor_spawn_join_each(benchmark::State& state) {
  floor_per_item(state, tasks_n, "tasks", "ns_per_task", floor_spawn_join_each);
}
void BM_floor_switch(benchmark::State& state) {
  floor_per_item(state, switches_n, "switches", "ns_per_switch", floor_switch);
}

// --- a channel round trip: ping sends, pong answers ---

weft::task<> pong(weft::channel<std::int64_t>& in, weft::channel<std::int64_t>& out) {
  while (std::optional<std::int64_t> v = co_await in.recv()) co_await out.send(*v + 1);
  out.close();
}

weft::task<> ping(std::int64_t trips) {
  weft::channel<std::int64_t> there(1), back(1);
  auto answerer = weft::spawn(pong(there, back));
  std::int64_t v = 0;
  for (std::int64_t i = 0; i < trips; ++i) {
    co_await there.send(v);
    v = *co_await back.recv();
  }
  there.close();
  co_await answerer;
  if (v != trips) std::terminate();  // every answer came back
}

void BM_channel_round_trip(benchmark::State& state) {
  per_item(state, switches_n / 2, "round_trips", "ns_per_round_trip", ping);
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
  return weft::bench::take_flag("micro", arg, name, value);
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
  using bench_fn = void (*)(benchmark::State&);
  // Each one timed iteration, repeated 5 times; registered in this order.
  const std::pair<const char*, bench_fn> repeated[] = {
      {"spawn_join", BM_spawn_join},
      {"spawn_join_each", BM_spawn_join_each},
      {"switch", BM_switch},
      {"switch_run", BM_switch_run},
      {"switch_traced", BM_switch_traced},
      {"trace_span", BM_trace_span},
      {"floor_spawn_join", BM_floor_spawn_join},
      {"floor_spawn_join_each", BM_floor_spawn_join_each},
      {"floor_switch", BM_floor_switch},
      {"channel_round_trip", BM_channel_round_trip}};
  for (auto [name, fn] : repeated) {
    benchmark::RegisterBenchmark(name, fn)
        ->Unit(benchmark::kMillisecond)
        ->Repetitions(5)
        ->Iterations(1);
  }
  benchmark::RegisterBenchmark("sleepers", BM_sleepers)
      ->Unit(benchmark::kMillisecond)
      ->Iterations(1);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
