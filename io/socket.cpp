#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/sendfile.h>

#include <algorithm>
#include <deque>
#include <mutex>
#include <weft/detail/intrusive_list.hpp>
#include <weft/io/socket.hpp>

#include "buffer_ring.hpp"

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
    weft::detail::list_push_back<&accept_awaitable::prev_waiter_, &accept_awaitable::next_waiter_>(
        head_, tail_, w);
  }
  void unlink(accept_awaitable& w) noexcept {
    weft::detail::list_remove<&accept_awaitable::prev_waiter_, &accept_awaitable::next_waiter_>(
        head_, tail_, w);
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

// ---- multishot receive

namespace detail {

// The shared state of a recv_stream: the request (a persistent completion, tracked by the
// reactor that armed it so that its teardown ends it), the queue of what arrived, the waiting
// task. The recv_stream owns one reference; an armed request owns another (self_while_armed_),
// so the state outlives a destroyed recv_stream until the request's last CQE.
//
// Invariants, under mutex_: mode_ != idle exactly while a request is in flight, on armed_on_;
// waiter_ is set only while a next() is suspended and nothing is queued and the stream is not
// over; `over_` (EOF or an error was queued) means nothing more is armed.
class recv_stream_state final : public persistent_completion,
                                public std::enable_shared_from_this<recv_stream_state> {
 public:
  explicit recv_stream_state(int fd) noexcept : fd_(fd) { on_complete = &recv_stream_state::cqe; }

  bool suspend(recv_stream::next_awaitable& w, std::coroutine_handle<> h, cancel_scope* scope);
  result<received_buffer> resume(recv_stream::next_awaitable& w);
  void close() noexcept;

 private:
  enum class mode { idle, multishot, single };
  struct entry {
    int res = 0;  // bytes (> 0), 0 for the end, or a negated errno
    unsigned short bid = 0;
    std::shared_ptr<weft::detail::buffer_ring> ring;  // the buffer's ring (multishot), else null
    std::unique_ptr<std::byte[]> own;                 // the one-shot receive's buffer
  };

  static void cqe(completion* c, int res, std::uint32_t flags) noexcept;
  static void stop(cancel_scope::waiter* w) noexcept;
  bool ready_locked() const noexcept { return !queue_.empty() || over_; }
  void arm(reactor& r);  // submits what mode_ says on `r`; the lock is not held
  void take(int res, std::uint32_t flags);
  void begin_request(reactor& r, std::shared_ptr<recv_stream_state> self);
  void end_request() noexcept;
  static received_buffer to_buffer(entry& e) noexcept;
  static void give_back(entry& e) noexcept;

  const int fd_;
  std::mutex mutex_;
  mode mode_ = mode::idle;
  bool fallback_next_ = false;  // the ring ran dry: the next arm is a one-shot recv
  bool over_ = false;
  bool orphaned_ = false;  // the recv_stream is gone: drop what arrives
  reactor* armed_on_ = nullptr;
  std::shared_ptr<recv_stream_state> self_while_armed_;
  std::shared_ptr<weft::detail::buffer_ring> ring_;  // the armed multishot's ring
  std::unique_ptr<std::byte[]> single_buf_;          // the armed one-shot's buffer
  std::deque<entry> queue_;
  recv_stream::next_awaitable* waiter_ = nullptr;
};

void recv_stream_state::give_back(entry& e) noexcept {
  if (e.ring) e.ring->give_back(e.bid);
  e.ring.reset();
}

received_buffer recv_stream_state::to_buffer(entry& e) noexcept {
  received_buffer b;
  b.size_ = static_cast<std::size_t>(e.res);
  if (e.ring) {
    b.data_ = e.ring->data(e.bid);
    b.bid_ = e.bid;
    b.ring_ = std::move(e.ring);
  } else {
    b.data_ = e.own.get();
    b.own_ = std::move(e.own);
  }
  return b;
}

bool recv_stream_state::suspend(recv_stream::next_awaitable& w, std::coroutine_handle<> h,
                                cancel_scope* scope) {
  if (scope != nullptr && scope->stop_requested()) {
    w.error_ = -ECANCELED;
    return false;
  }
  reactor* here = reactor::current();
  executor* ex = executor::current();
  if (here == nullptr || ex == nullptr) {
    throw_error(errc::no_runtime, "weft::io recv_stream outside weft::run");
  }
  std::shared_ptr<recv_stream_state> keep = shared_from_this();  // a CQE may end the request
  bool need_arm = false;
  {
    std::lock_guard lock(mutex_);
    if (ready_locked()) return false;
    if (waiter_ != nullptr) {
      w.error_ = -EBUSY;
      return false;
    }
    w.handle_ = h;
    w.executor_ = ex;
    waiter_ = &w;
    if (scope != nullptr) {
      w.on_stop = &recv_stream_state::stop;
      w.scope_ = scope;
      if (!scope->add_waiter(w)) {  // stopped in between: do not wait at all
        w.scope_ = nullptr;
        waiter_ = nullptr;
        w.error_ = -ECANCELED;
        return false;
      }
    }
    if (mode_ == mode::idle) {
      begin_request(*here, keep);
      need_arm = true;
    }
  }
  if (need_arm) {
    try {
      arm(*here);
    } catch (...) {
      {
        std::lock_guard lock(mutex_);
        end_request();
        keep = std::move(self_while_armed_);
        if (waiter_ == &w) waiter_ = nullptr;
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

void recv_stream_state::arm(reactor& r) {
  // Only this thread touches the request until its first CQE (which this thread's loop
  // reaps), so mode_, ring_ and single_buf_ need no lock here.
  if (mode_ == mode::multishot) {
    ring_ = r.receive_buffers();
    r.track(*this);
    try {
      r.submit(this, [&](io_uring_sqe* sqe) {
        io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = ring_->group();
      });
    } catch (...) {
      r.untrack(*this);
      throw;
    }
    return;
  }
  const std::size_t size = weft::detail::buffer_ring::default_size;
  single_buf_ = std::make_unique_for_overwrite<std::byte[]>(size);
  r.track(*this);
  try {
    r.submit(this, [&](io_uring_sqe* sqe) {
      io_uring_prep_recv(sqe, fd_, single_buf_.get(), static_cast<unsigned>(size), 0);
    });
  } catch (...) {
    r.untrack(*this);
    throw;
  }
}

void recv_stream_state::cqe(completion* c, int res, std::uint32_t flags) noexcept {
  auto* self = static_cast<recv_stream_state*>(c);
  std::shared_ptr<recv_stream_state> keep;  // dropped last, after the lock
  recv_stream::next_awaitable* wake = nullptr;
  reactor* rearm_on = nullptr;
  {
    std::lock_guard lock(self->mutex_);
    const bool final = (flags & IORING_CQE_F_MORE) == 0;
    reactor* const r = self->armed_on_;
    if (final) {
      if (r != nullptr) {
        r->untrack(*self);
        r->retract_cancel(self);
      }
      keep = std::move(self->self_while_armed_);
    }
    self->take(res, flags);
    if (final) self->end_request();
    recv_stream::next_awaitable* w = self->waiter_;
    if (w != nullptr && self->ready_locked()) {
      wake = w;
    } else if (w != nullptr && final && res == -ECANCELED) {
      w->error_ = -ECANCELED;  // the reactor is going away: the waiting next() ends
      wake = w;
    } else if (w != nullptr && final && r != nullptr) {
      // Ended with nothing to give (ENOBUFS): re-arm at once from this, the ring's thread.
      self->begin_request(*r, std::move(keep));
      rearm_on = r;
    }
    if (wake != nullptr) self->waiter_ = nullptr;
  }
  if (rearm_on != nullptr) {
    try {
      self->arm(*rearm_on);
    } catch (...) {
      std::lock_guard lock(self->mutex_);
      keep = std::move(self->self_while_armed_);
      self->end_request();
      wake = std::exchange(self->waiter_, nullptr);
      if (wake != nullptr) wake->error_ = -ENOMEM;
    }
  }
  if (wake != nullptr) wake->executor_->schedule(wake->handle_);
}

// Queues what a CQE brought (or gives its buffer straight back when nobody will read it).
void recv_stream_state::take(int res, std::uint32_t flags) {
  entry e;
  e.res = res;
  if (mode_ == mode::multishot && res > 0 && (flags & IORING_CQE_F_BUFFER) != 0) {
    e.bid = static_cast<unsigned short>(flags >> IORING_CQE_BUFFER_SHIFT);
    e.ring = ring_;
  } else if (mode_ == mode::single && res > 0) {
    e.own = std::move(single_buf_);
  }
  if (orphaned_) {
    give_back(e);
    return;
  }
  if (res == -ENOBUFS && mode_ == mode::multishot) {
    fallback_next_ = true;  // nothing to deliver: the next arm is a one-shot recv
    return;
  }
  if (res == -ECANCELED) return;  // a reactor going away; nothing was received
  if (res <= 0) over_ = true;
  try {
    queue_.push_back(std::move(e));
  } catch (...) {  // no memory for the queue: the bytes are lost, so the stream is over
    give_back(e);
    over_ = true;
  }
}

void recv_stream_state::begin_request(reactor& r, std::shared_ptr<recv_stream_state> self) {
  mode_ = fallback_next_ ? mode::single : mode::multishot;
  fallback_next_ = false;
  armed_on_ = &r;
  self_while_armed_ = std::move(self);
}

void recv_stream_state::end_request() noexcept {
  mode_ = mode::idle;
  armed_on_ = nullptr;
  ring_.reset();
  single_buf_.reset();
}

void recv_stream_state::stop(cancel_scope::waiter* w) noexcept {
  auto* aw = static_cast<recv_stream::next_awaitable*>(w);
  recv_stream_state* self = aw->state_;
  bool wake = false;
  {
    std::lock_guard lock(self->mutex_);
    if (self->waiter_ == aw) {
      self->waiter_ = nullptr;
      aw->error_ = -ECANCELED;
      wake = true;
    }
  }
  if (wake) aw->executor_->schedule(aw->handle_);
}

result<received_buffer> recv_stream_state::resume(recv_stream::next_awaitable& w) {
  if (w.scope_ != nullptr) {
    w.scope_->remove_waiter(w);  // after this, stop() is not running and will not run
    w.scope_ = nullptr;
  }
  if (w.error_ != 0) {
    throw_if_cancelled(w.error_, "recv");
    return error_from_result(w.error_, "recv");
  }
  std::lock_guard lock(mutex_);
  // Woken only with something queued (suspend() returned false, or a CQE woke it).
  entry& front = queue_.front();
  if (front.res > 0) {
    received_buffer b = to_buffer(front);
    queue_.pop_front();
    return b;
  }
  // The end or an error stays at the front: every later next() gives it again.
  if (front.res == 0) return received_buffer();
  return error_from_result(front.res, "recv");
}

void recv_stream_state::close() noexcept {
  reactor* cancel_here = nullptr;
  std::deque<entry> drop;
  {
    std::lock_guard lock(mutex_);
    orphaned_ = true;
    drop.swap(queue_);
    if (armed_on_ != nullptr) {
      if (armed_on_ == reactor::current()) {
        cancel_here = armed_on_;  // after the unlock: submitting may reap our own CQEs
      } else {
        // Another thread's ring: queued under the lock, so that the final CQE (which takes
        // the lock and retracts queued cancels) comes after it; see acceptor::close.
        try {
          armed_on_->cancel(this);
        } catch (...) {  // the request ends with its reactor
        }
      }
    }
  }
  for (entry& e : drop) give_back(e);
  if (cancel_here != nullptr) {
    try {
      cancel_here->cancel(this);
    } catch (...) {  // the request ends with the reactor
    }
  }
}

}  // namespace detail

void received_buffer::release() noexcept {
  if (ring_) ring_->give_back(bid_);
  ring_.reset();
  own_.reset();
  data_ = nullptr;
  size_ = 0;
}

received_buffer::received_buffer(received_buffer&& other) noexcept
    : ring_(std::move(other.ring_)),
      own_(std::move(other.own_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      bid_(other.bid_) {}

received_buffer& received_buffer::operator=(received_buffer&& other) noexcept {
  if (this != &other) {
    release();
    ring_ = std::move(other.ring_);
    own_ = std::move(other.own_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    bid_ = other.bid_;
  }
  return *this;
}

received_buffer::~received_buffer() {
  release();
}

recv_stream::recv_stream(int socket)
    : state_(std::make_shared<detail::recv_stream_state>(socket)) {}

recv_stream& recv_stream::operator=(recv_stream&& other) noexcept {
  if (this != &other) {
    close();
    state_ = std::move(other.state_);
  }
  return *this;
}

recv_stream::~recv_stream() {
  close();
}

void recv_stream::close() noexcept {
  if (state_) state_->close();
  state_.reset();
}

recv_stream::next_awaitable recv_stream::next() {
  if (!state_) throw std::logic_error("weft: next() on an empty recv_stream");
  return next_awaitable(state_.get());
}

bool recv_stream::next_awaitable::suspend(std::coroutine_handle<> h, cancel_scope* scope) {
  return state_->suspend(*this, h, scope);
}

result<received_buffer> recv_stream::next_awaitable::await_resume() {
  return state_->resume(*this);
}

recv_stream stream_socket::recv_stream() const {
  return io::recv_stream(fd_.get());
}

}  // namespace weft::io
