// weft: the fork server (start method fork): the parent's side of its round trips, and the
// server's own loop, which forks, kills and reaps the workers.
#include "fork_server.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <system_error>
#include <tuple>

#include <weft/errc.hpp>
#include <weft/io/operation.hpp>
#include <weft/pool/process_pool.hpp>
#include <weft/time.hpp>

#include "frame.hpp"
#include "os.hpp"
#include "worker.hpp"

namespace weft::pool::detail {

namespace {

// How long each receive from the fork server waits; see set_fork_server_reply_timeout.
std::atomic<long> fork_server_reply_timeout_ms{10000};

constexpr std::int64_t request_fork = 1;
constexpr std::int64_t request_status = 2;
constexpr std::int64_t request_forget = 3;

[[noreturn]] void server_gone() {
  throw std::runtime_error("weft::pool::process_pool: the fork server is gone");
}

// One reply of the fork server being received: three numbers and at most one fd. The reply
// is what the parent reads with recvmsg, blocking or on the ring.
struct reply_message {
  iovec iov;
  fd_cmsg control;
  msghdr msg;
  explicit reply_message(std::int64_t (&reply)[3]) noexcept
      : iov{reply, sizeof reply}, msg(receive_message(&iov, 1, control)) {}
  reply_message(const reply_message&) = delete;
  reply_message& operator=(const reply_message&) = delete;
  // Takes the fds of a receive that gave `n`; throws when the reply is not whole.
  void received(ssize_t n, std::vector<io::fd>& fds) {
    fds.clear();
    if (n != sizeof(std::int64_t[3]) || !collect_fds(msg, fds)) server_gone();
  }
};

std::pair<pid_t, io::fd> worker_from(const std::int64_t (&reply)[3], std::vector<io::fd>& fds) {
  if (reply[0] < 0) {
    throw std::system_error(static_cast<int>(-reply[0]), std::generic_category(),
                            "weft::pool::process_pool: fork");
  }
  if (fds.size() != 1) {
    throw std::runtime_error("weft::pool::process_pool: fork server sent no socket");
  }
  return {static_cast<pid_t>(reply[0]), std::move(fds[0])};
}

// ---- the server process

// Sends one SOCK_SEQPACKET message with `fds` attached.
bool send_with_fds(int socket, const void* data, std::size_t size, const std::vector<io::fd>& fds) {
  msghdr msg{};
  iovec iov{const_cast<void*>(data), size};
  fd_cmsg control;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  attach_fds(msg, control, fds);
  const ssize_t n = retry_eintr([&] { return ::sendmsg(socket, &msg, MSG_NOSIGNAL); });
  return n == static_cast<ssize_t>(size);
}

// Waits up to `wait_ms` for a child to end, kills it past that, reaps it: {si_code, si_status}.
std::pair<int, int> finish(io::fd& pidfd, int wait_ms) {
  pollfd p{pidfd.get(), POLLIN, 0};
  if (::poll(&p, 1, wait_ms) <= 0) ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, 0, 0);
  siginfo_t info{};
  while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd.get()), &info, WEXITED) !=
             0 &&
         errno == EINTR) {
  }
  return {info.si_code, info.si_status};
}

// Forks a worker: fills `reply` ({pid or -errno, 0, id}) and `give` (the parent's end of the
// worker's socket), and records the worker in `children`.
void fork_one(std::map<pid_t, io::fd>& children, std::int64_t (&reply)[3],
              std::vector<io::fd>& give) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    reply[0] = -errno;
    return;
  }
  io::fd parent_end = above_stdio(io::fd(sv[0]));
  io::fd worker_end = above_stdio(io::fd(sv[1]));
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    close_all_but(worker_end.get());
    worker_loop(worker_end.get());
  }
  io::fd pidfd(pid > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)) : -1);
  if (pid < 0) {
    reply[0] = -errno;
  } else if (!pidfd) {  // cannot track it (EMFILE): undo the fork now
    reply[0] = -errno;
    ::kill(pid, SIGKILL);  // our own child, not reaped yet: the pid is still ours
    ::waitpid(pid, nullptr, 0);
  } else {
    reply[0] = pid;
    children.emplace(pid, std::move(pidfd));
    give.push_back(std::move(parent_end));
  }
}

// The server's requests, until the pool closes the control socket; then reaps every worker.
void serve_requests(int control) {
  std::map<pid_t, io::fd> children;  // worker pid -> its pidfd
  for (;;) {
    std::int64_t request[3];
    const ssize_t n = ::recv(control, request, sizeof request, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n != sizeof request) break;  // the pool closed: reap everyone and go
    if (request[0] == request_fork) {
      std::int64_t reply[3] = {0, 0, request[2]};
      std::vector<io::fd> give;
      fork_one(children, reply, give);
      if (!send_with_fds(control, reply, sizeof reply, give)) break;
    } else if (request[0] == request_status) {
      std::int64_t reply[3] = {CLD_KILLED, SIGKILL, request[2]};
      auto it = children.find(static_cast<pid_t>(request[1]));
      if (it != children.end()) {
        std::tie(reply[0], reply[1]) = finish(it->second, 2000);
        children.erase(it);
      }
      if (::send(control, reply, sizeof reply, MSG_NOSIGNAL) != sizeof reply) break;
    } else if (request[0] == request_forget) {
      auto it = children.find(static_cast<pid_t>(request[1]));
      if (it != children.end()) {
        ::syscall(SYS_pidfd_send_signal, it->second.get(), SIGKILL, 0, 0);
        finish(it->second, 0);
        children.erase(it);
      }
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (auto& [pid, pidfd] : children) {
    (void)pid;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    finish(pidfd, static_cast<int>(std::max<long long>(0, left.count())));
  }
}

// The fork server's main: never returns, never lets an exception out (unwinding would run the
// parent's stack in this process).
[[noreturn]] void serve(int control) noexcept {
  try {
    serve_requests(control);
    std::_Exit(0);
  } catch (...) {
  }
  std::_Exit(70);
}

}  // namespace

// ---- the parent's side

fork_server::fork_server() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    throw_errno("weft::pool::process_pool: socketpair");
  }
  io::fd ours = above_stdio(io::fd(sv[0]));
  io::fd theirs = above_stdio(io::fd(sv[1]));
  std::fflush(nullptr);  // or the fork server and every worker would print it again
  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("weft::pool::process_pool: fork");
  if (pid == 0) {
    ours.release();  // closed below with everything else (it is above 2)
    close_all_but(theirs.get());
    serve(theirs.get());
  }
  auto c = io::child::adopt(pid);
  if (!c) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw std::system_error(c.error(), "weft::pool::process_pool: pidfd_open");
  }
  process_ = std::move(*c);
  // A fork server that stops answering (stopped, or stuck reaping a worker in uninterruptible
  // sleep) must not hang the executor thread that asked: give up after 10 s.
  const auto ms = fork_server_reply_timeout_ms.load(std::memory_order_relaxed);
  const timeval limit{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(ours.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  ::setsockopt(ours.get(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  control_ = std::move(ours);
}

std::pair<pid_t, io::fd> fork_server::fork_worker() {
  std::int64_t reply[3] = {0, 0, 0};
  std::vector<io::fd> fds;
  round_trip(request_fork, 0, reply, fds);
  return worker_from(reply, fds);
}

task<std::pair<pid_t, io::fd>> fork_server::fork_worker_async() {
  std::int64_t reply[3] = {0, 0, 0};
  std::vector<io::fd> fds;
  co_await round_trip_async(request_fork, 0, reply, fds);
  co_return worker_from(reply, fds);
}

task<io::exit_status> fork_server::status_of(pid_t pid) {
  std::int64_t reply[3] = {0, 0, 0};
  std::vector<io::fd> fds;
  co_await round_trip_async(request_status, pid, reply, fds);
  io::exit_status s;
  if (reply[0] == CLD_EXITED) {
    s.code = static_cast<int>(reply[1]);
  } else {
    s.signal = static_cast<int>(reply[1]);
    s.core_dumped = reply[0] == CLD_DUMPED;
  }
  co_return s;
}

void fork_server::forget(pid_t pid) noexcept {
  const std::int64_t request[3] = {request_forget, pid, 0};
  (void)::send(control_.get(), request, sizeof request, MSG_NOSIGNAL | MSG_DONTWAIT);
}

// A late reply (to a request that gave up): its fds close with it, and a worker forked that
// late, which nobody will use, is forgotten. False when `reply` answers request `id`.
bool fork_server::drop_if_late(const reply_t& reply, std::int64_t id) noexcept {
  if (reply[2] == id) return false;
  if (reply[0] > 0 && reply[2] != 0) forget(static_cast<pid_t>(reply[0]));
  return true;
}

// On the ring: sends request {kind, arg, id} and receives the reply that repeats `id`, each
// receive bounded by the reply timeout (errc::timed_out). One round trip at a time.
task<void> fork_server::round_trip_async(std::int64_t kind, std::int64_t arg, reply_t& reply,
                                         std::vector<io::fd>& fds) {
  auto guard = co_await ring_mutex_.scoped_lock();
  const std::int64_t id = last_id_.fetch_add(1, std::memory_order_relaxed) + 1;
  const std::int64_t request[3] = {kind, arg, id};
  const int socket = control_.get();
  constexpr const char* what = "weft::pool::process_pool: fork server";
  auto sent = co_await io::count_operation(what, [&](io_uring_sqe* sqe) {
    io_uring_prep_send(sqe, socket, request, sizeof request, MSG_NOSIGNAL);
  });
  if (!sent || *sent != sizeof request) server_gone();
  const std::chrono::milliseconds limit(
      fork_server_reply_timeout_ms.load(std::memory_order_relaxed));
  do {
    reply_message in(reply);
    auto n = co_await with_timeout(limit, io::count_operation(what, [&](io_uring_sqe* sqe) {
                                     io_uring_prep_recvmsg(sqe, socket, &in.msg, MSG_CMSG_CLOEXEC);
                                   }));
    in.received(n ? *n : -1, fds);
  } while (drop_if_late(reply, id));
}

// The blocking round trip of the constructor (no ring, no other user of the socket yet).
void fork_server::round_trip(std::int64_t kind, std::int64_t arg, reply_t& reply,
                             std::vector<io::fd>& fds) {
  const std::int64_t id = last_id_.fetch_add(1, std::memory_order_relaxed) + 1;
  const std::int64_t request[3] = {kind, arg, id};
  if (::send(control_.get(), request, sizeof request, MSG_NOSIGNAL) != sizeof request) {
    throw_errno("weft::pool::process_pool: fork server");
  }
  do {
    reply_message in(reply);
    const ssize_t n =
        retry_eintr([&] { return ::recvmsg(control_.get(), &in.msg, MSG_CMSG_CLOEXEC); });
    if (n < 0 && errno == EAGAIN) {
      throw std::system_error(make_error_code(errc::timed_out),
                              "weft::pool::process_pool: the fork server did not answer in time");
    }
    in.received(n, fds);
  } while (drop_if_late(reply, id));
}

void set_fork_server_reply_timeout(std::chrono::milliseconds limit) noexcept {
  fork_server_reply_timeout_ms.store(static_cast<long>(limit.count()), std::memory_order_relaxed);
}

}  // namespace weft::pool::detail
