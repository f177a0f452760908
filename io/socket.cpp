#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/sendfile.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <weft/io/socket.hpp>

namespace weft::io {
namespace {

io_error last_error(const char* operation) noexcept {
  return {std::error_code(errno, std::generic_category()), operation};
}

result<socket_address> sockname(int fd, bool peer) {
  socket_address a;
  socklen_t length = socket_address::capacity();
  const int rc = peer ? ::getpeername(fd, a.data(), &length) : ::getsockname(fd, a.data(), &length);
  if (rc != 0) return last_error(peer ? "getpeername" : "getsockname");
  a.set_size(length);
  return a;
}

result<io::fd> open_socket(int family, int type) {
  io::fd s(::socket(family, type | SOCK_CLOEXEC, 0));
  if (!s) return last_error("socket");
  return s;
}

template <class Stream>
task<result<Stream>> connect_stream(socket_address address) {
  auto s = open_socket(address.family(), SOCK_STREAM);
  if (!s) co_return s.full_error();
  io::fd sock = std::move(s.value());
  const int raw = sock.get();
  // `address` lives in this frame until the operation completes.
  const int r = co_await operation([raw, &address](io_uring_sqe* sqe) {
    io_uring_prep_connect(sqe, raw, address.data(), address.size());
  });
  detail::throw_if_cancelled(r, "connect");
  if (r < 0) co_return error_from_result(r, "connect");
  co_return Stream(std::move(sock));
}

}  // namespace

// ---- streams

task<result<void>> stream_socket::read_exact(std::span<std::byte> buffer) const {
  // The first read usually waits for the peer (a reply): poll first; the rest of a large
  // message is usually there already: try at once.
  return detail::read_exact_with(
      [this](std::span<std::byte> rest, bool first) { return receive(rest, first); }, buffer,
      "recv");
}

task<result<void>> stream_socket::write_all(std::span<const std::byte> buffer) const {
  return detail::write_all_with([this](std::span<const std::byte> rest) { return write(rest); },
                                buffer);
}

task<result<std::uint64_t>> stream_socket::send_file(const file& f, std::uint64_t offset,
                                                     std::uint64_t count,
                                                     std::span<const std::byte> header) const {
  const int sock = fd_.get();
  const int flags = ::fcntl(sock, F_GETFL);
  if (flags < 0 || ::fcntl(sock, F_SETFL, flags | O_NONBLOCK) != 0) co_return last_error("fcntl");
  struct restore_blocking {
    int sock, flags;
    ~restore_blocking() { ::fcntl(sock, F_SETFL, flags); }
  } restore{sock, flags};

  // The header goes first, marked MSG_MORE so that it shares a segment with the file's start.
  while (!header.empty()) {
    const int more = count > 0 ? MSG_MORE : 0;  // nothing follows: do not cork the header
    const ssize_t n = ::send(sock, header.data(), header.size(), MSG_NOSIGNAL | more);
    if (n > 0) {
      header = header.subspan(static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      if (auto ready = co_await poll(sock, POLLOUT); !ready) co_return ready.full_error();
    } else if (n < 0 && errno != EINTR) {
      co_return last_error("send");
    }
  }
  std::uint64_t sent = 0;
  while (sent < count) {
    off_t position = static_cast<off_t>(offset + sent);
    const std::size_t chunk =
        static_cast<std::size_t>(std::min<std::uint64_t>(count - sent, 1u << 30));
    const ssize_t n = ::sendfile(sock, f.native_handle(), &position, chunk);
    if (n > 0) {
      sent += static_cast<std::uint64_t>(n);
    } else if (n == 0) {
      co_return io_error{make_error_code(errc::end_of_stream), "sendfile"};
    } else if (errno == EAGAIN) {
      if (auto ready = co_await poll(sock, POLLOUT); !ready) co_return ready.full_error();
    } else if (errno != EINTR) {
      co_return last_error("sendfile");
    }
  }
  co_return sent;
}

result<socket_address> stream_socket::peer_address() const {
  return sockname(fd_.get(), true);
}
result<socket_address> stream_socket::local_address() const {
  return sockname(fd_.get(), false);
}

task<result<tcp_stream>> tcp_stream::connect(socket_address address) {
  return connect_stream<tcp_stream>(address);
}

result<void> tcp_stream::set_nodelay(bool on) const {
  const int value = on ? 1 : 0;
  if (::setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &value, sizeof value) != 0) {
    return last_error("setsockopt TCP_NODELAY");
  }
  return {};
}

task<result<unix_stream>> unix_stream::connect(socket_address address) {
  return connect_stream<unix_stream>(address);
}

result<std::pair<unix_stream, unix_stream>> unix_stream::pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return last_error("socketpair");
  }
  return std::pair(unix_stream(io::fd(fds[0])), unix_stream(io::fd(fds[1])));
}

std::string describe_connect_error(const socket_address& address, std::error_code code) {
  return "connect " + address.to_string() + ": " + code.message();
}

// ---- UDP

result<udp_socket> udp_socket::bind(const socket_address& address) {
  auto s = open_socket(address.family(), SOCK_DGRAM);
  if (!s) return s.full_error();
  if (::bind(s->get(), address.data(), address.size()) != 0) return last_error("bind");
  return udp_socket(std::move(s.value()));
}

result<socket_address> udp_socket::local_address() const {
  return sockname(fd_.get(), false);
}

// ---- listeners and the multishot accept

namespace detail {

class acceptor final : public persistent_completion, public std::enable_shared_from_this<acceptor> {
 public:
  acceptor(io::fd socket, std::size_t queue_limit) noexcept
      : socket_(std::move(socket)), queue_limit_(queue_limit == 0 ? 1 : queue_limit) {
    on_complete = &acceptor::complete;
  }
  ~acceptor() {
    for (int fd : ready_) {
      if (fd >= 0) ::close(fd);
    }
  }

  int native_handle() const noexcept { return socket_.get(); }

  // accept() found a queued connection (or the listener closed): no need to suspend.
  bool try_take(accept_awaitable& w) {
    std::lock_guard lock(mutex_);
    return take_locked(w);
  }

  bool suspend(accept_awaitable& w, std::coroutine_handle<> h, cancel_scope* scope) {
    reactor* here = reactor::current();
    executor* ex = executor::current();
    if (here == nullptr || ex == nullptr) {
      throw_error(errc::no_runtime, "weft::io accept outside weft::run");
    }
    std::shared_ptr<acceptor> keep = shared_from_this();  // `w` may be gone once we unlock
    bool arm = false;
    {
      std::lock_guard lock(mutex_);
      if (take_locked(w)) return false;
      w.handle_ = h;
      w.executor_ = ex;
      link(w);
      if (scope != nullptr) {
        w.scope_ = scope;
        if (!scope->add_waiter(w)) {  // already stopped: do not wait at all
          w.scope_ = nullptr;
          unlink(w);
          w.cancelled_ = true;
          return false;
        }
      }
      arm = claim_arm_locked(here);
    }
    if (arm) {
      try {
        submit_accept(*here);
      } catch (...) {
        // No SQE could be submitted: undo the registration so that nothing points at `w`
        // once the exception unwinds its frame, and report the failure to the caller.
        {
          std::lock_guard lock(mutex_);
          if (!w.ready_ && !w.cancelled_) unlink(w);
          armed_on_ = nullptr;
          self_while_armed_.reset();
        }
        if (w.scope_ != nullptr) {
          w.scope_->remove_waiter(w);
          w.scope_ = nullptr;
        }
        throw;
      }
    }
    return true;
  }

  static void stop(accept_awaitable& w) noexcept {
    acceptor& self = *w.owner_;
    bool wake = false;
    {
      std::lock_guard lock(self.mutex_);
      if (!w.ready_ && !w.cancelled_) {
        self.unlink(w);
        w.cancelled_ = true;
        wake = true;
      }
    }
    if (wake) w.executor_->schedule(w.handle_);
  }

  void close() noexcept {
    std::deque<int> queued;
    accept_awaitable* waiters = nullptr;
    reactor* armed = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return;
      closed_ = true;
      queued.swap(ready_);
      waiters = head_;
      for (accept_awaitable* w = head_; w != nullptr; w = w->next_waiter_) {
        w->ready_ = true;
        w->result_ = -EBADF;
      }
      head_ = tail_ = nullptr;
      armed = armed_on_;
      if (armed != nullptr && armed != reactor::current()) {
        // Another thread's ring: queue the cancel while holding the lock, so that the
        // request's final CQE (whose handler takes this lock and retracts queued cancels) is
        // either already handled (armed_on_ was null) or handled after it. Queued after the
        // unlock, the cancel could outlive the acceptor and hit a request that reuses this
        // address. Lock order: this mutex, then the reactor's remote lock (as in on_cqe).
        try {
          armed->cancel(this);
        } catch (...) {  // the request ends with the reactor
        }
        armed = nullptr;
      }
    }
    for (int fd : queued) {
      if (fd >= 0) ::close(fd);
    }
    wake_all(waiters);
    if (armed != nullptr) {
      // Our own ring: only this thread handles its CQEs, so the request is still armed, and
      // submitting here may reap completions, whose handlers take the lock.
      try {
        armed->cancel(this);
      } catch (...) {  // the request ends with the reactor
      }
    }
    // The socket itself closes with the acceptor, once the request's last CQE and every
    // waiting accept have let go of it: a thread arming the request concurrently may still be
    // about to put its number in an SQE, and a closed number could already belong to another
    // file by then. Until that moment, new connections wait in the backlog and are reset.
  }

 private:
  bool take_locked(accept_awaitable& w) {
    if (closed_) {
      w.result_ = -EBADF;
      w.ready_ = true;
      return true;
    }
    if (ready_.empty()) return false;
    w.result_ = ready_.front();
    w.ready_ = true;
    ready_.pop_front();
    return true;
  }

  // Decides, under the lock, whether the calling thread must arm the request; the submission
  // itself happens after unlocking (submitting may reap completions, which take the lock).
  bool claim_arm_locked(reactor* here) {
    if (armed_on_ != nullptr || closed_) return false;
    armed_on_ = here;
    self_while_armed_ = shared_from_this();
    return true;
  }

  void submit_accept(reactor& r) {
    r.track(*this);
    try {
      r.submit(this, [&](io_uring_sqe* sqe) {
        io_uring_prep_multishot_accept(sqe, socket_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      });
    } catch (...) {
      r.untrack(*this);
      throw;
    }
  }

  static void wake_all(accept_awaitable* list) noexcept {
    while (list != nullptr) {
      accept_awaitable* next = list->next_waiter_;  // read before the task may run
      list->executor_->schedule(list->handle_);
      list = next;
    }
  }

  static void complete(completion* c, int res, std::uint32_t flags) noexcept {
    static_cast<acceptor*>(c)->on_cqe(res, flags);
  }

  void on_cqe(int res, std::uint32_t flags) noexcept {
    std::shared_ptr<acceptor> release_after;  // the request's reference, dropped at the end
    accept_awaitable* wake = nullptr;
    bool pause = false;
    bool rearm = false;
    reactor* here = reactor::current();
    {
      std::lock_guard lock(mutex_);
      const bool final_cqe = (flags & IORING_CQE_F_MORE) == 0;
      reactor* armed = armed_on_;
      if (final_cqe) {
        if (armed != nullptr) {
          armed->untrack(*this);
          // A cancel another thread queued (close()) must not outlive the request: this
          // address may be freed and reused.
          armed->retract_cancel(this);
        }
        armed_on_ = nullptr;
        release_after = std::move(self_while_armed_);
      }
      if (closed_) {
        if (res >= 0) ::close(res);
        return;
      }
      const bool our_pause = res == -ECANCELED && pausing_;
      if (final_cqe) pausing_ = false;
      if (!our_pause) {
        if (head_ != nullptr) {
          wake = head_;
          unlink(*wake);
          wake->ready_ = true;
          wake->result_ = res;
          wake->next_waiter_ = nullptr;
        } else if (res != -ECANCELED) {
          ready_.push_back(res);
        }
      }
      if (!final_cqe && ready_.size() >= queue_limit_ && !pausing_) {
        pausing_ = true;
        pause = true;
      }
      // A request that ended (an error such as EMFILE, or our pause) while tasks still wait is
      // armed again for them; with nobody waiting, the next accept() arms it.
      if (final_cqe && head_ != nullptr && here == armed && here != nullptr) {
        rearm = claim_arm_locked(here);
      }
    }
    if (wake != nullptr) wake_all(wake);
    if (pause && armed_on_reactor_is_here(here)) {
      try {
        here->cancel(this);
      } catch (...) {
      }
    }
    if (rearm) {
      try {
        submit_accept(*here);
      } catch (...) {
        // No SQE: the waiting accepts get EAGAIN (a retry re-arms) rather than waiting for a
        // request that does not exist.
        accept_awaitable* waiters = nullptr;
        {
          std::lock_guard lock(mutex_);
          armed_on_ = nullptr;
          self_while_armed_.reset();
          waiters = head_;
          for (accept_awaitable* w = head_; w != nullptr; w = w->next_waiter_) {
            w->ready_ = true;
            w->result_ = -EAGAIN;
          }
          head_ = tail_ = nullptr;
        }
        wake_all(waiters);
      }
    }
  }

  bool armed_on_reactor_is_here(reactor* here) noexcept {
    std::lock_guard lock(mutex_);
    return here != nullptr && armed_on_ == here;
  }

  void link(accept_awaitable& w) noexcept {
    w.next_waiter_ = nullptr;
    w.prev_waiter_ = tail_;
    if (tail_ != nullptr) {
      tail_->next_waiter_ = &w;
    } else {
      head_ = &w;
    }
    tail_ = &w;
  }
  void unlink(accept_awaitable& w) noexcept {
    if (w.prev_waiter_ != nullptr) {
      w.prev_waiter_->next_waiter_ = w.next_waiter_;
    } else {
      head_ = w.next_waiter_;
    }
    if (w.next_waiter_ != nullptr) {
      w.next_waiter_->prev_waiter_ = w.prev_waiter_;
    } else {
      tail_ = w.prev_waiter_;
    }
    w.prev_waiter_ = w.next_waiter_ = nullptr;
  }

  io::fd socket_;
  const std::size_t queue_limit_;
  std::mutex mutex_;
  std::deque<int> ready_;  // accepted fds (>= 0) and errors (negated errno) nobody took yet
  accept_awaitable* head_ = nullptr;
  accept_awaitable* tail_ = nullptr;
  reactor* armed_on_ = nullptr;  // the ring holding the request, while it is in flight
  std::shared_ptr<acceptor> self_while_armed_;
  bool pausing_ = false;  // we cancelled the request because the queue is full
  bool closed_ = false;
};

bool accept_awaitable::await_ready() {
  if (!owner_) {  // the listener was closed (or never bound)
    result_ = -EBADF;
    return true;
  }
  return owner_->try_take(*this);
}

bool accept_awaitable::suspend(std::coroutine_handle<> h, cancel_scope* scope) {
  on_stop = &accept_awaitable::stop;
  if (weft::detail::promise_base* t = weft::detail::tls_current_task) {  // for the task dump
    t->describe_wait("accept", weft::detail::wait_arg::fd, acceptor_fd(*owner_));
  }
  return owner_->suspend(*this, h, scope);
}

void accept_awaitable::stop(cancel_scope::waiter* w) noexcept {
  acceptor::stop(*static_cast<accept_awaitable*>(w));
}

result<io::fd> accept_awaitable::await_resume() {
  if (scope_ != nullptr) scope_->remove_waiter(*this);  // waits for a stop callback in flight
  if (cancelled_) throw_error(errc::cancelled, "accept");
  if (result_ < 0) return error_from_result(result_, "accept");
  return io::fd(result_);
}

result<std::shared_ptr<acceptor>> listen_on(const socket_address& address,
                                            const listen_options& options) {
  auto s = open_socket(address.family(), SOCK_STREAM);
  if (!s) return s.full_error();
  const int fd = s->get();
  const int one = 1;
  const bool ip = address.family() == AF_INET || address.family() == AF_INET6;
  if (ip && options.reuse_address &&
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
    return last_error("setsockopt SO_REUSEADDR");
  }
  if (ip && options.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) {
    return last_error("setsockopt SO_REUSEPORT");
  }
  if (address.family() == AF_INET6) {
    const int v6_only = options.v6_only ? 1 : 0;
    if (::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6_only, sizeof v6_only) != 0) {
      return last_error("setsockopt IPV6_V6ONLY");
    }
  }
  if (::bind(fd, address.data(), address.size()) != 0) return last_error("bind");
  if (::listen(fd, options.backlog) != 0) return last_error("listen");
  return std::make_shared<acceptor>(std::move(s.value()), options.accept_queue);
}

void close_acceptor(acceptor& a) noexcept {
  a.close();
}
int acceptor_fd(const acceptor& a) noexcept {
  return a.native_handle();
}

}  // namespace detail
}  // namespace weft::io
