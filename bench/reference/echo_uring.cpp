// The fast baseline for weft's echo server: a minimal hand-written liburing TCP echo server.
//
//   echo_uring PORT [--recv=multishot|single] [--fixed-files] [--buffers=N]
//        (listens on 127.0.0.1:PORT; prints "listening on 127.0.0.1:PORT")
//
// One thread, one ring, a multishot accept. Each loop turn submits every queued SQE and waits
// in one io_uring_submit_and_wait, then drains all CQEs. EOF or an error closes the connection.
// Exits 0 on SIGINT/SIGTERM.
//
// --recv=multishot (the default, io_uring's best known receive idiom): one multishot recv stays
// armed per connection, taking its buffers from a provided buffer ring shared by all
// connections; each CQE names the buffer the kernel filled. The bytes are sent straight from that
// buffer, which goes back to the ring once sent. A connection has at most one send in flight;
// data that arrives meanwhile waits in its queue, in order. When the ring runs dry the kernel
// ends the multishot with -ENOBUFS: the connection waits until buffers come back, then re-arms.
// A CQE without IORING_CQE_F_MORE ends the multishot for any other reason too (re-armed).
// --recv=single: the previous loop, one recv SQE per message into a per-connection buffer.
// --fixed-files: every accepted socket is also registered in the ring's file table and the
// recv and send SQEs use the registered index (IOSQE_FIXED_FILE), which spares the kernel the
// per-operation file lookup and reference count.
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string_view>
#include <vector>

#include "echo_common.hpp"

namespace {

constexpr std::size_t buffer_size = 16 * 1024;  // --recv=single's buffer per connection
constexpr unsigned ring_entries = 1024;
unsigned max_fds = 65536;  // the registered file table, indexed by fd (at most RLIMIT_NOFILE)
// The provided buffer ring: --buffers=N buffers of 4 KiB, group 0.
unsigned pbuf_count = 256;
constexpr std::size_t pbuf_size = 4096;
constexpr unsigned short pbuf_group = 0;

enum op : std::uint64_t { op_accept = 0, op_recv = 1, op_send = 2 };

struct chunk {
  unsigned short bid;  // provided buffer id (multishot) ; unused for single
  std::size_t len;
  std::size_t sent = 0;
};

struct connection {
  std::unique_ptr<char[]> buf;  // --recv=single only
  std::deque<chunk> pending;    // received, not yet fully sent; front() is in flight
  bool sending = false;
  bool recv_armed = false;  // a multishot recv is armed (its last CQE has not come)
  bool starved = false;     // its multishot ended with -ENOBUFS: re-arm once buffers return
  bool closing = false;
};

io_uring ring;
int listen_fd = -1;
bool multishot = true;
bool fixed_files = false;
std::vector<std::unique_ptr<connection>> conns;  // indexed by fd
std::vector<int> starved;                        // fds waiting for buffers
io_uring_buf_ring* pbufs = nullptr;
char* pbuf_memory = nullptr;

std::uint64_t tag(int fd, op o) {
  return (static_cast<std::uint64_t>(fd) << 2) | o;
}

io_uring_sqe* sqe() {
  io_uring_sqe* s = io_uring_get_sqe(&ring);
  while (s == nullptr) {  // full: hand the queue to the kernel and retry
    io_uring_submit(&ring);
    s = io_uring_get_sqe(&ring);
  }
  return s;
}

void use_fd(io_uring_sqe* s) {
  if (fixed_files) s->flags |= IOSQE_FIXED_FILE;  // s->fd is the registered index (== fd)
}

void arm_accept() {
  io_uring_sqe* s = sqe();
  io_uring_prep_multishot_accept(s, listen_fd, nullptr, nullptr, 0);
  io_uring_sqe_set_data64(s, tag(listen_fd, op_accept));
}

void arm_recv(int fd) {
  connection& c = *conns[fd];
  io_uring_sqe* s = sqe();
  if (multishot) {
    io_uring_prep_recv_multishot(s, fd, nullptr, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = pbuf_group;
    c.recv_armed = true;
  } else {
    io_uring_prep_recv(s, fd, c.buf.get(), buffer_size, 0);
  }
  use_fd(s);
  io_uring_sqe_set_data64(s, tag(fd, op_recv));
}

char* chunk_data(connection& c, const chunk& k) {
  return multishot ? pbuf_memory + k.bid * pbuf_size : c.buf.get();
}

void arm_send(int fd) {
  connection& c = *conns[fd];
  chunk& k = c.pending.front();
  io_uring_sqe* s = sqe();
  io_uring_prep_send(s, fd, chunk_data(c, k) + k.sent, k.len - k.sent, MSG_NOSIGNAL);
  use_fd(s);
  io_uring_sqe_set_data64(s, tag(fd, op_send));
  c.sending = true;
}

void recycle(unsigned short bid) {
  io_uring_buf_ring_add(pbufs, pbuf_memory + bid * pbuf_size, pbuf_size, bid,
                        io_uring_buf_ring_mask(pbuf_count), 0);
  io_uring_buf_ring_advance(pbufs, 1);
}

// Frees the connection once nothing of it is in flight; until then only marks it.
void close_conn(int fd) {
  connection& c = *conns[fd];
  c.closing = true;
  if (c.recv_armed) {
    shutdown(fd, SHUT_RDWR);  // ends the multishot recv; its last CQE comes back here
    return;
  }
  if (c.sending) return;  // the send's CQE comes back here
  if (multishot) {
    for (const chunk& k : c.pending) recycle(k.bid);
  }
  if (fixed_files) {
    const int none = -1;
    io_uring_register_files_update(&ring, static_cast<unsigned>(fd), &none, 1);
  }
  conns[fd].reset();
  close(fd);
}

void on_accept(int res, std::uint32_t flags) {
  if (res >= 0) {
    const int one = 1;
    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (static_cast<unsigned>(res) >= max_fds ||
        (fixed_files &&
         io_uring_register_files_update(&ring, static_cast<unsigned>(res), &res, 1) != 1)) {
      close(res);
    } else {
      if (static_cast<std::size_t>(res) >= conns.size()) conns.resize(res + 1024);
      conns[res] = std::make_unique<connection>();
      if (!multishot) conns[res]->buf.reset(new char[buffer_size]);
      arm_recv(res);
    }
  } else if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED) {
    std::fprintf(stderr, "echo_uring: accept: %s\n", std::strerror(-res));
  }
  if (!(flags & IORING_CQE_F_MORE)) arm_accept();  // the multishot ended: re-arm
}

void on_recv(int fd, int res, std::uint32_t flags) {
  connection& c = *conns[fd];
  const bool more = multishot && (flags & IORING_CQE_F_MORE);
  if (multishot && !more) c.recv_armed = false;
  if (res > 0) {
    const auto bid = static_cast<unsigned short>(flags >> IORING_CQE_BUFFER_SHIFT);
    c.pending.push_back(chunk{bid, static_cast<std::size_t>(res)});
    if (c.closing) return close_conn(fd);
    if (!c.sending) arm_send(fd);
    if (multishot && !more) arm_recv(fd);  // ended early (e.g. a full CQ): re-arm
  } else if (res == -ENOBUFS && !c.closing) {
    c.starved = true;  // re-armed once sends return buffers (see main loop)
    starved.push_back(fd);
  } else {
    close_conn(fd);  // EOF, error, or the last CQE of a closing connection
  }
}

void on_send(int fd, int res) {
  connection& c = *conns[fd];
  c.sending = false;
  if (res < 0 || c.closing) return close_conn(fd);
  chunk& k = c.pending.front();
  k.sent += static_cast<std::size_t>(res);
  if (k.sent < k.len) return arm_send(fd);  // short send: the rest
  if (multishot) recycle(k.bid);
  c.pending.pop_front();
  if (!c.pending.empty()) {
    arm_send(fd);
  } else if (!multishot) {
    arm_recv(fd);
  }
}

void handle(const io_uring_cqe* cqe) {
  const std::uint64_t data = io_uring_cqe_get_data64(cqe);
  const int fd = static_cast<int>(data >> 2);
  switch (static_cast<op>(data & 3)) {
    case op_accept: return on_accept(cqe->res, cqe->flags);
    case op_recv: return on_recv(fd, cqe->res, cqe->flags);
    case op_send: return on_send(fd, cqe->res);
  }
}

// Connections whose multishot ran out of buffers get it back once some were returned.
void rearm_starved() {
  for (int fd : starved) {
    connection* c = conns[fd].get();
    if (c == nullptr || !c->starved) continue;
    c->starved = false;
    if (c->closing) {
      close_conn(fd);
    } else {
      arm_recv(fd);
    }
  }
  starved.clear();
}

int setup_ring() {
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (io_uring_queue_init_params(ring_entries, &ring, &p) == 0) return 0;
  p = io_uring_params{};
  p.flags = IORING_SETUP_COOP_TASKRUN;  // older kernels
  if (io_uring_queue_init_params(ring_entries, &ring, &p) == 0) return 0;
  p = io_uring_params{};
  return io_uring_queue_init_params(ring_entries, &ring, &p);
}

// The provided buffer ring: the ring of buffer descriptors (page-aligned, as the kernel wants)
// and the buffers themselves, all handed to the kernel at once.
int setup_buffers() {
  const std::size_t ring_bytes = pbuf_count * sizeof(io_uring_buf);
  void* mem = mmap(nullptr, ring_bytes + pbuf_count * pbuf_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return -errno;
  pbufs = static_cast<io_uring_buf_ring*>(mem);
  pbuf_memory = static_cast<char*>(mem) + ring_bytes;
  io_uring_buf_ring_init(pbufs);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(pbufs);
  reg.ring_entries = pbuf_count;
  reg.bgid = pbuf_group;
  if (const int r = io_uring_register_buf_ring(&ring, &reg, 0); r != 0) return r;
  for (unsigned i = 0; i < pbuf_count; ++i) {
    io_uring_buf_ring_add(pbufs, pbuf_memory + i * pbuf_size, pbuf_size,
                          static_cast<unsigned short>(i), io_uring_buf_ring_mask(pbuf_count),
                          static_cast<int>(i));
  }
  io_uring_buf_ring_advance(pbufs, static_cast<int>(pbuf_count));
  return 0;
}

bool parse_options(int argc, char** argv) {
  for (int i = 2; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--recv=multishot") {
      multishot = true;
    } else if (a == "--recv=single") {
      multishot = false;
    } else if (a == "--fixed-files") {
      fixed_files = true;
    } else if (a.starts_with("--buffers=")) {
      pbuf_count = static_cast<unsigned>(std::atoi(a.substr(10).data()));
      if (pbuf_count == 0 || pbuf_count > 32768 || (pbuf_count & (pbuf_count - 1)) != 0) {
        return false;  // a power of two the kernel accepts
      }
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !parse_options(argc, argv)) {
    std::fprintf(
        stderr, "usage: echo_uring PORT [--recv=multishot|single] [--fixed-files] [--buffers=N]\n");
    return 2;
  }
  const int port = echo_ref::parse_port("echo_uring", argv[1]);
  if (port == 0) return 2;
  echo_ref::catch_stop_signals();
  listen_fd = echo_ref::listen_loopback("echo_uring", port, 0);
  if (listen_fd < 0) return 1;
  if (const int r = setup_ring(); r != 0) {
    std::fprintf(stderr, "echo_uring: io_uring_queue_init: %s\n", std::strerror(-r));
    return 1;
  }
  if (const int r = multishot ? setup_buffers() : 0; r != 0) {
    std::fprintf(stderr, "echo_uring: buffer ring: %s\n", std::strerror(-r));
    return 1;
  }
  if (fixed_files) {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < max_fds) {
      max_fds = static_cast<unsigned>(lim.rlim_cur);
    }
    if (const int r = io_uring_register_files_sparse(&ring, max_fds); r != 0) {
      std::fprintf(stderr, "echo_uring: register files: %s\n", std::strerror(-r));
      return 1;
    }
  }
  conns.resize(4096);
  arm_accept();
  echo_ref::announce(port);

  while (!echo_ref::stop) {
    const int r = io_uring_submit_and_wait(&ring, 1);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      std::fprintf(stderr, "echo_uring: submit_and_wait: %s\n", std::strerror(-r));
      return 1;
    }
    io_uring_cqe* cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      handle(cqe);
      ++n;
    }
    io_uring_cq_advance(&ring, n);
    if (!starved.empty()) rearm_starved();
  }
  io_uring_queue_exit(&ring);
  return 0;
}
