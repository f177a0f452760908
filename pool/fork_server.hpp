// weft (private to pool/): the fork server of a pool with start method fork.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include <weft/io/fd.hpp>
#include <weft/io/process.hpp>
#include <weft/mutex.hpp>
#include <weft/task.hpp>

namespace weft::pool::detail {

/// A process forked while the parent was still single-threaded and ring-free; it forks the
/// workers (all of them, so that a replacement is as safe as the first) and reaps them.
/// Requests over a SOCK_SEQPACKET pair, one message each way, each carrying the request's id,
/// which its reply repeats:
///   fork:   {1, 0, id}   -> {pid or -errno, 0, id} with the parent's end of the worker's socket
///   status: {2, pid, id} -> {si_code, si_status, id} once the worker has ended (killed after 2 s)
///   forget: {3, pid, 0}  -> no reply; the worker is killed and reaped
/// A request whose reply did not come in time fails; its reply, when it comes, has an older id
/// and is dropped by the next request (with the socket it carries: a worker forked that late
/// reads end of file and exits, and is then forgotten), never taken for that request's answer.
/// Each receive gives up after the reply timeout (`set_fork_server_reply_timeout`).
/// Thread-safety: the round trips on the ring take turns (a mutex); the blocking one is for
/// the constructor of the pool only.
class fork_server {
 public:
  /// Forks the server. Throws std::system_error ("socketpair", "fork", "pidfd_open").
  fork_server();

  /// A new worker: its pid and the parent's end of its socket, by a blocking round trip: for
  /// the constructor only (start method fork runs before any ring or executor thread exists).
  /// Throws std::system_error.
  std::pair<pid_t, io::fd> fork_worker();

  /// `fork_worker` on the ring: for the pool's tasks, whose executor thread must not block.
  task<std::pair<pid_t, io::fd>> fork_worker_async();

  /// How worker `pid` ended (waits for it: its socket is closed, so it is on its way out), on
  /// the ring. Throws std::system_error (`errc::timed_out` when the reply is late).
  task<io::exit_status> status_of(pid_t pid);

  /// Closes the control socket: the server reaps its workers (killing any still alive after a
  /// second) and exits.
  void close() noexcept { control_.reset(); }
  /// The server process.
  io::child& process() noexcept { return process_; }

  /// Has worker `pid` killed and reaped, without waiting for an answer (a send to a socket
  /// with room: it does not block an executor thread). Errors are ignored: a fork server that
  /// is gone has nothing left to reap.
  void forget(pid_t pid) noexcept;

 private:
  using reply_t = std::int64_t[3];

  bool drop_if_late(const reply_t& reply, std::int64_t id) noexcept;
  task<void> round_trip_async(std::int64_t kind, std::int64_t arg, reply_t& reply,
                              std::vector<io::fd>& fds);
  void round_trip(std::int64_t kind, std::int64_t arg, reply_t& reply, std::vector<io::fd>& fds);

  io::fd control_;
  io::child process_;
  weft::mutex ring_mutex_;                // one round trip on the ring at a time
  std::atomic<std::int64_t> last_id_{0};  // the last request id given
};

}  // namespace weft::pool::detail
