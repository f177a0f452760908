// weft: sockets on io_uring: TCP and Unix streams and listeners, UDP.
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <weft/io/address.hpp>
#include <weft/io/fd.hpp>
#include <weft/io/file.hpp>
#include <weft/io/operation.hpp>
#include <weft/io/result.hpp>
#include <weft/task.hpp>

namespace weft::io {

class recv_stream;

/// A connected byte stream over a socket (TCP or Unix). Owns its fd.
///
/// Reads and writes are io_uring operations: awaitables giving `result<T>`. The buffers belong
/// to the caller and must stay valid until the co_await returns; a cancelled operation still
/// waits for its own completion first (see `basic_operation`). Errors name the operation
/// ("recv", "send", "shutdown"...). Thread-safety: one reader and one writer may use a stream
/// concurrently (from tasks of one executor, or of several); two concurrent reads (or writes)
/// interleave their bytes unpredictably, as with the system calls.
class stream_socket {
 protected:
  /// The socket, for the derived streams' own operations (users have `native_handle()`).
  io::fd fd_;

  /// One recv; `poll_first` waits for readiness before trying (IORING_RECVSEND_POLL_FIRST).
  [[nodiscard]] auto receive(std::span<std::byte> buffer, bool poll_first) const noexcept {
    return count_operation("recv", [fd = fd_.get(), buffer, poll_first](io_uring_sqe* sqe) {
      io_uring_prep_recv(sqe, fd, buffer.data(), detail::io_length(buffer.size()), 0);
      if (poll_first) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    });
  }

 public:
  stream_socket() noexcept = default;
  /// Takes ownership of a connected socket.
  explicit stream_socket(io::fd socket) noexcept : fd_(std::move(socket)) {}

  /// Receives up to `buffer.size()` bytes; gives the count, 0 when the peer has closed its side.
  /// Tuned for request/response traffic, where a read usually waits for the peer: the kernel
  /// waits for readiness before trying (IORING_RECVSEND_POLL_FIRST), which saved ~14% of an
  /// HTTP keep-alive server's CPU per request. `read_exact` polls first for its first read only;
  /// `read_available` always tries at once.
  [[nodiscard]] auto read(std::span<std::byte> buffer) const noexcept {
    return receive(buffer, true);
  }

  /// Receives exactly `buffer.size()` bytes. Errors: `errc::end_of_stream` ("recv") when the
  /// peer closes first (the bytes that came are in the buffer), or the socket's error.
  task<result<void>> read_exact(std::span<std::byte> buffer) const;

  /// Sends up to `buffer.size()` bytes (MSG_NOSIGNAL); gives the count sent.
  [[nodiscard]] auto write(std::span<const std::byte> buffer) const noexcept {
    return count_operation("send", [fd = fd_.get(), buffer](io_uring_sqe* sqe) {
      io_uring_prep_send(sqe, fd, buffer.data(), detail::io_length(buffer.size()), MSG_NOSIGNAL);
    });
  }

  /// Sends all of `buffer`, resubmitting after short sends. On error, some prefix may have
  /// been sent. Errors: the socket's (EPIPE, ECONNRESET...), named "send".
  task<result<void>> write_all(std::span<const std::byte> buffer) const;

  /// Sends `header` (if any) then `count` bytes of `f` from `offset`, without copying the file
  /// through user memory: sendfile(2), as nginx does. io_uring has no sendfile and its splice
  /// runs on kernel worker threads, so this tries the non-blocking system call first and waits
  /// for POLLOUT on the ring only when the socket's buffer is full. Gives the file bytes sent.
  /// Errors: "sendfile", "send", "poll", "fcntl"; `errc::end_of_stream` ("sendfile") when the
  /// file is shorter than `offset + count`. While it runs the socket is in non-blocking mode, so
  /// no other operation may be started on this socket concurrently (a read would fail with
  /// EAGAIN); it is restored before the call returns, also on cancellation. sendfile reads the
  /// file on the calling thread: a file that is not in the page cache stalls the executor for
  /// the disk read (fine for a static server's hot files; read_at is the alternative).
  task<result<std::uint64_t>> send_file(const file& f, std::uint64_t offset, std::uint64_t count,
                                        std::span<const std::byte> header = {}) const;

  /// A receiver that keeps one multishot recv armed on this socket, with buffers from the
  /// reactor's provided buffer ring: one submission for many messages, and no buffer of the
  /// caller's tied up while the peer is silent. See `recv_stream`. Nothing is submitted before
  /// its first `next()`. The recv_stream must be destroyed before this socket is closed.
  [[nodiscard]] io::recv_stream recv_stream() const;

  /// Like read, but tries to receive at once: for data that is likely there already.
  [[nodiscard]] auto read_available(std::span<std::byte> buffer) const noexcept {
    return receive(buffer, false);
  }

  /// Shuts down one or both directions (SHUT_WR sends FIN: the peer reads end of stream).
  [[nodiscard]] auto shutdown(int how = SHUT_WR) const noexcept {
    return void_operation("shutdown", [fd = fd_.get(), how](io_uring_sqe* sqe) {
      io_uring_prep_shutdown(sqe, fd, how);
    });
  }

  /// The peer's address (getpeername; synchronous, never blocks). Errors: "getpeername".
  result<socket_address> peer_address() const;
  /// Our own address (getsockname; synchronous, never blocks). Errors: "getsockname".
  result<socket_address> local_address() const;

  /// Closes through the ring and reports the error; see `fd::close`.
  [[nodiscard]] auto close() noexcept { return fd_.close(); }

  /// The socket, for options weft does not wrap. Still owned by this object.
  int native_handle() const noexcept { return fd_.get(); }
  /// True while the object owns a socket (false when empty, moved from or closed).
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }
};

namespace detail {
class recv_stream_state;
}  // namespace detail

/// Bytes a `recv_stream` received: a view of a buffer that belongs to the reactor's provided
/// buffer ring, handed back to the kernel when this object dies (so keep it only as long as the
/// bytes are needed: while it lives, the kernel has one buffer fewer for every connection of
/// that thread). Empty at the end of the stream. Move-only. Thread-safety: may be destroyed on
/// any thread.
class received_buffer {
 public:
  /// An empty buffer (the end of the stream).
  received_buffer() noexcept = default;
  /// Takes over `other`'s buffer; `other` becomes empty.
  received_buffer(received_buffer&& other) noexcept;
  /// Gives back the current buffer, then takes over `other`'s.
  received_buffer& operator=(received_buffer&& other) noexcept;
  received_buffer(const received_buffer&) = delete;
  received_buffer& operator=(const received_buffer&) = delete;
  /// Hands the buffer back to the kernel.
  ~received_buffer();

  /// The bytes received.
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  /// How many bytes were received (0: the end of the stream).
  std::size_t size() const noexcept { return size_; }
  /// True at the end of the stream.
  bool empty() const noexcept { return size_ == 0; }

 private:
  friend class detail::recv_stream_state;
  void release() noexcept;

  std::shared_ptr<weft::detail::buffer_ring> ring_;  // null for a buffer not from a ring
  std::unique_ptr<std::byte[]> own_;                 // the fallback receive's buffer
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  unsigned short bid_ = 0;
};

/// Receives a socket's bytes through one multishot recv (io_uring's IORING_RECV_MULTISHOT) that
/// stays armed across messages, the kernel picking a buffer from the reactor's provided buffer
/// ring for each one: the loop submits nothing per message. Made by `stream_socket::recv_stream`.
///
/// `co_await rs.next()` gives the next `received_buffer` in order: bytes that arrived while
/// nobody waited are queued (each holding its ring buffer). It gives an empty buffer at the end
/// of the stream (and again after), or the socket's error ("recv"), after which the stream is
/// over. When the ring has no free buffer (IORING_CQE_F_MORE cleared with ENOBUFS), the next
/// message goes through a one-shot recv into a buffer of its own, and the one after re-arms the
/// multishot; a multishot the kernel ends for another reason is re-armed at the next `next()`.
/// A `next()` whose task is stopped throws `errc::cancelled` and loses nothing: the request stays
/// armed and what arrives waits for the next call. Destroying the recv_stream cancels the
/// request; its last CQE frees the state. Errors: `errc::no_runtime` outside weft::run, EBUSY
/// ("recv") for a second `next()` while one waits, ENOMEM/EPERM ("io_uring_register_buf_ring")
/// when the reactor cannot have a buffer ring. Thread-safety: one task calls `next()` at a
/// time; the CQEs may arrive on another thread (the ring that armed the request), which is safe.
class recv_stream {
 public:
  /// The awaitable of `next()`.
  class next_awaitable : private cancel_scope::waiter {
   public:
    /// @cond
    explicit next_awaitable(detail::recv_stream_state* s) noexcept : state_(s) {}
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) {
      return suspend(h, weft::detail::scope_of(h));
    }
    result<received_buffer> await_resume();
    /// @endcond

   private:
    friend class detail::recv_stream_state;
    bool suspend(std::coroutine_handle<> h, cancel_scope* scope);

    detail::recv_stream_state* state_;
    cancel_scope* scope_ = nullptr;
    std::coroutine_handle<> handle_;
    executor* executor_ = nullptr;
    int error_ = 0;  // a negated errno decided before any CQE: -ECANCELED, -EBUSY
  };

  /// An empty recv_stream (`next()` throws std::logic_error).
  recv_stream() noexcept = default;
  /// Receives from `socket` (not owned: it must outlive this object). Allocates the state.
  explicit recv_stream(int socket);
  /// Takes over `other`'s request; `other` becomes empty. Not while a `next()` waits.
  recv_stream(recv_stream&& other) noexcept = default;
  /// Cancels this request, then takes over `other`'s. Not while a `next()` waits.
  recv_stream& operator=(recv_stream&& other) noexcept;
  recv_stream(const recv_stream&) = delete;
  recv_stream& operator=(const recv_stream&) = delete;
  /// Cancels the request, if armed; queued buffers go back to the ring.
  ~recv_stream();

  /// The next bytes received, in order; see the class comment.
  [[nodiscard]] next_awaitable next();

 private:
  void close() noexcept;
  std::shared_ptr<detail::recv_stream_state> state_;
};

/// A TCP connection.
class tcp_stream : public stream_socket {
 public:
  /// An empty stream, or one that takes ownership of a connected TCP socket.
  using stream_socket::stream_socket;

  /// Connects to `address` (IPv4 or IPv6). Errors: "socket", or "connect" with the kernel's
  /// cause (ECONNREFUSED, ENETUNREACH...); `describe_connect_error` formats the message with
  /// the address ("connect 127.0.0.1:9: Connection refused").
  static task<result<tcp_stream>> connect(socket_address address);

  /// Resolves `host` (`weft::io::resolve`: a name or a numeric address) and connects to its
  /// addresses in turn, as the overload below: `co_await tcp_stream::connect("localhost", 80)`.
  /// Errors: resolve's ("resolve": an unknown name...), or the last address's connect error.
  /// Defined in resolve.cpp.
  static task<result<tcp_stream>> connect(std::string host, std::uint16_t port);

  /// Tries `addresses` in order, one at a time, and gives the first connection made (so a
  /// name whose IPv6 address refuses still connects over IPv4). Errors: the last address's
  /// ("connect"); `EINVAL` ("connect") for an empty list.
  static task<result<tcp_stream>> connect(std::vector<socket_address> addresses);

  /// Sets TCP_NODELAY (send small writes at once rather than coalescing them).
  result<void> set_nodelay(bool on = true) const;
};

/// A Unix-domain stream connection.
class unix_stream : public stream_socket {
 public:
  /// An empty stream, or one that takes ownership of a connected Unix-domain socket.
  using stream_socket::stream_socket;

  /// Connects to a Unix-domain address (`socket_address::unix_path`).
  static task<result<unix_stream>> connect(socket_address address);

  /// A connected pair (socketpair(2)), for tests and for talking to a child process.
  static result<std::pair<unix_stream, unix_stream>> pair();
};

/// "connect ADDRESS: cause", the message a program should print for a failed connect.
std::string describe_connect_error(const socket_address& address, std::error_code code);

/// How a listener is set up.
struct listen_options {
  int backlog = 1024;             ///< listen(2) backlog (the kernel caps it at somaxconn)
  bool reuse_address = true;      ///< SO_REUSEADDR: rebind at once after a restart (TCP)
  bool reuse_port = false;        ///< SO_REUSEPORT: several listeners share the port (TCP)
  bool v6_only = false;           ///< IPV6_V6ONLY for an IPv6 address (false: also accepts IPv4)
  std::size_t accept_queue = 64;  ///< accepted connections held before accept() is called
};

namespace detail {

/// The state of one listener's multishot accept. Shared: the listener, each waiting accept and
/// the armed request each hold a reference, so closing the listener while the kernel still
/// holds the request is safe. Thread-safety: internally locked; the request is armed on the
/// ring of the thread that first needs it and completes there.
class acceptor;

/// The awaitable behind accept(): gives the accepted fd or an error.
class accept_awaitable : private cancel_scope::waiter {
 public:
  explicit accept_awaitable(std::shared_ptr<acceptor> owner) noexcept : owner_(std::move(owner)) {}
  /// Movable before it is awaited (with_timeout moves it into a task of its own).
  accept_awaitable(accept_awaitable&& other) noexcept
      : cancel_scope::waiter(), owner_(std::move(other.owner_)) {}

  bool await_ready();
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    return suspend(h, weft::detail::scope_of(h));
  }
  result<io::fd> await_resume();

 private:
  friend class acceptor;
  bool suspend(std::coroutine_handle<> h, cancel_scope* scope);
  static void stop(cancel_scope::waiter* w) noexcept;

  std::shared_ptr<acceptor> owner_;
  accept_awaitable* next_waiter_ = nullptr;
  accept_awaitable* prev_waiter_ = nullptr;
  std::coroutine_handle<> handle_;
  weft::executor* executor_ = nullptr;
  cancel_scope* scope_ = nullptr;
  int result_ = 0;
  bool ready_ = false;
  bool cancelled_ = false;
};

/// The socket setup shared by TCP and Unix listeners.
result<std::shared_ptr<acceptor>> listen_on(const socket_address& address,
                                            const listen_options& options);
void close_acceptor(acceptor& a) noexcept;
int acceptor_fd(const acceptor& a) noexcept;

}  // namespace detail

/// A listening socket whose connections come from one multishot accept request
/// (IORING_ACCEPT_MULTISHOT): one SQE serves every connection until an error ends it.
///
/// `accept()` gives the next connection. Connections that arrive before anyone calls accept()
/// wait in a small queue (`listen_options::accept_queue`); beyond it the request is paused and
/// connections wait in the kernel's backlog. Errors: the kernel's, named "accept": EMFILE and
/// ENFILE when the process or system is out of fds (back off, close something, and call accept
/// again: the next call re-arms), ECONNABORTED... and EBADF once the listener is closed.
/// Thread-safety: accept() may be awaited by several tasks, from any threads; close and
/// destruction by the owner only.
template <class Stream>
class basic_listener {
 public:
  basic_listener() noexcept = default;
  /// Takes over `other`'s socket; `other` becomes empty.
  basic_listener(basic_listener&&) noexcept = default;
  /// Closes this listener (see `close()`), then takes over `other`'s socket.
  basic_listener& operator=(basic_listener&& other) noexcept {
    if (this != &other) {
      close();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  ~basic_listener() { close(); }

  /// Creates the socket (SOCK_CLOEXEC), binds `address` and listens. Synchronous: none of
  /// these calls blocks. Errors: "socket", "setsockopt", "bind" (EADDRINUSE, EACCES...),
  /// "listen".
  static result<basic_listener> bind(const socket_address& address, listen_options options = {}) {
    auto state = detail::listen_on(address, options);
    if (!state) return state.full_error();
    basic_listener l;
    l.state_ = std::move(state.value());
    return l;
  }

  /// Awaitable giving `result<Stream>`: the next accepted connection (O_CLOEXEC).
  /// Cancellation: throws `errc::cancelled`; a connection accepted meanwhile stays queued.
  [[nodiscard]] auto accept() const { return awaitable(state_); }

  /// The bound address (the port the kernel chose when binding port 0).
  result<socket_address> local_address() const {
    socket_address a;
    socklen_t length = socket_address::capacity();
    if (::getsockname(native_handle(), a.data(), &length) != 0) {
      return io_error{std::error_code(errno, std::generic_category()), "getsockname"};
    }
    a.set_size(length);
    return a;
  }

  /// Stops listening: cancels the accept request, closes the socket and the queued
  /// connections, and ends waiting accepts with EBADF (so does any later accept()); the
  /// socket itself closes once the kernel has given the request back. Idempotent.
  void close() noexcept {
    if (state_) detail::close_acceptor(*state_);
    state_.reset();
  }

  /// The listening socket, for options weft does not wrap (-1 when empty or closed).
  int native_handle() const noexcept { return state_ ? detail::acceptor_fd(*state_) : -1; }
  /// True until the listener is closed (false when empty or moved from).
  explicit operator bool() const noexcept { return static_cast<bool>(state_); }

 private:
  class awaitable : public detail::accept_awaitable {
   public:
    explicit awaitable(const std::shared_ptr<detail::acceptor>& s) : accept_awaitable(s) {}
    result<Stream> await_resume() {
      result<io::fd> r = accept_awaitable::await_resume();
      if (!r) return r.full_error();
      return Stream(std::move(r.value()));
    }
  };

  std::shared_ptr<detail::acceptor> state_;
};

/// A TCP listener (IPv4 or IPv6); see basic_listener.
using tcp_listener = basic_listener<tcp_stream>;
/// A Unix-domain stream listener; see basic_listener. The socket file is not removed on close.
using unix_listener = basic_listener<unix_stream>;

/// A UDP socket. Owns its fd. Thread-safety as for stream_socket.
class udp_socket {
 public:
  udp_socket() noexcept = default;
  /// Takes ownership of a UDP socket.
  explicit udp_socket(io::fd socket) noexcept : fd_(std::move(socket)) {}

  /// A socket bound to `address` (port 0: the kernel picks one). Errors: "socket", "bind".
  static result<udp_socket> bind(const socket_address& address);

  /// One datagram from the peer: the count received (a longer datagram is truncated) and the
  /// sender's address.
  struct datagram {
    std::size_t size = 0;  ///< bytes received into the buffer
    socket_address from;   ///< the sender's address
  };

  /// Awaitable giving `result<std::size_t>`: sends `buffer` as one datagram to `to`.
  [[nodiscard]] auto send_to(std::span<const std::byte> buffer, const socket_address& to) const {
    return basic_operation<msg_spec<false>>(msg_spec<false>(fd_.get(), buffer, to));
  }

  /// Awaitable giving `result<datagram>`: receives one datagram into `buffer`.
  [[nodiscard]] auto recv_from(std::span<std::byte> buffer) const {
    return basic_operation<msg_spec<true>>(
        msg_spec<true>(fd_.get(), std::span<const std::byte>(buffer.data(), buffer.size()), {}));
  }

  /// The bound address (the port the kernel chose when binding port 0). Synchronous.
  /// Errors: "getsockname".
  result<socket_address> local_address() const;
  /// The socket, for options weft does not wrap. Still owned by this object.
  int native_handle() const noexcept { return fd_.get(); }
  /// Closes through the ring and reports the error; see `fd::close`.
  [[nodiscard]] auto close() noexcept { return fd_.close(); }

 private:
  // The msghdr, iovec and address live in the operation (in the awaiting frame), so the kernel
  // reads and writes them where they stay put until the completion.
  template <bool Receive>
  struct msg_spec {
    msg_spec(int fd, std::span<const std::byte> buffer, const socket_address& peer) noexcept
        : fd(fd), buffer(buffer), peer(peer) {}
    msg_spec(msg_spec&& o) noexcept : fd(o.fd), buffer(o.buffer), peer(o.peer) {}

    void prepare(io_uring_sqe* sqe) noexcept {
      iov.iov_base = const_cast<std::byte*>(buffer.data());
      iov.iov_len = buffer.size();
      msg = {};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_name = peer.data();
      if constexpr (Receive) {
        msg.msg_namelen = socket_address::capacity();
        io_uring_prep_recvmsg(sqe, fd, &msg, 0);
      } else {
        msg.msg_namelen = peer.size();
        io_uring_prep_sendmsg(sqe, fd, &msg, MSG_NOSIGNAL);
      }
    }
    auto finish(int r) {
      constexpr const char* name = Receive ? "recvmsg" : "sendmsg";
      detail::throw_if_cancelled(r, name);
      if constexpr (Receive) {
        if (r < 0) return result<datagram>(error_from_result(r, name));
        peer.set_size(msg.msg_namelen);
        return result<datagram>(datagram{static_cast<std::size_t>(r), peer});
      } else {
        if (r < 0) return result<std::size_t>(error_from_result(r, name));
        return result<std::size_t>(static_cast<std::size_t>(r));
      }
    }

    int fd;
    std::span<const std::byte> buffer;
    socket_address peer;
    msghdr msg{};
    iovec iov{};
  };

  io::fd fd_;
};

/// Waits until `fd` is ready for `events` (POLLIN, POLLOUT...): an awaitable giving
/// `result<unsigned>`, the events that are ready (POLLERR and POLLHUP included). Errors: "poll".
[[nodiscard]] inline auto poll(int fd, unsigned events) noexcept {
  struct spec {
    int fd;
    unsigned events;
    void prepare(io_uring_sqe* sqe) noexcept { io_uring_prep_poll_add(sqe, fd, events); }
    result<unsigned> finish(int r) const {
      detail::throw_if_cancelled(r, "poll");
      if (r < 0) return error_from_result(r, "poll");
      return static_cast<unsigned>(r);
    }
  };
  return basic_operation<spec>(spec{fd, events});
}

/// Views any contiguous object as bytes (a string, a vector, an array) for read/write calls.
template <class Range>
std::span<const std::byte> as_bytes(const Range& r) noexcept {
  return std::as_bytes(std::span(std::data(r), std::size(r)));
}
/// Views any contiguous object as writable bytes (a string, a vector, an array) for reads.
template <class Range>
std::span<std::byte> as_writable_bytes(Range& r) noexcept {
  return std::as_writable_bytes(std::span(std::data(r), std::size(r)));
}

}  // namespace weft::io
