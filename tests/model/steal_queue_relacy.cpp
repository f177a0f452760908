// Relacy model of the multi-thread worker's local queue (sched/steal_queue.hpp):
// the owner pushes and pops while two thieves steal half of it at a time; no item may be lost
// or taken twice, under every interleaving and memory-order outcome Relacy explores.
//
// A transcription, not the header itself: Relacy needs its own atomics with a `$` debug
// argument at every access, and the header uses std::atomic. Keep the two in step: the
// memory orders, the order of loads and the CAS ranges below are the header's, line by line;
// only the slots hold ints instead of coroutine handles and the capacity is 4 (so the model
// wraps around and fills up within a few steps).
//
//   steal_queue_relacy [random|full] [iterations]
#include <relacy/relacy.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr unsigned capacity = 4;
constexpr unsigned mask = capacity - 1;
constexpr int items = 5;  // the owner pushes 1..items (more than fit: a push can fail)

struct queue {
  rl::atomic<unsigned> head;
  rl::atomic<unsigned> tail;
  rl::atomic<int> slots[capacity];

  void init() {
    head($).store(0, rl::mo_relaxed);
    tail($).store(0, rl::mo_relaxed);
    for (auto& s : slots) s($).store(0, rl::mo_relaxed);
  }

  bool try_push(int v) {
    const unsigned t = tail($).load(rl::mo_relaxed);
    if (t - head($).load(rl::mo_acquire) >= capacity) return false;
    slots[t & mask]($).store(v, rl::mo_relaxed);
    tail($).store(t + 1, rl::mo_release);
    return true;
  }

  int pop() {
    unsigned h = head($).load(rl::mo_acquire);
    const unsigned t = tail($).load(rl::mo_relaxed);
    while (h != t) {
      const int item = slots[h & mask]($).load(rl::mo_relaxed);
      if (head($).compare_exchange_weak(h, h + 1, rl::mo_acq_rel, rl::mo_acquire)) return item;
    }
    return 0;
  }

  // Moves about half into `dst` (owned by the caller, empty) and returns one more, or 0.
  int steal_into(queue& dst) {
    unsigned h = head($).load(rl::mo_acquire);
    for (int attempt = 0; attempt < 16; ++attempt) {
      const unsigned t = tail($).load(rl::mo_acquire);
      unsigned n = t - h;
      if (n == 0 || n > capacity) return 0;
      n -= n / 2;
      const unsigned dst_tail = dst.tail($).load(rl::mo_relaxed);
      const int first = slots[h & mask]($).load(rl::mo_relaxed);
      for (unsigned i = 1; i < n; ++i) {
        dst.slots[(dst_tail + i - 1) & mask]($).store(slots[(h + i) & mask]($).load(rl::mo_relaxed),
                                                      rl::mo_relaxed);
      }
      if (head($).compare_exchange_strong(h, h + n, rl::mo_acq_rel, rl::mo_acquire)) {
        if (n > 1) dst.tail($).store(dst_tail + n - 1, rl::mo_release);
        return first;
      }
    }
    return 0;
  }
};

// Thread 0 owns `q`: pushes 1..items, popping one after every second push (and when full).
// Threads 1 and 2 each steal once into their own queue and then drain it.
struct steal_test : rl::test_suite<steal_test, 3> {
  queue q;
  queue stolen[2];
  int taken[3][items + 1];

  void before() {
    q.init();
    stolen[0].init();
    stolen[1].init();
    std::memset(taken, 0, sizeof taken);
  }

  void take(unsigned thread, int v) {
    RL_ASSERT(v >= 1 && v <= items);
    ++taken[thread][v];
  }

  void thread(unsigned index) {
    if (index == 0) {
      for (int v = 1; v <= items; ++v) {
        while (!q.try_push(v)) {
          if (const int x = q.pop()) take(0, x);
        }
        if (v % 2 == 0) {
          if (const int x = q.pop()) take(0, x);
        }
      }
      while (const int x = q.pop()) take(0, x);
    } else {
      queue& mine = stolen[index - 1];
      if (const int x = q.steal_into(mine)) take(index, x);
      while (const int x = mine.pop()) take(index, x);
    }
  }

  void after() {
    for (int v = 1; v <= items; ++v) {
      const int times = taken[0][v] + taken[1][v] + taken[2][v];
      RL_ASSERT(times == 1);  // 0: lost; 2: taken twice
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  rl::test_params p;
  p.search_type = rl::sched_random;
  p.iteration_count = 200000;
  if (argc > 1 && std::strcmp(argv[1], "full") == 0) p.search_type = rl::sched_full;
  if (argc > 2) p.iteration_count = std::strtoull(argv[2], nullptr, 10);
  const bool ok = rl::simulate<steal_test>(p);
  std::printf("steal_queue model (%s search, %llu iterations): %s\n",
              p.search_type == rl::sched_full ? "full" : "random",
              static_cast<unsigned long long>(p.iteration_count), ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
