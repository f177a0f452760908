// weft: pipes on io_uring.
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include <weft/io/fd.hpp>
#include <weft/io/operation.hpp>
#include <weft/io/result.hpp>
#include <weft/task.hpp>

namespace weft::io {

/// What both ends of a pipe share: the fd the end owns (O_CLOEXEC), and closing, giving up or
/// naming it. Thread-safety: that of the end (`pipe_reader`, `pipe_writer`).
class pipe_end {
 public:
  /// Closes this end through the ring; see `fd::close()`. Once the write end is closed (and no
  /// other write end is open), the reader sees end of stream. Awaitable giving `result<void>`,
  /// errors named "close".
  [[nodiscard]] auto close() noexcept { return fd_.close(); }
  /// The fd (-1 when closed or released).
  int native_handle() const noexcept { return fd_.get(); }
  /// Gives up ownership (for handing the fd to a child process).
  io::fd release() noexcept { return std::move(fd_); }
  /// True while this end owns an fd.
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }

 protected:
  /// An end that owns nothing.
  pipe_end() noexcept = default;
  /// Takes ownership of `f`.
  explicit pipe_end(io::fd f) noexcept : fd_(std::move(f)) {}
  /// The fd this end owns.
  io::fd fd_;
};

/// The read end of a pipe. Owns its fd (O_CLOEXEC).
/// Reads are awaitables giving `result<T>`, errors named "read". Buffers belong to the caller.
/// Thread-safety: one reader at a time.
class pipe_reader : public pipe_end {
 public:
  pipe_reader() noexcept = default;
  /// Takes ownership of `f`, the read end of a pipe (see `make_pipe`).
  explicit pipe_reader(io::fd f) noexcept : pipe_end(std::move(f)) {}

  /// Reads up to `buffer.size()` bytes; gives the count, 0 once every write end is closed.
  [[nodiscard]] auto read(std::span<std::byte> buffer) const noexcept {
    return count_operation("read", [fd = fd_.get(), buffer](io_uring_sqe* sqe) {
      io_uring_prep_read(sqe, fd, buffer.data(), detail::io_length(buffer.size()),
                         static_cast<__u64>(-1));
    });
  }
  /// Reads exactly `buffer.size()` bytes; `errc::end_of_stream` ("read") if the pipe closes
  /// first.
  task<result<void>> read_exact(std::span<std::byte> buffer) const;
  /// Reads until end of stream, appending to `out`. Gives the count read.
  task<result<std::size_t>> read_to_end(std::string& out) const;
};

/// The write end of a pipe. Owns its fd (O_CLOEXEC). Writing after the read end closed gives
/// EPIPE (SIGPIPE is ignored by the runtime). Errors named "write". Thread-safety: one writer at
/// a time (writes up to PIPE_BUF bytes are atomic even with several writers, as with write(2)).
class pipe_writer : public pipe_end {
 public:
  pipe_writer() noexcept = default;
  /// Takes ownership of `f`, the write end of a pipe (see `make_pipe`).
  explicit pipe_writer(io::fd f) noexcept : pipe_end(std::move(f)) {}

  /// Writes up to `buffer.size()` bytes; gives the count written.
  [[nodiscard]] auto write(std::span<const std::byte> buffer) const noexcept {
    return count_operation("write", [fd = fd_.get(), buffer](io_uring_sqe* sqe) {
      io_uring_prep_write(sqe, fd, buffer.data(), detail::io_length(buffer.size()),
                          static_cast<__u64>(-1));
    });
  }
  /// Writes all of `buffer`, resubmitting after short writes.
  task<result<void>> write_all(std::span<const std::byte> buffer) const;
};

/// A new pipe (pipe2 with O_CLOEXEC). Errors: "pipe2" (EMFILE, ENFILE).
result<std::pair<pipe_reader, pipe_writer>> make_pipe();

}  // namespace weft::io
