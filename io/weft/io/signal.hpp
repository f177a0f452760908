// weft: waiting for signals (SIGINT, SIGTERM...) as I/O.
#pragma once

#include <signal.h>
#include <sys/signalfd.h>

#include <initializer_list>
#include <vector>

#include <weft/io/fd.hpp>
#include <weft/io/operation.hpp>
#include <weft/io/result.hpp>

namespace weft::io {

/// A set of signals delivered through a signalfd read on the ring, so a server can
/// `co_await signals.wait()` for SIGINT or SIGTERM and shut down from a task, with no signal
/// handler and no async-signal-safety traps.
///
/// Construction blocks the signals in the calling thread's mask (sigprocmask); create it in
/// `main` before starting any thread, so that every thread inherits the mask and the signals
/// stay pending for the signalfd. Destruction closes the fd, consumes the signals of the set that
/// are still pending (so a second Ctrl-C during a graceful shutdown does not kill the process
/// after all) and restores the previous mask.
/// Thread-safety: wait() from one task at a time.
class signal_set {
 public:
  /// Errors: throws std::system_error ("signalfd") when the fd cannot be created.
  explicit signal_set(std::initializer_list<int> signals);
  signal_set(const signal_set&) = delete;
  signal_set& operator=(const signal_set&) = delete;
  ~signal_set();

  /// Awaitable giving `result<int>`: the number of the next signal that arrives (one per
  /// call; two SIGINTs give two results). Errors: "read".
  [[nodiscard]] auto wait() noexcept { return basic_operation<spec>(spec(fd_.get())); }

  /// The signalfd.
  int native_handle() const noexcept { return fd_.get(); }

 private:
  struct spec {
    explicit spec(int fd) noexcept : fd(fd) {}
    spec(spec&& o) noexcept : fd(o.fd) {}
    void prepare(io_uring_sqe* sqe) noexcept {
      io_uring_prep_read(sqe, fd, &info, sizeof info, static_cast<__u64>(-1));
    }
    result<int> finish(int r) {
      detail::throw_if_cancelled(r, "read signalfd");
      if (r < 0) return error_from_result(r, "read signalfd");
      return static_cast<int>(info.ssi_signo);
    }
    int fd;
    signalfd_siginfo info{};
  };

  io::fd fd_;
  sigset_t previous_{};
  std::vector<int> signals_;
};

}  // namespace weft::io
