// weft: the per-thread recycling allocator for coroutine frames.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace weft::detail {

// Why: a program that spawns a million tasks allocates and frees a million frames of one or two
// sizes. glibc's tcache holds only seven blocks per size, so the rest go through _int_malloc and
// _int_free (about 300 instructions per frame, measured with callgrind), and each block carries
// malloc's 8-16 byte header. Here frames of up to 1 KiB are carved from 256 KiB slabs with a bump
// pointer and, once freed, kept on per-thread free lists by size class for reuse. A frame freed on
// another thread joins that thread's list; so that a thread which only frees (an executor whose
// tasks were spawned from elsewhere) does not hoard memory that the allocating thread then
// carves anew, a list longer than `spill_above` hands a batch to a process-wide pool, where a
// thread whose list is empty looks before carving. A thread's lists go to the pool when it exits.
// Slabs are never handed back to malloc: the memory a program's peak of tasks needed stays
// available for its next peak (it stays reachable from process-wide lists, so leak checkers do
// not flag it).
// Under AddressSanitizer and ThreadSanitizer the recycler is off, so use-after-free of a frame
// is still caught.
class frame_allocator {
 public:
  static constexpr std::size_t granularity = 16;
  static constexpr std::size_t max_recycled_size = 1024;
  static constexpr std::size_t classes = max_recycled_size / granularity;

  static void* allocate(std::size_t size) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return ::operator new(size);
#else
    const std::size_t cls = size_class(size);
    if (cls < classes) {
      if (thread_exited) return ::operator new(class_size(cls));
      frame_allocator& self = local();
      free_block* b = self.lists_[cls];
      if (b == nullptr) [[unlikely]] {
        b = self.refill_or_carve(cls);
        if (b == nullptr) return self.carve(class_size(cls));
      }
      self.lists_[cls] = b->next;
      --self.counts_[cls];
      return b;
    }
    return ::operator new(size);
#endif
  }

  static void deallocate(void* p, std::size_t size) noexcept {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    ::operator delete(p);
    (void)size;
#else
    const std::size_t cls = size_class(size);
    if (cls < classes) {
      auto* b = static_cast<free_block*>(p);
      if (thread_exited) {  // a frame freed by a thread_local destroyed after ours
        b->next = nullptr;
        pool().give(cls, b, 1);
        return;
      }
      frame_allocator& self = local();
      b->next = self.lists_[cls];
      self.lists_[cls] = b;
      if (++self.counts_[cls] > spill_above) [[unlikely]]
        self.spill(cls);
      return;
    }
    ::operator delete(p);
#endif
  }

  frame_allocator() = default;
  frame_allocator(const frame_allocator&) = delete;
  frame_allocator& operator=(const frame_allocator&) = delete;
  ~frame_allocator() {
    thread_exited = true;
    for (std::size_t cls = 0; cls < classes; ++cls) {
      if (lists_[cls] != nullptr) pool().give(cls, lists_[cls], counts_[cls]);
    }
  }

 private:
  static constexpr std::size_t slab_size = 256u << 10;
  static constexpr std::size_t spill_batch = 1024;
  static constexpr std::size_t spill_above = 2 * spill_batch;

  struct free_block {
    free_block* next;
  };

  /// Chains of free blocks that threads gave up, by size class. Immortal, like the slabs.
  class shared_pool {
   public:
    void give(std::size_t cls, free_block* chain, std::size_t count) noexcept {
      std::lock_guard lock(mutex_);
      try {
        chains_[cls].push_back({chain, count});
      } catch (...) {  // cannot record it: the blocks stay unused, which is only a loss
      }
    }
    bool take(std::size_t cls, free_block*& chain, std::size_t& count) noexcept {
      std::lock_guard lock(mutex_);
      if (chains_[cls].empty()) return false;
      chain = chains_[cls].back().head;
      count = chains_[cls].back().count;
      chains_[cls].pop_back();
      return true;
    }

   private:
    struct entry {
      free_block* head;
      std::size_t count;
    };
    std::mutex mutex_;
    std::vector<entry> chains_[classes];
  };
  static shared_pool& pool() {
    static shared_pool* p = new shared_pool;  // NOLINT: intentionally immortal
    return *p;
  }

  /// Moves the oldest-pushed `spill_batch` blocks beyond the first ones to the shared pool.
  [[gnu::noinline]] void spill(std::size_t cls) noexcept {
    free_block* keep_tail = lists_[cls];
    for (std::size_t i = 1; i < counts_[cls] - spill_batch; ++i) keep_tail = keep_tail->next;
    free_block* chain = keep_tail->next;
    keep_tail->next = nullptr;
    counts_[cls] -= spill_batch;
    pool().give(cls, chain, spill_batch);
  }

  /// Takes a chain from the shared pool into the empty list and returns its head; null when the
  /// pool has none (then the caller carves).
  [[gnu::noinline]] free_block* refill_or_carve(std::size_t cls) noexcept {
    free_block* chain = nullptr;
    std::size_t count = 0;
    if (!pool().take(cls, chain, count)) return nullptr;
    lists_[cls] = chain;
    counts_[cls] = count;
    return chain;
  }

  /// Every slab ever made, so they stay reachable (see the note at the top). Leaked on purpose:
  /// frames may be freed during static destruction.
  struct slab_registry {
    std::mutex mutex;
    std::vector<void*> slabs;
  };
  static slab_registry& registry() {
    static slab_registry* r = new slab_registry;  // NOLINT: intentionally immortal
    return *r;
  }

  void* carve(std::size_t bytes) {
    if (static_cast<std::size_t>(slab_end_ - slab_next_) < bytes) {
      void* slab = ::operator new(slab_size);
      {
        slab_registry& r = registry();
        std::lock_guard lock(r.mutex);
        try {
          r.slabs.push_back(slab);
        } catch (...) {
          ::operator delete(slab);
          throw;
        }
      }
      slab_next_ = static_cast<char*>(slab);
      slab_end_ = slab_next_ + slab_size;
    }
    void* block = slab_next_;
    slab_next_ += bytes;
    return block;
  }

  static std::size_t size_class(std::size_t size) noexcept {
    return (size + granularity - 1) / granularity - 1;
  }
  static std::size_t class_size(std::size_t cls) noexcept {
    return (cls + 1) * granularity;
  }
  static frame_allocator& local() noexcept {
    static thread_local frame_allocator instance;
    return instance;
  }

  static inline thread_local bool thread_exited = false;  // trivially destructible on purpose

  free_block* lists_[classes] = {};
  std::size_t counts_[classes] = {};
  char* slab_next_ = nullptr;
  char* slab_end_ = nullptr;
};

}  // namespace weft::detail
