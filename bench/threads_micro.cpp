// Micro-benchmarks of the multi-thread (work-stealing) executor across worker threads.
//
//   build/bench/threads_micro [--workers=2] [--tasks=N] [--round-trips=N] [--capacity=1]
//                             [--only=spawn_join|ping_pong] [--executor=multi-thread|cooperative]
//                             [--idle-thread]
//
// spawn_join: on a weft::sched::multi_thread with --workers workers, one task spawns N trivial
//             tasks, keeps their handles, then joins each one; wall time / N (ns per task).
// ping_pong:  two spawned tasks pass a token back and forth through two weft::channel<int> of
//             --capacity (1: bounded(1), the closest to Go's unbuffered channel that weft has),
//             N round trips; wall time / N (ns per round trip). The executor's LIFO slot may keep
//             both tasks on one worker, so the run also counts how many round trips really crossed
//             threads (the receiving task compares its thread with the one its peer sent from)
//             and how often each task changed threads.
// Each workload runs on a fresh executor; the clock starts inside the main task, after a 1 ms
// sleep that lets every worker thread start, and stops when the last join returns. The
// executor's counters (multi_thread_stats) come with each result. --executor=cooperative runs
// the same code on the one-thread executor, for reference. --idle-thread keeps one more thread
// alive, blocked, for the whole run: a process with one thread gets glibc's single-thread
// mutexes (no `lock` prefix), which the channels' mutexes use; with it, 1 worker pays for its
// atomics what 2 workers pay (docs/decisions/multi-thread-policy.md). The Go reference is
// bench/reference/threads.go; bench/threads.py (./run bench threads) runs both.
//
// Stdout gets exactly one JSON object: {"runtime": "weft", "workers": W, "results": [...]}.
// Exit status 0 when it ran, 1 when it failed, 2 on bad arguments.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <weft/weft.hpp>
#include "flags.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

std::int64_t tasks_n = 1'000'000;
std::int64_t round_trips_n = 200'000;
std::int64_t capacity_n = 1;
std::int64_t workers_n = 2;

// An identity of the calling OS thread, cheap enough to take on every round trip.
std::uintptr_t this_thread_tag() noexcept {
  static thread_local char marker;
  return reinterpret_cast<std::uintptr_t>(&marker);
}

std::string stats_json(const weft::sched::multi_thread_stats& s) {
  return fmt::format(
      "\"tasks_run\": {}, \"lifo_runs\": {}, \"steals\": {}, \"stolen\": {}, \"injected\": {}, "
      "\"inject_locks\": {}, \"overflows\": {}, \"parks\": {}, \"wakeups\": {}",
      s.tasks_run, s.lifo_runs, s.steals, s.stolen, s.injected, s.inject_locks, s.overflows,
      s.parks, s.wakeups);
}

weft::task<> trivial() {
  co_return;
}

weft::task<> spawn_join(std::int64_t n, double& ns) {
  co_await weft::sleep_for(1ms);  // every worker thread is up before the clock starts
  const auto start = clock_type::now();
  std::vector<weft::join_handle<void>> handles;
  handles.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) handles.push_back(weft::spawn(trivial()));
  for (auto& h : handles) co_await h;
  ns = std::chrono::duration<double, std::nano>(clock_type::now() - start).count();
}

struct pong_state {
  std::atomic<std::uintptr_t> sender_thread{0};  // where the last token was sent from
  std::int64_t cross = 0;                        // round trips whose reply came from another thread
  std::int64_t migrations[2] = {0, 0};           // thread changes of the pinger and the ponger
};

weft::task<> pinger(weft::channel<int>& ping, weft::channel<int>& pong, std::int64_t n,
                    pong_state& st) {
  std::uintptr_t last = this_thread_tag();
  for (std::int64_t i = 0; i < n; ++i) {
    co_await ping.send(static_cast<int>(i));
    auto v = co_await pong.recv();
    if (!v) throw std::runtime_error("ping_pong: pong channel closed");
    const std::uintptr_t here = this_thread_tag();
    if (st.sender_thread.load(std::memory_order_relaxed) != here) ++st.cross;
    if (here != last) ++st.migrations[0];
    last = here;
  }
  ping.close();
}

weft::task<> ponger(weft::channel<int>& ping, weft::channel<int>& pong, pong_state& st) {
  std::uintptr_t last = this_thread_tag();
  while (auto v = co_await ping.recv()) {
    const std::uintptr_t here = this_thread_tag();
    if (here != last) ++st.migrations[1];
    last = here;
    // Published before the send, so the pinger (which receives after it) sees it.
    st.sender_thread.store(here, std::memory_order_relaxed);
    co_await pong.send(*v);
  }
}

weft::task<> ping_pong(std::int64_t n, std::size_t capacity, double& ns, pong_state& st) {
  weft::channel<int> ping(capacity), pong(capacity);
  co_await weft::sleep_for(1ms);
  const auto start = clock_type::now();
  auto a = weft::spawn(pinger(ping, pong, n, st));
  auto b = weft::spawn(ponger(ping, pong, st));
  co_await a;
  co_await b;
  ns = std::chrono::duration<double, std::nano>(clock_type::now() - start).count();
}

bool take_flag(std::string_view arg, std::string_view name, std::int64_t& value) {
  return weft::bench::take_flag("threads_micro", arg, name, value);
}

}  // namespace

int main(int argc, char** argv) {
  std::string only;
  bool cooperative = false;
  bool idle_thread = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (take_flag(a, "--tasks", tasks_n) || take_flag(a, "--round-trips", round_trips_n) ||
        take_flag(a, "--capacity", capacity_n) || take_flag(a, "--workers", workers_n)) {
      continue;
    }
    if (a == "--executor=cooperative" || a == "--executor=multi-thread") {
      cooperative = a == "--executor=cooperative";
      continue;
    }
    if (a == "--idle-thread") {
      idle_thread = true;
      continue;
    }
    if (a == "--only=spawn_join" || a == "--only=ping_pong") {
      only = std::string(a.substr(7));
      continue;
    }
    std::fprintf(stderr,
                 "threads_micro: unknown argument '%s'\nusage: threads_micro "
                 "[--executor=multi-thread|cooperative] [--workers=2] [--tasks=N] "
                 "[--round-trips=N] [--capacity=1] [--only=spawn_join|ping_pong] [--idle-thread]\n",
                 argv[i]);
    return 2;
  }
  if (workers_n > 1024) {
    std::fprintf(stderr, "threads_micro: --workers wants 1 to 1024\n");
    return 2;
  }
  const weft::sched::multi_thread_options options{static_cast<unsigned>(workers_n), 256};
  // Runs `main` on a fresh executor of the kind asked for; the multi-thread executor's counters
  // as JSON members (none for cooperative).
  auto run = [&](weft::task<> main) -> std::string {
    if (cooperative) {
      weft::sched::cooperative executor;
      executor.block_on(std::move(main));
      return "\"executor\": \"cooperative\"";
    }
    weft::sched::multi_thread executor(options);
    executor.block_on(std::move(main));
    return "\"executor\": \"multi-thread\", " + stats_json(executor.stats());
  };
  std::jthread idle;  // blocked until its destructor asks it to stop
  if (idle_thread) {
    idle = std::jthread([](std::stop_token stop) {
      std::mutex m;
      std::condition_variable_any cv;
      std::unique_lock lock(m);
      cv.wait(lock, stop, [] { return false; });
    });
  }
  std::vector<std::string> results;
  try {
    if (only.empty() || only == "spawn_join") {
      double ns = 0;
      const std::string stats = run(spawn_join(tasks_n, ns));
      results.push_back(
          fmt::format("{{\"name\": \"spawn_join\", \"tasks\": {}, \"ns_per_task\": {:.3f}, {}}}",
                      tasks_n, ns / static_cast<double>(tasks_n), stats));
    }
    if (only.empty() || only == "ping_pong") {
      double ns = 0;
      pong_state st;
      const std::string stats =
          run(ping_pong(round_trips_n, static_cast<std::size_t>(capacity_n), ns, st));
      results.push_back(
          fmt::format("{{\"name\": \"ping_pong\", \"round_trips\": {}, \"capacity\": {}, "
                      "\"ns_per_round_trip\": {:.3f}, \"cross_thread_round_trips\": {}, "
                      "\"pinger_migrations\": {}, \"ponger_migrations\": {}, {}}}",
                      round_trips_n, capacity_n, ns / static_cast<double>(round_trips_n), st.cross,
                      st.migrations[0], st.migrations[1], stats));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "threads_micro: %s\n", e.what());
    return 1;
  }
  std::string joined;
  for (const auto& r : results) joined += (joined.empty() ? "" : ", ") + r;
  fmt::print("{{\"runtime\": \"weft\", \"workers\": {}, \"results\": [{}]}}\n",
             cooperative ? 1 : workers_n, joined);
  return 0;
}
