// weft: an owned file descriptor.
#pragma once

#include <unistd.h>

#include <utility>

#include <weft/io/operation.hpp>

namespace weft::io {

/// Owns one file descriptor (RAII): the destructor closes it. Every fd weft creates is opened
/// with O_CLOEXEC (SOCK_CLOEXEC, EFD_CLOEXEC...), so a spawned program never inherits it.
///
/// The destructor closes synchronously with close(2), which never blocks on sockets and pipes;
/// `close()` is the awaitable alternative (IORING_OP_CLOSE) that reports the error, which matters
/// for files on network file systems. Not thread-safe: one owner at a time; moving transfers it.
class fd {
 public:
  fd() noexcept = default;
  /// Takes ownership of `raw` (-1: none).
  explicit fd(int raw) noexcept : raw_(raw) {}
  /// Takes over `other`'s descriptor; `other` owns none afterwards.
  fd(fd&& other) noexcept : raw_(std::exchange(other.raw_, -1)) {}
  /// Closes the descriptor this object owned (like `reset()`), then takes over `other`'s.
  fd& operator=(fd&& other) noexcept {
    if (this != &other) {
      reset();
      raw_ = std::exchange(other.raw_, -1);
    }
    return *this;
  }
  fd(const fd&) = delete;
  fd& operator=(const fd&) = delete;
  ~fd() { reset(); }

  /// The descriptor, or -1.
  int get() const noexcept { return raw_; }
  /// True while a descriptor is owned.
  explicit operator bool() const noexcept { return raw_ >= 0; }

  /// Gives up ownership without closing.
  int release() noexcept { return std::exchange(raw_, -1); }

  /// Closes now (synchronously), ignoring errors. Idempotent.
  void reset() noexcept {
    if (raw_ >= 0) ::close(std::exchange(raw_, -1));
  }

  /// Closes through the ring and reports close(2)'s error. The fd is released at once, so
  /// this object owns nothing afterwards whatever the outcome. Awaitable giving `result<void>`.
  [[nodiscard]] auto close() noexcept {
    const int raw = release();
    return void_operation("close", [raw](io_uring_sqe* sqe) { io_uring_prep_close(sqe, raw); });
  }

 private:
  int raw_ = -1;
};

}  // namespace weft::io
