// weft: the pool itself: its workers' slots, a job's exchange on the ring, restarts, shutdown.
#include <weft/pool/process_pool.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <weft/errc.hpp>
#include <weft/io/operation.hpp>
#include <weft/io/ring.hpp>
#include <weft/time.hpp>

#include "fork_server.hpp"
#include "frame.hpp"
#include "os.hpp"
#include "worker.hpp"

namespace weft::pool {

using detail::frame_kind;

struct process_pool::slot {
  pid_t pid = -1;
  io::fd pidfd;  // fork: a pidfd of the fork server's child, to signal it safely
  std::optional<io::child> process;  // spawn: the worker itself; fork: the fork server's child
  io::fd socket;
};

process_pool::process_pool(unsigned workers, start_method method) : method_(method) {
  detail::refuse_unserved_pool_worker();
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  if (method == start_method::fork) {
    const unsigned threads = detail::thread_count();
    const unsigned rings = io::ring::live_count();
    if (threads != 1 || rings != 0) {
      throw_error(
          errc::fork_unsafe,
          "weft::pool::process_pool: start method fork needs a process with one thread and no "
          "io_uring ring, and this one has " +
              std::to_string(threads) + " threads and " + std::to_string(rings) +
              " rings; create the pool before weft::run and before starting threads, or "
              "use start_method::spawn");
    }
    fork_server_ = std::make_unique<detail::fork_server>();
  }
  slots_.reserve(workers);
  try {
    for (unsigned i = 0; i < workers; ++i) {
      slots_.push_back(std::make_unique<slot>());
      start_worker(*slots_.back());
      idle_.push_back(slots_.back().get());
    }
  } catch (...) {
    close_all_sync();
    throw;
  }
  idle_count_.release(workers);
}

process_pool::~process_pool() {
  if (!shut_down_) close_all_sync();
}

void process_pool::start_worker(slot& s) {
  pid_t started = -1;
  if (method_ == start_method::fork) {
    auto [pid, socket] = fork_server_->fork_worker();
    adopt_forked(s, pid, std::move(socket));
    return;
  } else {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      detail::throw_errno("weft::pool::process_pool: socketpair");
    }
    io::fd ours(sv[0]), theirs(sv[1]);
    // The worker is this very program, re-executed: /proc/self/exe works even when the file
    // was replaced or deleted since.
    io::command cmd("/proc/self/exe");
    cmd.env(detail::worker_env, "3").pass_fd(theirs.get());
    auto c = cmd.spawn();
    if (!c) {
      throw std::system_error(c.error(),
                              "weft::pool::process_pool: starting a worker: " + c.message());
    }
    started = c->id();
    s.process = std::move(*c);
    s.socket = std::move(ours);
  }
  std::lock_guard lock(mutex_);  // worker_pids() reads s.pid from any thread
  s.pid = started;
  ++stats_.workers_started;
}

task<void> process_pool::start_worker_async(slot& s) {
  if (method_ != start_method::fork) {
    start_worker(s);  // posix_spawn: no waiting on another process
    co_return;
  }
  // The fork server's round trip on the ring: it may wait up to the reply timeout.
  auto [pid, socket] = co_await fork_server_->fork_worker_async();
  adopt_forked(s, pid, std::move(socket));
}

void process_pool::adopt_forked(slot& s, pid_t pid, io::fd socket) {
  s.socket = std::move(socket);
  s.process.reset();
  // Not our child, but pinned until the fork server reaps it: a pidfd taken now keeps
  // pointing at this worker even if the fork server dies and the pid is recycled.
  s.pidfd = io::fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  std::lock_guard lock(mutex_);  // worker_pids() reads s.pid from any thread
  s.pid = pid;
  ++stats_.workers_started;
}

void process_pool::close_all_sync() noexcept {
  for (auto& s : slots_) s->socket.reset();  // each worker reads end of file and exits
  // One deadline for all of them: they exit together once their sockets are closed.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  auto reap_gently = [&](io::child& c, std::chrono::milliseconds extra) {
    if (c.pidfd() < 0 || c.reaped()) return;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline + extra - std::chrono::steady_clock::now());
    pollfd p{c.pidfd(), POLLIN, 0};
    while (::poll(&p, 1, static_cast<int>(std::max<long long>(0, left.count()))) < 0 &&
           errno == EINTR) {
    }
    // The destructor of `c` (or the move below) kills what is still alive and reaps it.
    io::child gone = std::move(c);
  };
  for (auto& s : slots_) {
    if (s->process) reap_gently(*s->process, std::chrono::milliseconds(0));
  }
  if (fork_server_) {
    fork_server_->close();
    reap_gently(fork_server_->process(), std::chrono::milliseconds(2000));
  }
  std::lock_guard lock(mutex_);
  shut_down_ = true;
}

std::vector<pid_t> process_pool::worker_pids() const {
  std::lock_guard lock(mutex_);
  std::vector<pid_t> pids;
  for (const auto& s : slots_) pids.push_back(s->pid);
  return pids;
}

process_pool_stats process_pool::stats() const noexcept {
  std::lock_guard lock(mutex_);
  return stats_;
}

namespace {

// One exchange with a worker on the ring: the job out, the reply in.
struct exchange_result {
  bool sent = false;     // the whole job reached the worker's socket
  bool replied = false;  // a whole, well-formed reply came back
  detail::frame_reader reply;
};

// A raw ring operation (the CQE's result) that throws errc::cancelled when the job's task was
// stopped: a stopped exchange must not pass for a worker that died (run() replaces the worker).
template <class Prepare>
struct cancellable_spec {
  Prepare prepare_fn;
  void prepare(io_uring_sqe* sqe) { prepare_fn(sqe); }
  int finish(int result) const {
    io::detail::throw_if_cancelled(result, "weft::pool::process_pool: job cancelled");
    return result;
  }
};

template <class Prepare>
auto raw(Prepare p) {
  return io::basic_operation<cancellable_spec<Prepare>>(cancellable_spec<Prepare>{std::move(p)});
}

// The job out, the reply in, on the ring; the frames are the codec's, as in the worker.
task<void> exchange(int socket, detail::frame_kind kind, const serial::writer& job,
                    exchange_result& out) {
  detail::frame_writer frame(kind, job.bytes(), job.fds());
  int n = co_await raw(
      [&](io_uring_sqe* sqe) { io_uring_prep_sendmsg(sqe, socket, frame.first(), MSG_NOSIGNAL); });
  if (n < 0) co_return;
  // The fds went with the first bytes; what a short send left goes as plain bytes.
  for (auto rest = frame.sent(static_cast<std::size_t>(n)); !rest.empty();
       rest = frame.sent(static_cast<std::size_t>(n))) {
    n = co_await raw([&](io_uring_sqe* sqe) {
      io_uring_prep_send(sqe, socket, rest.data(), rest.size(), MSG_NOSIGNAL);
    });
    if (n <= 0) co_return;
  }
  out.sent = true;

  // The header and the start of the payload in one receive (only this job is in flight on
  // the socket, so nothing else can come with them). A malformed reply: a broken worker.
  detail::frame_reader& in = out.reply;
  n = co_await raw(
      [&](io_uring_sqe* sqe) { io_uring_prep_recvmsg(sqe, socket, in.first(), MSG_CMSG_CLOEXEC); });
  if (n <= 0) co_return;
  auto status = in.received(static_cast<std::size_t>(n));
  while (status == detail::frame_reader::status::more) {
    const std::span<char> want = in.want();
    n = co_await raw([&](io_uring_sqe* sqe) {
      io_uring_prep_recv(sqe, socket, want.data(), want.size(), MSG_WAITALL);
    });
    if (n <= 0) co_return;
    status = in.received(static_cast<std::size_t>(n));
  }
  out.replied = status == detail::frame_reader::status::done;
}

}  // namespace

task<std::string> process_pool::reap_dead(slot& s) {
  s.socket.reset();
  if (method_ == start_method::fork) {
    if (s.pid <= 0) co_return "(it had not started)";
    co_return detail::describe(co_await fork_server_->status_of(s.pid));
  }
  if (!s.process) co_return "(it had not started)";
  io::child& c = *s.process;
  bool timed_out = false;
  io::result<io::exit_status> status = io::exit_status{};
  try {
    // Its socket closed, so it is exiting; one that closed fd 3 itself and lives on is killed.
    status = co_await with_timeout(std::chrono::seconds(2), c.wait());
  } catch (const std::system_error& e) {
    if (e.code() != errc::timed_out) throw;
    timed_out = true;
  }
  if (timed_out) {
    (void)c.kill(SIGKILL);
    status = co_await c.wait();
  }
  if (!status) co_return "in an unknown way (" + status.message() + ")";
  co_return detail::describe(*status);
}

void process_pool::replace_now(slot& s) noexcept {
  s.socket.reset();
  if (method_ == start_method::fork) {
    // No round trip here (this runs on an executor thread): the fork server kills and reaps the
    // worker on its own, and the slot's next job starts its replacement.
    if (s.pid > 0) {
      if (s.pidfd) ::syscall(SYS_pidfd_send_signal, s.pidfd.get(), SIGKILL, nullptr, 0);
      fork_server_->forget(s.pid);
    }
    s.pidfd.reset();
    std::lock_guard lock(mutex_);
    s.pid = -1;
    return;
  }
  s.process.reset();  // the destructor kills and reaps
  try {
    start_worker(s);
  } catch (...) {
    std::lock_guard lock(mutex_);
    s.pid = -1;  // a later job on this slot fails as a dead worker and tries again
  }
}

task<process_pool::slot*> process_pool::take_slot() {
  {
    std::lock_guard lock(mutex_);
    if (closed_) throw_error(errc::pool_closed, "weft::pool::process_pool::submit");
  }
  co_await idle_count_.acquire();
  slot* s = nullptr;
  {
    std::lock_guard lock(mutex_);
    // A job that passed the check above just as shutdown() began waits behind it and gets a
    // permit back only once the workers are gone: it must not start a new one.
    if (!shut_down_) {
      s = idle_.back();
      idle_.pop_back();
    }
  }
  if (s == nullptr) {
    idle_count_.release();
    throw_error(errc::pool_closed, "weft::pool::process_pool::submit");
  }
  co_return s;
}

void process_pool::give_back(slot* s) noexcept {
  {
    std::lock_guard lock(mutex_);
    idle_.push_back(s);
  }
  idle_count_.release();
}

task<void> process_pool::restart_worker(slot& s) {
  try {
    co_await start_worker_async(s);
  } catch (const std::system_error& e) {
    if (e.code() == errc::cancelled) throw;
    throw std::system_error(
        make_error_code(errc::worker_died),
        std::string("weft::pool::process_pool: cannot restart a worker: ") + e.what());
  }
}

task<void> process_pool::fail_lost_job(slot& s, pid_t pid, const std::string& how,
                                       const std::string& name) {
  {
    std::lock_guard lock(mutex_);
    ++stats_.jobs_lost;
  }
  try {
    co_await start_worker_async(s);
  } catch (...) {
    std::lock_guard lock(mutex_);
    s.pid = -1;  // the next job on this slot tries again
  }
  throw_error(errc::worker_died, "weft::pool::process_pool: worker " + std::to_string(pid) +
                                     " running '" + name + "' " + how);
}

task<detail::process_reply> process_pool::run(job j) {
  if (j.message.fds().size() > detail::max_fds_per_frame) {
    throw std::invalid_argument(
        "weft::pool::process_pool: a job may carry at most 253 shared buffers");
  }
  slot* const s = co_await take_slot();
  // The slot goes back to the idle list however this coroutine ends.
  struct lease {
    process_pool& pool;
    slot* s;
    ~lease() { pool.give_back(s); }
  } held{*this, s};

  // A worker found dead before it took the job (killed while idle) is replaced and the job
  // goes to its replacement: it never ran. One that dies after taking it fails the job.
  for (int attempt = 0;; ++attempt) {
    if (!s->socket) co_await restart_worker(*s);
    exchange_result ex;
    std::exception_ptr stopped;
    try {
      co_await exchange(s->socket.get(), j.batch ? frame_kind::batch : frame_kind::job, j.message,
                        ex);
    } catch (...) {
      stopped = std::current_exception();
    }
    if (stopped) {
      // Cancelled mid-exchange: the worker may be running the job and cannot be interrupted.
      replace_now(*s);
      std::rethrow_exception(stopped);
    }
    if (ex.replied) {
      {
        std::lock_guard lock(mutex_);
        ++stats_.jobs_completed;
      }
      if (ex.reply.header.kind == frame_kind::error) {
        throw_error(errc::job_failed, "weft::pool::process_pool: '" + *j.name +
                                          "' failed in worker " + std::to_string(s->pid) + ": " +
                                          ex.reply.payload);
      }
      co_return detail::process_reply{std::move(ex.reply.payload), std::move(ex.reply.fds)};
    }
    const pid_t pid = s->pid;
    const std::string how = co_await reap_dead(*s);
    if (!ex.sent && attempt == 0) continue;         // retry once on a fresh worker
    co_await fail_lost_job(*s, pid, how, *j.name);  // throws
  }
}

task<void> process_pool::shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (shut_down_ || closing_) co_return;
    closed_ = true;
    closing_ = true;
  }
  std::size_t held = 0;  // permits taken: workers that are ours to close
  std::exception_ptr stopped;
  try {
    for (; held < slots_.size(); ++held) co_await idle_count_.acquire();
    for (auto& s : slots_) s->socket.reset();
    for (auto& s : slots_) {
      if (s->process && !s->process->reaped()) (void)co_await reap_dead(*s);
    }
    if (fork_server_) {
      fork_server_->close();
      io::child& z = fork_server_->process();
      bool timed_out = false;
      try {
        (void)co_await with_timeout(std::chrono::seconds(3), z.wait());
      } catch (const std::system_error& e) {
        if (e.code() != errc::timed_out) throw;
        timed_out = true;
      }
      if (timed_out) {
        (void)z.kill(SIGKILL);
        (void)co_await z.wait();
      }
    }
  } catch (...) {
    stopped = std::current_exception();
  }
  {
    std::lock_guard lock(mutex_);
    closing_ = false;
    if (!stopped) shut_down_ = true;
  }
  // Cancelled half-way: the permits go back (a job queued behind us must not wait forever),
  // the pool stays closed to new jobs, and a later shutdown() (or the destructor) finishes.
  idle_count_.release(held);
  if (stopped) std::rethrow_exception(stopped);
}

}  // namespace weft::pool
