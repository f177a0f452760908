// weft (private): a provided buffer ring, the pool that multishot receives draw from.
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace weft::detail {

/// `count` buffers of `size` bytes registered with one ring as buffer group `group`
/// (io_uring_register_buf_ring). The kernel takes a buffer from the ring for each receive it
/// completes and names it in the CQE (IORING_CQE_F_BUFFER, the id above IORING_CQE_BUFFER_SHIFT);
/// `give_back` returns it. The memory (the ring of descriptors, page aligned, and the buffers)
/// is one anonymous mapping that lives as long as this object, so a buffer handed out stays
/// valid after the io_uring itself is gone. Thread-safety: `give_back` from any thread (a spin
/// lock orders the writers of the ring's tail; the kernel only reads it); the rest is immutable.
///
/// Sizing: the ring hands buffers out in FIFO order, so every receive lands in the buffer that
/// was returned longest ago, the coldest in the cache. A small ring keeps that working set in
/// the cache: with 4,096 buffers the liburing echo reference spent up to 1.27x the CPU per
/// message of a one-recv-per-message loop, with 256 it spent 0.89-1.0x of it (see
/// docs/decisions/sockets-multishot.md). When the ring runs dry, recv_stream falls back to a
/// one-shot recv (a heap buffer, a poll, a second SQE): never data lost, but with 256 buffers
/// an echo server with 500 busy connections took that path often enough to cost it 1.40x the
/// reference's CPU per message; 512 buffers (2 MiB) cover one message in flight on each of
/// them and brought it to 1.17x, as 1,024 did (docs/decisions/socket-floor.md).
class buffer_ring {
 public:
  static constexpr unsigned default_count = 512;           ///< buffers per reactor (see above)
  static constexpr std::size_t default_size = 4096;        ///< bytes per buffer
  static constexpr unsigned short default_group = 0x5746;  ///< the group id weft uses ("WF")

  /// Maps and registers the ring, all buffers given to the kernel. `count` is a power of two
  /// (at most 32768). Throws std::system_error ("io_uring_register_buf_ring", "mmap").
  buffer_ring(io_uring* ring, unsigned short group, unsigned count, std::size_t size);
  buffer_ring(const buffer_ring&) = delete;
  buffer_ring& operator=(const buffer_ring&) = delete;
  ~buffer_ring();

  unsigned short group() const noexcept { return group_; }
  std::size_t buffer_size() const noexcept { return size_; }
  std::byte* data(unsigned short bid) const noexcept { return buffers_ + bid * size_; }

  /// Hands buffer `bid` back to the kernel. Any thread.
  void give_back(unsigned short bid) noexcept;

 private:
  io_uring_buf_ring* ring_ = nullptr;
  std::byte* buffers_ = nullptr;
  std::size_t mapped_ = 0;
  const unsigned count_;
  const std::size_t size_;
  const unsigned short group_;
  std::atomic<bool> lock_{false};
};

}  // namespace weft::detail
