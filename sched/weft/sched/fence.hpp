// weft: the store-load fence of the parking protocols.
#pragma once

#include <atomic>

namespace weft::detail {

/// A full (store-load) fence between a write and a read of different variables, the core of the
/// parking protocols' Dekker pattern (see ARCHITECTURE.md, "Parking").
///
/// ThreadSanitizer does not model std::atomic_thread_fence (g++ refuses it under
/// -fsanitize=thread), so there the fence is a seq_cst read-modify-write of one shared word:
/// two such RMWs are ordered in that word's modification order, and the later one
/// synchronizes with the earlier, which gives the same guarantee in terms TSan checks. It is
/// not used in normal builds because every worker writing one cache line on each wake-up
/// check would make the line bounce between cores.
inline void store_load_fence() noexcept {
#if defined(__SANITIZE_THREAD__)
  static std::atomic<unsigned> word{0};
  word.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace weft::detail
