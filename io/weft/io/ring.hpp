// weft: an owned io_uring instance.
#pragma once

#include <liburing.h>

namespace weft::io {

/// One io_uring, owned (RAII): created in the constructor, torn down in the destructor.
///
/// Construction throws `std::system_error` whose message names the likely cause when the kernel
/// refuses a ring: io_uring disabled by `kernel.io_uring_disabled`, a seccomp or container policy,
/// RLIMIT_MEMLOCK on kernels that charge ring memory to it, or a kernel without io_uring.
/// Not thread-safe: a ring belongs to one thread (one submitter, one completer).
class ring {
 public:
  /// Creates a ring of `entries` submission slots and a completion queue four times larger
  /// (headroom against overflow).
  explicit ring(unsigned entries);
  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;
  ~ring();

  io_uring* get() noexcept { return &ring_; }
  unsigned sq_entries() const noexcept { return ring_.sq.ring_entries; }
  unsigned cq_entries() const noexcept { return ring_.cq.ring_entries; }

 private:
  io_uring ring_{};
};

}  // namespace weft::io
