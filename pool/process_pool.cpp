#include <weft/pool/process_pool.hpp>

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>

#include <weft/errc.hpp>
#include <weft/io/operation.hpp>
#include <weft/io/ring.hpp>
#include <weft/mutex.hpp>
#include <weft/time.hpp>

namespace weft::pool {

// ---- shared_buffer

namespace {

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

std::byte* map_shared(int fd, std::size_t size) {
  if (size == 0) return nullptr;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw_errno("weft::pool::shared_buffer: mmap");
  return static_cast<std::byte*>(p);
}

}  // namespace

shared_buffer shared_buffer::create(std::size_t size) {
  io::fd fd(::memfd_create("weft-shared-buffer", MFD_CLOEXEC));
  if (!fd) throw_errno("weft::pool::shared_buffer: memfd_create");
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    throw_errno("weft::pool::shared_buffer: ftruncate");
  }
  return adopt(std::move(fd), size);
}

shared_buffer shared_buffer::adopt(io::fd memfd, std::size_t size) {
  struct stat st {};
  if (::fstat(memfd.get(), &st) != 0) throw_errno("weft::pool::shared_buffer: fstat");
  if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) < size) {
    throw std::system_error(
        EINVAL, std::generic_category(),
        "weft::pool::shared_buffer: fstat: the memory is smaller than its size");
  }
  shared_buffer b;
  b.data_ = map_shared(memfd.get(), size);
  b.size_ = size;
  b.fd_ = std::move(memfd);
  return b;
}

shared_buffer& shared_buffer::operator=(shared_buffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    fd_ = std::move(other.fd_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

shared_buffer::~shared_buffer() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

shared_buffer shared_buffer::share() const {
  if (!fd_) return {};
  io::fd copy(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 3));
  if (!copy) throw_errno("weft::pool::shared_buffer: dup");
  return adopt(std::move(copy), size_);
}

std::uint32_t serial::writer::put_fd(int fd) {
  io::fd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!copy) throw_errno("weft::pool::serial: dup");
  fds_.push_back(std::move(copy));
  return static_cast<std::uint32_t>(fds_.size() - 1);
}

// ---- the registry of functions

namespace detail {
namespace {

struct registered_function {
  void (*fn)() = nullptr;
  process_invoker invoke = nullptr;
  bool duplicate = false;  // two functions share this name
};

struct function_registry {
  std::mutex mutex;
  std::unordered_map<std::string, registered_function> by_name;
  std::unordered_map<std::uintptr_t, std::string> by_address;
};

function_registry& registry() {
  static function_registry instance;  // initialized on first use: safe from static initializers
  return instance;
}

const registered_function* find_function(const std::string& name) {
  function_registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.by_name.find(name);
  return it == r.by_name.end() ? nullptr : &it->second;
}

}  // namespace

bool register_process_function(const char* name, void (*fn)(), process_invoker invoke) noexcept {
  try {
    function_registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto [it, inserted] = r.by_name.try_emplace(name, registered_function{fn, invoke, false});
    if (!inserted && it->second.fn != fn) it->second.duplicate = true;
    r.by_address.emplace(reinterpret_cast<std::uintptr_t>(fn), name);
    return true;
  } catch (...) {
    return false;  // out of memory at static initialization: submit reports it as unregistered
  }
}

const std::string& process_function_name(void (*fn)()) {
  function_registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.by_address.find(reinterpret_cast<std::uintptr_t>(fn));
  if (it == r.by_address.end()) {
    throw std::invalid_argument(
        "weft::pool::process_pool: the function was not registered; add WEFT_PROCESS_FUNCTION(fn); "
        "at "
        "namespace scope");
  }
  if (r.by_name.at(it->second).duplicate) {
    throw std::invalid_argument("weft::pool::process_pool: two functions are registered as '" +
                                it->second + "'; give one of them another name");
  }
  return it->second;
}

}  // namespace detail

// ---- framing: the messages between the parent and a worker

namespace {

constexpr std::uint32_t frame_magic = 0x74666577;  // "weft"
constexpr std::size_t max_fds_per_frame = 253;     // SCM_MAX_FD
constexpr const char* worker_env = "WEFT_POOL_WORKER";
// A worker started by spawn whose main() never called serve_if_pool_worker() exits with this.
constexpr int unserved_worker_exit = 121;

// A batch (map's chunks) is a job whose payload is the name, a count, then count argument
// lists; the reply is count results, one after the other.
enum class frame_kind : std::uint32_t { job = 1, ok = 2, error = 3, batch = 4 };

// The first bytes of a payload arrive with the header in one receive: a small job or result
// (the common case) costs one system call, not two.
constexpr std::size_t inline_payload = 4096;

struct frame_header {
  std::uint32_t magic = frame_magic;
  frame_kind kind = frame_kind::job;
  std::uint64_t size = 0;
  std::uint32_t fd_count = 0;
  std::uint32_t reserved = 0;
};

// Control-message room for the most fds a frame may carry.
struct fd_cmsg {
  alignas(cmsghdr) char buffer[CMSG_SPACE(sizeof(int) * max_fds_per_frame)];
};

// A message to receive into `iov` (`count` pieces), with room in `control` for the most fds a
// frame may carry. `iov` and `control` must outlive the receive.
msghdr receive_message(iovec* iov, std::size_t count, fd_cmsg& control) noexcept {
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = count;
  msg.msg_control = control.buffer;
  msg.msg_controllen = sizeof control.buffer;
  return msg;
}

// Attaches `fds` to `msg` as one SCM_RIGHTS control message in `control` (nothing when empty).
void attach_fds(msghdr& msg, fd_cmsg& control, const std::vector<io::fd>& fds) {
  if (fds.empty()) return;
  msg.msg_control = control.buffer;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  auto* out = reinterpret_cast<int*>(CMSG_DATA(c));
  for (std::size_t i = 0; i < fds.size(); ++i) out[i] = fds[i].get();
}

// Fills `msg` to send `header` and `payload` with `fds` attached to the first byte.
void prepare_send(msghdr& msg, iovec (&iov)[2], fd_cmsg& control, frame_header& header,
                  const std::string& payload, const std::vector<io::fd>& fds) {
  header.size = payload.size();
  header.fd_count = static_cast<std::uint32_t>(fds.size());
  iov[0] = {&header, sizeof header};
  iov[1] = {const_cast<char*>(payload.data()), payload.size()};
  msg = msghdr{};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  attach_fds(msg, control, fds);
}

// Sends one SOCK_SEQPACKET message with `fds` attached (the fork server's replies).
bool send_with_fds(int socket, const void* data, std::size_t size, const std::vector<io::fd>& fds) {
  msghdr msg{};
  iovec iov{const_cast<void*>(data), size};
  fd_cmsg control;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  attach_fds(msg, control, fds);
  ssize_t n;
  do {
    n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(size);
}

// Takes the fds a received header carried. False when the control data was cut short.
bool collect_fds(msghdr& msg, std::vector<io::fd>& fds) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const auto* in = reinterpret_cast<const int*>(CMSG_DATA(c));
      for (std::size_t i = 0; i < n; ++i) fds.emplace_back(in[i]);
    }
  }
  return (msg.msg_flags & MSG_CTRUNC) == 0;
}

bool valid_header(const frame_header& h, std::size_t fds) noexcept {
  return h.magic == frame_magic && h.fd_count == fds && h.size < (std::uint64_t{1} << 40);
}

// ---- blocking transfers (the worker and the fork server are plain synchronous loops)

// Moves all `size` bytes with `step(done)` (a send or a recv of the bytes from `done` on),
// again after a signal. False once the peer is gone or the call fails.
template <class Step>
bool transfer_all_sync(std::size_t size, Step&& step) {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = step(done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

bool write_all_sync(int fd, const char* data, std::size_t size) {
  return transfer_all_sync(
      size, [&](std::size_t done) { return ::send(fd, data + done, size - done, MSG_NOSIGNAL); });
}

bool read_exact_sync(int fd, char* data, std::size_t size) {
  return transfer_all_sync(
      size, [&](std::size_t done) { return ::recv(fd, data + done, size - done, MSG_WAITALL); });
}

bool send_frame_sync(int fd, frame_kind kind, const std::string& payload,
                     const std::vector<io::fd>& fds) {
  frame_header header;
  header.kind = kind;
  msghdr msg;
  iovec iov[2];
  fd_cmsg control;
  prepare_send(msg, iov, control, header, payload, fds);
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return false;
  // The fds went with the first byte; the rest of a long frame follows as plain bytes.
  auto sent = static_cast<std::size_t>(n);
  if (sent < sizeof header) {
    if (!write_all_sync(fd, reinterpret_cast<const char*>(&header) + sent, sizeof header - sent)) {
      return false;
    }
    sent = sizeof header;
  }
  const std::size_t payload_sent = sent - sizeof header;
  return write_all_sync(fd, payload.data() + payload_sent, payload.size() - payload_sent);
}

// False at end of stream or on an error (the peer is gone).
bool recv_frame_sync(int fd, frame_header& header, std::string& payload, std::vector<io::fd>& fds) {
  char first[inline_payload];
  iovec iov[2] = {{&header, sizeof header}, {first, sizeof first}};
  fd_cmsg control;
  msghdr msg = receive_message(iov, 2, control);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  if (!collect_fds(msg, fds)) return false;
  auto got = static_cast<std::size_t>(n);
  if (got < sizeof header) {
    if (!read_exact_sync(fd, reinterpret_cast<char*>(&header) + got, sizeof header - got)) {
      return false;
    }
    got = sizeof header;
  }
  if (!valid_header(header, fds.size())) return false;
  const std::size_t early = got - sizeof header;  // payload bytes that came with the header
  if (early > header.size) return false;          // more than the frame: out of step
  payload.resize(header.size);
  std::memcpy(payload.data(), first, early);
  return read_exact_sync(fd, payload.data() + early, payload.size() - early);
}

// ---- the worker

// Runs jobs until the pool closes the socket, then exits the process.
[[noreturn]] void serve_jobs(int socket) {
  for (;;) {
    frame_header header;
    std::string payload;
    std::vector<io::fd> fds;
    if (!recv_frame_sync(socket, header, payload, fds) ||
        (header.kind != frame_kind::job && header.kind != frame_kind::batch)) {
      std::fflush(nullptr);  // what the functions printed (stdout may be a pipe, not a tty)
      std::_Exit(0);         // the pool closed this worker (or is gone): exit without static dtors
    }
    serial::writer result;
    frame_kind kind = frame_kind::ok;
    try {
      serial::reader args(std::as_bytes(std::span(payload)), &fds);
      const std::string name = serial::take<std::string>(args);
      const detail::registered_function* f = detail::find_function(name);
      if (f == nullptr) {
        throw std::runtime_error("function '" + name + "' is not registered in the worker");
      }
      const std::uint64_t calls =
          header.kind == frame_kind::batch ? serial::take<std::uint64_t>(args) : 1;
      for (std::uint64_t i = 0; i < calls; ++i) f->invoke(f->fn, args, result);
      if (args.remaining() != 0)
        throw serial::format_error("weft::pool::serial: trailing bytes in a job");
      // The fds go in one control message, whose buffer holds SCM_MAX_FD of them.
      if (result.fds().size() > max_fds_per_frame) {
        throw std::length_error("the result carries " + std::to_string(result.fds().size()) +
                                " shared buffers; at most 253 fit in one reply");
      }
    } catch (const std::exception& e) {
      kind = frame_kind::error;
      result = serial::writer();
      result.bytes() = e.what();
    } catch (...) {
      kind = frame_kind::error;
      result = serial::writer();
      result.bytes() = "an exception not derived from std::exception";
    }
    fds.clear();
    // What the function printed goes out before its result, as it would in the parent.
    std::fflush(nullptr);
    if (!send_frame_sync(socket, kind, result.bytes(), result.fds())) std::_Exit(0);
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

// The worker's loop. Never returns and never lets an exception out: unwinding into the
// caller would run the program's own main (spawn) or the parent's stack (fork) in the worker.
[[noreturn]] void worker_loop(int socket) noexcept {
  exit_when_pool_hangs_up(socket);
  try {
    serve_jobs(socket);
  } catch (...) {
  }
  std::fflush(nullptr);
  std::_Exit(70);  // EX_SOFTWARE: out of memory decoding a frame, say
}

// Moves `f` above 0, 1, 2 (a process started with stdin closed gets fd 0 from socketpair), so
// that closing "everything but the standard streams" in a child really closes it.
io::fd above_stdio(io::fd f) {
  if (!f || f.get() > 2) return f;
  io::fd moved(::fcntl(f.get(), F_DUPFD_CLOEXEC, 3));
  if (!moved) throw_errno("weft::pool::process_pool: fcntl");
  return moved;
}

// Closes every fd of a freshly forked process but 0, 1, 2 and `keep`.
void close_all_but(int keep) {
  if (keep > 3) ::syscall(SYS_close_range, 3u, static_cast<unsigned>(keep - 1), 0u);
  ::syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0u, 0u);
}

void refuse_if_unserved_worker() {
  if (std::getenv(worker_env) != nullptr) {
    std::fprintf(stderr,
                 "weft: this process was started as a process_pool worker, but its main() did "
                 "not call weft::serve_if_pool_worker() first; exiting\n");
    std::_Exit(unserved_worker_exit);
  }
}

unsigned thread_count() {
  std::error_code ec;
  unsigned n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

std::string describe(const io::exit_status& s) {
  std::string text = s.describe();
  if (s.exited() && s.code == unserved_worker_exit) {
    text += " (its main() did not call weft::serve_if_pool_worker() first)";
  }
  return text;
}

}  // namespace

void serve_if_pool_worker() {
  const char* value = std::getenv(worker_env);
  if (value == nullptr) return;
  const int socket = std::atoi(value);
  ::unsetenv(worker_env);
  // The socket arrived without FD_CLOEXEC (pass_fd); a program the job runs must not inherit
  // it, or the parent would not see end of file when this worker dies.
  ::fcntl(socket, F_SETFD, FD_CLOEXEC);
  worker_loop(socket);
}

namespace detail {
void refuse_unserved_pool_worker() {
  refuse_if_unserved_worker();
}
}  // namespace detail

// ---- the fork server

namespace {
// How long each receive from the fork server waits; see detail::set_fork_server_reply_timeout.
std::atomic<long> fork_server_reply_timeout_ms{10000};
}  // namespace

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
/// The round trips block: the pool makes them on the blocking pool, never on an executor thread.
class process_pool::zygote {
 public:
  zygote() {
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

  /// A new worker: its pid and the parent's end of its socket, by a blocking round trip: for
  /// the constructor only (start method fork runs before any ring or executor thread exists).
  /// Throws std::system_error.
  std::pair<pid_t, io::fd> fork_worker() {
    std::int64_t reply[3] = {0, 0, 0};
    std::vector<io::fd> fds;
    round_trip(1, 0, reply, fds);
    return worker_from(reply, fds);
  }

  /// `fork_worker` on the ring: for the pool's tasks, whose executor thread must not block.
  task<std::pair<pid_t, io::fd>> fork_worker_async() {
    std::int64_t reply[3] = {0, 0, 0};
    std::vector<io::fd> fds;
    co_await round_trip_async(1, 0, reply, fds);
    co_return worker_from(reply, fds);
  }

  /// How worker `pid` ended (waits for it: its socket is closed, so it is on its way out), on
  /// the ring. Throws std::system_error (`errc::timed_out` when the reply is late).
  task<io::exit_status> status_of(pid_t pid) {
    std::int64_t reply[3] = {0, 0, 0};
    std::vector<io::fd> fds;
    co_await round_trip_async(2, pid, reply, fds);
    io::exit_status s;
    if (reply[0] == CLD_EXITED) {
      s.code = static_cast<int>(reply[1]);
    } else {
      s.signal = static_cast<int>(reply[1]);
      s.core_dumped = reply[0] == CLD_DUMPED;
    }
    co_return s;
  }

  /// Closes the control socket: the server reaps its workers (killing any still alive after a
  /// second) and exits.
  void close() noexcept { control_.reset(); }
  io::child& process() noexcept { return process_; }

  /// Has worker `pid` killed and reaped, without waiting for an answer (a send to a socket
  /// with room: it does not block an executor thread). Errors are ignored: a fork server that
  /// is gone has nothing left to reap.
  void forget(pid_t pid) noexcept {
    const std::int64_t request[3] = {3, pid, 0};
    (void)::send(control_.get(), request, sizeof request, MSG_NOSIGNAL | MSG_DONTWAIT);
  }

 private:
  static std::pair<pid_t, io::fd> worker_from(const std::int64_t (&reply)[3],
                                              std::vector<io::fd>& fds) {
    if (reply[0] < 0) {
      throw std::system_error(static_cast<int>(-reply[0]), std::generic_category(),
                              "weft::pool::process_pool: fork");
    }
    if (fds.size() != 1)
      throw std::runtime_error("weft::pool::process_pool: fork server sent no socket");
    return {static_cast<pid_t>(reply[0]), std::move(fds[0])};
  }

  // A late reply (to a request that gave up): its fds close with it, and a worker forked that
  // late, which nobody will use, is forgotten. False when `reply` answers request `id`.
  bool drop_if_late(const std::int64_t (&reply)[3], std::int64_t id) noexcept {
    if (reply[2] == id) return false;
    if (reply[0] > 0 && reply[2] != 0) forget_worker_of_late_reply(reply[0]);
    return true;
  }
  void forget_worker_of_late_reply(std::int64_t pid) noexcept {
    const std::int64_t drop[3] = {3, pid, 0};
    (void)::send(control_.get(), drop, sizeof drop, MSG_NOSIGNAL | MSG_DONTWAIT);
  }

  // On the ring: sends request {kind, arg, id} and receives the reply that repeats `id`, each
  // receive bounded by the reply timeout (errc::timed_out). One round trip at a time.
  task<void> round_trip_async(std::int64_t kind, std::int64_t arg, std::int64_t (&reply)[3],
                              std::vector<io::fd>& fds) {
    auto guard = co_await ring_mutex_.scoped_lock();
    const std::int64_t id = last_id_.fetch_add(1, std::memory_order_relaxed) + 1;
    const std::int64_t request[3] = {kind, arg, id};
    const int socket = control_.get();
    auto sent = co_await io::count_operation(
        "weft::pool::process_pool: fork server", [&](io_uring_sqe* sqe) {
          io_uring_prep_send(sqe, socket, request, sizeof request, MSG_NOSIGNAL);
        });
    if (!sent || *sent != sizeof request) {
      throw std::runtime_error("weft::pool::process_pool: the fork server is gone");
    }
    const std::chrono::milliseconds limit(
        fork_server_reply_timeout_ms.load(std::memory_order_relaxed));
    do {
      iovec iov{reply, sizeof reply};
      fd_cmsg control;
      msghdr msg = receive_message(&iov, 1, control);
      auto n = co_await with_timeout(
          limit,
          io::count_operation("weft::pool::process_pool: fork server", [&](io_uring_sqe* sqe) {
            io_uring_prep_recvmsg(sqe, socket, &msg, MSG_CMSG_CLOEXEC);
          }));
      fds.clear();
      if (!n || *n != sizeof reply || !collect_fds(msg, fds)) {
        throw std::runtime_error("weft::pool::process_pool: the fork server is gone");
      }
    } while (drop_if_late(reply, id));
  }

  // The blocking round trip of the constructor (no ring, no other user of the socket yet).
  void round_trip(std::int64_t kind, std::int64_t arg, std::int64_t (&reply)[3],
                  std::vector<io::fd>& fds) {
    const std::int64_t id = last_id_.fetch_add(1, std::memory_order_relaxed) + 1;
    const std::int64_t request[3] = {kind, arg, id};
    if (::send(control_.get(), request, sizeof request, MSG_NOSIGNAL) != sizeof request) {
      throw_errno("weft::pool::process_pool: fork server");
    }
    do {
      fds.clear();
      receive(reply, fds);
    } while (drop_if_late(reply, id));
  }

  void receive(std::int64_t (&reply)[3], std::vector<io::fd>& fds) {
    iovec iov{reply, sizeof reply};
    fd_cmsg control;
    msghdr msg = receive_message(&iov, 1, control);
    ssize_t n;
    do {
      n = ::recvmsg(control_.get(), &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) {
      throw std::system_error(make_error_code(errc::timed_out),
                              "weft::pool::process_pool: the fork server did not answer in time");
    }
    if (n != sizeof reply || !collect_fds(msg, fds)) {
      throw std::runtime_error("weft::pool::process_pool: the fork server is gone");
    }
  }

  // The fork server's main loop: never returns, never lets an exception out (unwinding would
  // run the parent's stack in this process).
  [[noreturn]] static void serve(int control) noexcept {
    try {
      serve_requests(control);
    } catch (...) {
    }
    std::_Exit(70);
  }

  [[noreturn]] static void serve_requests(int control) {
    std::map<pid_t, io::fd> children;  // worker pid -> its pidfd
    auto finish = [](io::fd& pidfd, int wait_ms) -> std::pair<int, int> {
      pollfd p{pidfd.get(), POLLIN, 0};
      if (::poll(&p, 1, wait_ms) <= 0) ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, 0, 0);
      siginfo_t info{};
      while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd.get()), &info,
                      WEXITED) != 0 &&
             errno == EINTR) {
      }
      return {info.si_code, info.si_status};
    };
    for (;;) {
      std::int64_t request[3];
      const ssize_t n = ::recv(control, request, sizeof request, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n != sizeof request) break;  // the pool closed: reap everyone and go
      if (request[0] == 1) {
        std::int64_t reply[3] = {0, 0, request[2]};
        int sv[2];
        std::vector<io::fd> give;
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
          reply[0] = -errno;
        } else {
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
        if (!send_with_fds(control, reply, sizeof reply, give)) break;
      } else if (request[0] == 2) {
        std::int64_t reply[3] = {CLD_KILLED, SIGKILL, request[2]};
        auto it = children.find(static_cast<pid_t>(request[1]));
        if (it != children.end()) {
          auto [code, status] = finish(it->second, 2000);
          reply[0] = code;
          reply[1] = status;
          children.erase(it);
        }
        if (::send(control, reply, sizeof reply, MSG_NOSIGNAL) != sizeof reply) break;
      } else if (request[0] == 3) {
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
    std::_Exit(0);
  }

  io::fd control_;
  io::child process_;
  weft::mutex ring_mutex_;                // one round trip on the ring at a time
  std::atomic<std::int64_t> last_id_{0};  // the last request id given
};

void detail::set_fork_server_reply_timeout(std::chrono::milliseconds limit) noexcept {
  fork_server_reply_timeout_ms.store(static_cast<long>(limit.count()), std::memory_order_relaxed);
}

// ---- the pool

struct process_pool::slot {
  pid_t pid = -1;
  io::fd pidfd;  // fork: a pidfd of the fork server's child, to signal it safely
  std::optional<io::child> process;  // spawn: the worker itself; fork: the fork server's child
  io::fd socket;
};

process_pool::process_pool(unsigned workers, start_method method) : method_(method) {
  refuse_if_unserved_worker();
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  if (method == start_method::fork) {
    const unsigned threads = thread_count();
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
    zygote_ = std::make_unique<zygote>();
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
    auto [pid, socket] = zygote_->fork_worker();
    adopt_forked(s, pid, std::move(socket));
    return;
  } else {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      throw_errno("weft::pool::process_pool: socketpair");
    }
    io::fd ours(sv[0]), theirs(sv[1]);
    // The worker is this very program, re-executed: /proc/self/exe works even when the file
    // was replaced or deleted since.
    io::command cmd("/proc/self/exe");
    cmd.env(worker_env, "3").pass_fd(theirs.get());
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
  auto [pid, socket] = co_await zygote_->fork_worker_async();
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
  if (zygote_) {
    zygote_->close();
    reap_gently(zygote_->process(), std::chrono::milliseconds(2000));
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
  bool replied = false;  // a whole reply came back
  frame_header header;
  detail::process_reply reply;
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

task<void> exchange(int socket, frame_kind kind, const serial::writer& job, exchange_result& out) {
  frame_header header;
  header.kind = kind;
  msghdr msg;
  iovec iov[2];
  fd_cmsg control;
  prepare_send(msg, iov, control, header, job.bytes(), job.fds());
  int n = co_await raw(
      [&](io_uring_sqe* sqe) { io_uring_prep_sendmsg(sqe, socket, &msg, MSG_NOSIGNAL); });
  if (n < 0) co_return;
  // The fds went with the first bytes; what a short send left goes as plain bytes.
  std::size_t sent = static_cast<std::size_t>(n);
  const std::size_t total = sizeof header + job.bytes().size();
  while (sent < total) {
    const char* from = sent < sizeof header ? reinterpret_cast<const char*>(&header) + sent
                                            : job.bytes().data() + (sent - sizeof header);
    const std::size_t len = sent < sizeof header ? sizeof header - sent : total - sent;
    n = co_await raw(
        [&](io_uring_sqe* sqe) { io_uring_prep_send(sqe, socket, from, len, MSG_NOSIGNAL); });
    if (n <= 0) co_return;
    sent += static_cast<std::size_t>(n);
  }
  out.sent = true;

  // The header and the start of the payload in one receive (only this job is in flight on
  // the socket, so nothing else can come with them).
  char first[inline_payload];
  iovec in_iov[2] = {{&out.header, sizeof out.header}, {first, sizeof first}};
  msghdr in = receive_message(in_iov, 2, control);
  n = co_await raw(
      [&](io_uring_sqe* sqe) { io_uring_prep_recvmsg(sqe, socket, &in, MSG_CMSG_CLOEXEC); });
  if (n <= 0) co_return;
  if (!collect_fds(in, out.reply.fds)) co_return;
  std::size_t got = static_cast<std::size_t>(n);
  while (got < sizeof out.header) {
    n = co_await raw([&](io_uring_sqe* sqe) {
      io_uring_prep_recv(sqe, socket, reinterpret_cast<char*>(&out.header) + got,
                         sizeof out.header - got, MSG_WAITALL);
    });
    if (n <= 0) co_return;
    got += static_cast<std::size_t>(n);
  }
  if (!valid_header(out.header, out.reply.fds.size())) co_return;
  const std::size_t early = got - sizeof out.header;
  if (early > out.header.size) co_return;  // out of step: treated as a broken worker
  out.reply.bytes.resize(out.header.size);
  std::memcpy(out.reply.bytes.data(), first, early);
  got = early;
  while (got < out.reply.bytes.size()) {
    n = co_await raw([&](io_uring_sqe* sqe) {
      io_uring_prep_recv(sqe, socket, out.reply.bytes.data() + got, out.reply.bytes.size() - got,
                         MSG_WAITALL);
    });
    if (n <= 0) co_return;
    got += static_cast<std::size_t>(n);
  }
  out.replied = true;
}

}  // namespace

task<std::string> process_pool::reap_dead(slot& s) {
  s.socket.reset();
  if (method_ == start_method::fork) {
    if (s.pid <= 0) co_return "(it had not started)";
    co_return describe(co_await zygote_->status_of(s.pid));
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
  co_return describe(*status);
}

void process_pool::replace_now(slot& s) noexcept {
  s.socket.reset();
  if (method_ == start_method::fork) {
    // No round trip here (this runs on an executor thread): the fork server kills and reaps the
    // worker on its own, and the slot's next job starts its replacement.
    if (s.pid > 0) {
      if (s.pidfd) ::syscall(SYS_pidfd_send_signal, s.pidfd.get(), SIGKILL, nullptr, 0);
      zygote_->forget(s.pid);
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
  if (j.message.fds().size() > max_fds_per_frame) {
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
      if (ex.header.kind == frame_kind::error) {
        throw_error(errc::job_failed, "weft::pool::process_pool: '" + *j.name +
                                          "' failed in worker " + std::to_string(s->pid) + ": " +
                                          ex.reply.bytes);
      }
      co_return std::move(ex.reply);
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
    if (zygote_) {
      zygote_->close();
      io::child& z = zygote_->process();
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
