// weft (private to pool/): the system calls the pool's files share.
#pragma once

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include <weft/io/fd.hpp>

namespace weft::pool::detail {

/// Throws std::system_error for errno, with `what` as its context.
[[noreturn]] inline void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

/// Calls `call` (a system call) again while it fails with EINTR; gives its last result.
template <class Call>
auto retry_eintr(Call&& call) {
  decltype(call()) n;
  do {
    n = call();
  } while (n < 0 && errno == EINTR);
  return n;
}

/// Moves `f` above 0, 1, 2 (a process started with stdin closed gets fd 0 from socketpair), so
/// that closing "everything but the standard streams" in a child really closes it.
inline io::fd above_stdio(io::fd f) {
  if (!f || f.get() > 2) return f;
  io::fd moved(::fcntl(f.get(), F_DUPFD_CLOEXEC, 3));
  if (!moved) throw_errno("weft::pool::process_pool: fcntl");
  return moved;
}

/// Closes every fd of a freshly forked process but 0, 1, 2 and `keep`.
inline void close_all_but(int keep) {
  if (keep > 3) ::syscall(SYS_close_range, 3u, static_cast<unsigned>(keep - 1), 0u);
  ::syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0u, 0u);
}

/// The threads of this process now (a fork copies only the calling one).
inline unsigned thread_count() {
  std::error_code ec;
  unsigned n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

}  // namespace weft::pool::detail
