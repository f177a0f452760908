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
// another thread joins that thread's list. Slabs are never handed back to malloc: the memory a
// program's peak of tasks needed stays available for its next peak (they stay reachable from a
// process-wide list, so leak checkers do not flag them).
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
      frame_allocator& self = local();
      if (free_block* b = self.lists_[cls]) {
        self.lists_[cls] = b->next;
        return b;
      }
      return self.carve(class_size(cls));
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
      frame_allocator& self = local();
      auto* b = static_cast<free_block*>(p);
      b->next = self.lists_[cls];
      self.lists_[cls] = b;
      return;
    }
    ::operator delete(p);
#endif
  }

  frame_allocator() = default;
  frame_allocator(const frame_allocator&) = delete;
  frame_allocator& operator=(const frame_allocator&) = delete;

 private:
  static constexpr std::size_t slab_size = 256u << 10;

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

  struct free_block {
    free_block* next;
  };
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

  free_block* lists_[classes] = {};
  char* slab_next_ = nullptr;
  char* slab_end_ = nullptr;
};

}  // namespace weft::detail
