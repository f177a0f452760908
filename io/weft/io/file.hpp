// weft: files on io_uring.
#pragma once

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>

#include <cstdint>
#include <span>
#include <string>

#include <weft/io/fd.hpp>
#include <weft/io/operation.hpp>
#include <weft/io/result.hpp>
#include <weft/task.hpp>

namespace weft::io {

class file;

namespace detail {

// openat/openat2 through the ring. The path and the open_how live in the operation, in the
// awaiting frame, until the completion.
struct open_spec {
  open_spec(int dir, std::string path, int flags, mode_t mode, std::uint64_t resolve)
      : dir(dir), path(std::move(path)), how{} {
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
    // openat2 refuses a mode unless the call creates a file (O_TMPFILE includes O_DIRECTORY's
    // bit, so it is tested as a whole).
    const bool creates = (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
    how.mode = creates ? mode : 0;
    how.resolve = resolve;
  }
  open_spec(open_spec&&) noexcept = default;

  void prepare(io_uring_sqe* sqe) noexcept { io_uring_prep_openat2(sqe, dir, path.c_str(), &how); }
  result<file> finish(int r);

  int dir;
  std::string path;
  open_how how;
};

struct statx_spec {
  explicit statx_spec(int fd) noexcept : fd(fd) {}
  statx_spec(statx_spec&& o) noexcept : fd(o.fd) {}
  void prepare(io_uring_sqe* sqe) noexcept {
    io_uring_prep_statx(sqe, fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &buffer);
  }
  result<struct statx> finish(int r) {
    throw_if_cancelled(r, "statx");
    if (r < 0) return error_from_result(r, "statx");
    return buffer;
  }
  int fd;
  struct statx buffer {};
};

}  // namespace detail

/// An open file. Owns its fd (O_CLOEXEC). Reads and writes are positional (pread/pwrite through
/// the ring), so one file may serve several tasks at once without a shared offset.
///
/// Every operation is an awaitable giving `result<T>`; errors name the operation ("openat",
/// "read", "write", "fsync", "statx", "close"). Buffers belong to the caller and must outlive
/// the co_await; a cancelled operation waits for its own completion first. Thread-safety:
/// concurrent positional operations are fine, as with pread/pwrite; close only when no
/// operation is in flight.
class file {
 public:
  file() noexcept = default;
  /// Takes ownership of an open fd.
  explicit file(io::fd f) noexcept : fd_(std::move(f)) {}

  /// Opens `path` (relative to the working directory) with open(2) `flags` (O_CLOEXEC is always
  /// added) and `mode` for O_CREAT. Awaitable giving `result<file>`. Errors: "openat" with the
  /// kernel's cause (ENOENT, EACCES, EISDIR...).
  [[nodiscard]] static auto open(std::string path, int flags = O_RDONLY, mode_t mode = 0644) {
    return basic_operation<detail::open_spec>({AT_FDCWD, std::move(path), flags, mode, 0});
  }

  /// Opens `path` relative to the directory `dir` with openat2(2) `resolve` flags, for example
  /// RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS so that neither ".." nor a symlink can leave
  /// `dir` (a server's document root): such a path fails with EXDEV. Errors: "openat".
  [[nodiscard]] static auto open_beneath(const file& dir, std::string path, int flags = O_RDONLY,
                                         mode_t mode = 0644,
                                         std::uint64_t resolve = RESOLVE_BENEATH |
                                                                 RESOLVE_NO_MAGICLINKS) {
    return basic_operation<detail::open_spec>(
        {dir.native_handle(), std::move(path), flags, mode, resolve});
  }

  /// Reads up to `buffer.size()` bytes at `offset`; gives the count (0 at end of file).
  [[nodiscard]] auto read_at(std::span<std::byte> buffer, std::uint64_t offset) const noexcept {
    return count_operation("read", [fd = fd_.get(), buffer, offset](io_uring_sqe* sqe) {
      io_uring_prep_read(sqe, fd, buffer.data(), detail::io_length(buffer.size()), offset);
    });
  }

  /// Writes up to `buffer.size()` bytes at `offset`; gives the count written.
  [[nodiscard]] auto write_at(std::span<const std::byte> buffer,
                              std::uint64_t offset) const noexcept {
    return count_operation("write", [fd = fd_.get(), buffer, offset](io_uring_sqe* sqe) {
      io_uring_prep_write(sqe, fd, buffer.data(), detail::io_length(buffer.size()), offset);
    });
  }

  /// Writes all of `buffer` at `offset`, resubmitting after short writes (a full disk gives
  /// ENOSPC, named "write").
  task<result<void>> write_all_at(std::span<const std::byte> buffer, std::uint64_t offset) const;

  /// Flushes the file's data and metadata to the device (`data_only`: fdatasync).
  [[nodiscard]] auto fsync(bool data_only = false) const noexcept {
    return void_operation("fsync", [fd = fd_.get(), data_only](io_uring_sqe* sqe) {
      io_uring_prep_fsync(sqe, fd, data_only ? IORING_FSYNC_DATASYNC : 0);
    });
  }

  /// The file's size, mode, times... (statx(2) with STATX_BASIC_STATS). Gives
  /// `result<struct statx>`.
  [[nodiscard]] auto stat() const noexcept {
    return basic_operation<detail::statx_spec>(detail::statx_spec(fd_.get()));
  }

  /// Closes through the ring and reports the error; see `fd::close`.
  [[nodiscard]] auto close() noexcept { return fd_.close(); }

  /// The file descriptor, for calls weft does not wrap. Still owned by this object.
  int native_handle() const noexcept { return fd_.get(); }
  /// True while the object owns an open file (false when empty, moved from or closed).
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }

 private:
  io::fd fd_;
};

namespace detail {
inline result<file> open_spec::finish(int r) {
  throw_if_cancelled(r, "openat");
  if (r < 0) return error_from_result(r, "openat");
  return file(io::fd(r));
}
}  // namespace detail

/// Reads a whole file into a string (open, statx for the size, reads until end of file, close).
/// Errors: "openat", "statx", "read"; a file that grows while read is read to its new end.
task<result<std::string>> read_file(std::string path);

/// Writes `data` to `path`, created or truncated with `mode`, then closes it. With `sync`, the
/// data is fsynced before the close. Errors: "openat", "write", "fsync", "close".
task<result<void>> write_file(std::string path, std::span<const std::byte> data, bool sync = false,
                              mode_t mode = 0644);

}  // namespace weft::io
