// weft: a pool worker, a plain synchronous loop: a job in, the function run, its result out.
#include "worker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include <weft/pool/process_pool.hpp>

#include "frame.hpp"
#include "os.hpp"
#include "registry.hpp"

namespace weft::pool {

namespace detail {
namespace {

// A worker started by spawn whose main() never called serve_if_pool_worker() exits with this.
constexpr int unserved_worker_exit = 121;

// Sends one frame, again after a signal. False once the pool is gone.
bool send_frame_sync(int fd, frame_kind kind, const serial::writer& message) {
  frame_writer out(kind, message.bytes(), message.fds());
  ssize_t n = retry_eintr([&] { return ::sendmsg(fd, out.first(), MSG_NOSIGNAL); });
  if (n < 0) return false;
  // The fds went with the first byte; the rest of a long frame follows as plain bytes.
  for (auto rest = out.sent(static_cast<std::size_t>(n)); !rest.empty();
       rest = out.sent(static_cast<std::size_t>(n))) {
    n = retry_eintr([&] { return ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL); });
    if (n <= 0) return false;
  }
  return true;
}

// Receives one whole frame into `in`. False at end of stream, on an error (the pool is gone)
// or for a malformed frame.
bool recv_frame_sync(int fd, frame_reader& in) {
  ssize_t n = retry_eintr([&] { return ::recvmsg(fd, in.first(), MSG_CMSG_CLOEXEC); });
  if (n <= 0) return false;
  frame_reader::status s = in.received(static_cast<std::size_t>(n));
  while (s == frame_reader::status::more) {
    const std::span<char> want = in.want();
    n = retry_eintr([&] { return ::recv(fd, want.data(), want.size(), MSG_WAITALL); });
    if (n <= 0) return false;
    s = in.received(static_cast<std::size_t>(n));
  }
  return s == frame_reader::status::done;
}

// Runs the job (or the batch) of `in`; gives the reply's kind and fills `result`.
frame_kind run_job(frame_reader& in, serial::writer& result) {
  try {
    serial::reader args(std::as_bytes(std::span(in.payload)), &in.fds);
    const std::string name = serial::take<std::string>(args);
    const registered_function* f = find_function(name);
    if (f == nullptr) {
      throw std::runtime_error("function '" + name + "' is not registered in the worker");
    }
    const std::uint64_t calls =
        in.header.kind == frame_kind::batch ? serial::take<std::uint64_t>(args) : 1;
    for (std::uint64_t i = 0; i < calls; ++i) f->invoke(f->fn, args, result);
    if (args.remaining() != 0) {
      throw serial::format_error("weft::pool::serial: trailing bytes in a job");
    }
    // The fds go in one control message, whose buffer holds SCM_MAX_FD of them.
    if (result.fds().size() > max_fds_per_frame) {
      throw std::length_error("the result carries " + std::to_string(result.fds().size()) +
                              " shared buffers; at most 253 fit in one reply");
    }
    return frame_kind::ok;
  } catch (const std::exception& e) {
    result = serial::writer();
    result.bytes() = e.what();
  } catch (...) {
    result = serial::writer();
    result.bytes() = "an exception not derived from std::exception";
  }
  return frame_kind::error;
}

// Runs jobs until the pool closes the socket, then exits the process.
[[noreturn]] void serve_jobs(int socket) {
  for (;;) {
    frame_reader in;
    if (!recv_frame_sync(socket, in) ||
        (in.header.kind != frame_kind::job && in.header.kind != frame_kind::batch)) {
      std::fflush(nullptr);  // what the functions printed (stdout may be a pipe, not a tty)
      std::_Exit(0);         // the pool closed this worker (or is gone): exit without static dtors
    }
    serial::writer result;
    const frame_kind kind = run_job(in, result);
    in.fds.clear();
    // What the function printed goes out before its result, as it would in the parent.
    std::fflush(nullptr);
    if (!send_frame_sync(socket, kind, result)) std::_Exit(0);
  }
}

// Ends the worker as soon as the pool's end of `socket` is closed, even in the middle of a job:
// when the parent dies (SIGKILL, or SIGINT/SIGTERM at their default action) nothing will read
// the job's result, and a spawned worker, reparented to init, would otherwise compute on for as
// long as its job lasts. The pool closes a worker's socket while a job runs only when it is
// done with that worker (a cancelled exchange, the pool's destruction), and kills it then
// anyway. A thread rather than PR_SET_PDEATHSIG: that signal follows the *thread* that started
// the worker, and the pool starts replacements from whichever executor thread runs the job.
// poll asks for POLLRDHUP only (hang-ups always report), so a next job's bytes do not wake it.
void exit_when_pool_hangs_up(int socket) noexcept {
  try {
    std::thread([socket] {
      pollfd p{socket, POLLRDHUP, 0};
      for (;;) {
        const int n = ::poll(&p, 1, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0) break;
      }
      std::_Exit(0);  // no flush: the main thread may hold stdout's lock, and nobody reads it
    }).detach();
  } catch (...) {  // no thread (EAGAIN): the job ends first, then end of file ends the worker
  }
}

}  // namespace

[[noreturn]] void worker_loop(int socket) noexcept {
  exit_when_pool_hangs_up(socket);
  try {
    serve_jobs(socket);
  } catch (...) {
  }
  std::fflush(nullptr);
  std::_Exit(70);  // EX_SOFTWARE: out of memory decoding a frame, say
}

std::string describe(const io::exit_status& s) {
  std::string text = s.describe();
  if (s.exited() && s.code == unserved_worker_exit) {
    text += " (its main() did not call weft::pool::serve_if_pool_worker() first)";
  }
  return text;
}

void refuse_unserved_pool_worker() {
  if (std::getenv(worker_env) != nullptr) {
    std::fprintf(stderr,
                 "weft: this process was started as a process_pool worker, but its main() did "
                 "not call weft::pool::serve_if_pool_worker() first; exiting\n");
    std::_Exit(unserved_worker_exit);
  }
}

}  // namespace detail

void serve_if_pool_worker() {
  const char* value = std::getenv(detail::worker_env);
  if (value == nullptr) return;
  const int socket = std::atoi(value);
  ::unsetenv(detail::worker_env);
  // The socket arrived without FD_CLOEXEC (pass_fd); a program the job runs must not inherit
  // it, or the parent would not see end of file when this worker dies.
  ::fcntl(socket, F_SETFD, FD_CLOEXEC);
  detail::worker_loop(socket);
}

}  // namespace weft::pool
