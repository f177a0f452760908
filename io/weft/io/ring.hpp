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
  /// (headroom against overflow), with IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN where the
  /// kernel has them: only the thread that creates the ring may submit to it.
  explicit ring(unsigned entries);
  ring(const ring&) = delete;
  ring& operator=(const ring&) = delete;
  ~ring();

  /// The liburing handle, for liburing calls. Owner thread only.
  io_uring* get() noexcept { return &ring_; }
  /// The size of the submission queue, as the kernel set it up.
  unsigned sq_entries() const noexcept { return ring_.sq.ring_entries; }
  /// The size of the completion queue, as the kernel set it up.
  unsigned cq_entries() const noexcept { return ring_.cq.ring_entries; }
  /// True when completions are posted only when the owner asks for them
  /// (IORING_SETUP_DEFER_TASKRUN): a non-blocking poll must then enter the kernel to get them.
  bool defer_taskrun() const noexcept { return defer_taskrun_; }
  /// True when the kernel sets IORING_SQ_TASKRUN in the SQ ring's flags while completion work
  /// waits (IORING_SETUP_TASKRUN_FLAG): a non-blocking poll may then skip the kernel when the
  /// flag is clear and nothing is queued.
  bool taskrun_flag() const noexcept { return taskrun_flag_; }
  /// True while the ring waits for `enable()` (nothing can be submitted yet).
  bool disabled() const noexcept { return disabled_; }
  /// Enables a ring created disabled; the calling thread becomes its only submitter.
  /// Throws std::system_error. No-op when already enabled.
  void enable();

  /// How many rings exist in this process now (any thread). A process pool's fork start method
  /// refuses to fork while one does: the child would share its memory.
  static unsigned live_count() noexcept;

 private:
  io_uring ring_{};
  bool defer_taskrun_ = false;
  bool taskrun_flag_ = false;
  bool disabled_ = false;
};

}  // namespace weft::io
