// The fast baseline for weft's echo server: a minimal hand-written liburing TCP echo server.
//
//   echo_uring PORT        (listens on 127.0.0.1:PORT; prints "listening on 127.0.0.1:PORT")
//
// One thread, one ring. A multishot accept; per connection one buffer and exactly one operation
// in flight: a recv, then one send of the bytes received (a short send resubmits the rest),
// then the next recv. Each loop turn submits every queued SQE and waits in one
// io_uring_submit_and_wait, then drains all CQEs. EOF or an error closes the connection.
// Exits 0 on SIGINT/SIGTERM.
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace {

constexpr std::size_t buffer_size = 16 * 1024;
constexpr unsigned ring_entries = 1024;
enum op : std::uint64_t { op_accept = 0, op_recv = 1, op_send = 2 };

struct connection {
  std::unique_ptr<char[]> buf{new char[buffer_size]};
  std::size_t len = 0;   // bytes received, to echo
  std::size_t sent = 0;  // of them, already sent
};

io_uring ring;
int listen_fd = -1;
std::vector<std::unique_ptr<connection>> conns;  // indexed by fd
volatile std::sig_atomic_t stop = 0;

void on_signal(int) {
  stop = 1;
}

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

void arm_accept() {
  io_uring_sqe* s = sqe();
  io_uring_prep_multishot_accept(s, listen_fd, nullptr, nullptr, 0);
  io_uring_sqe_set_data64(s, tag(listen_fd, op_accept));
}

void arm_recv(int fd) {
  io_uring_sqe* s = sqe();
  io_uring_prep_recv(s, fd, conns[fd]->buf.get(), buffer_size, 0);
  io_uring_sqe_set_data64(s, tag(fd, op_recv));
}

void arm_send(int fd) {
  connection& c = *conns[fd];
  io_uring_sqe* s = sqe();
  io_uring_prep_send(s, fd, c.buf.get() + c.sent, c.len - c.sent, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(s, tag(fd, op_send));
}

void close_conn(int fd) {
  conns[fd].reset();
  close(fd);
}

void handle(const io_uring_cqe* cqe) {
  const std::uint64_t data = io_uring_cqe_get_data64(cqe);
  const int fd = static_cast<int>(data >> 2);
  const int res = cqe->res;
  switch (static_cast<op>(data & 3)) {
    case op_accept:
      if (res >= 0) {
        const int one = 1;
        setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (static_cast<std::size_t>(res) >= conns.size()) conns.resize(res + 1024);
        conns[res] = std::make_unique<connection>();
        arm_recv(res);
      } else if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED) {
        std::fprintf(stderr, "echo_uring: accept: %s\n", std::strerror(-res));
      }
      if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept();  // the multishot ended: re-arm
      break;
    case op_recv:
      if (res <= 0) {
        close_conn(fd);  // EOF or error
      } else {
        conns[fd]->len = static_cast<std::size_t>(res);
        conns[fd]->sent = 0;
        arm_send(fd);
      }
      break;
    case op_send: {
      if (res < 0) {
        close_conn(fd);
        break;
      }
      connection& c = *conns[fd];
      c.sent += static_cast<std::size_t>(res);
      if (c.sent < c.len) {
        arm_send(fd);  // short send: the rest
      } else {
        arm_recv(fd);
      }
      break;
    }
  }
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

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: echo_uring PORT\n");
    return 2;
  }
  const int port = std::atoi(argv[1]);
  if (port <= 0 || port > 65535) {
    std::fprintf(stderr, "echo_uring: bad port '%s'\n", argv[1]);
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;  // no SA_RESTART: the wait returns -EINTR
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listen_fd, 4096) != 0) {
    std::perror("echo_uring: bind/listen");
    return 1;
  }
  if (const int r = setup_ring(); r != 0) {
    std::fprintf(stderr, "echo_uring: io_uring_queue_init: %s\n", std::strerror(-r));
    return 1;
  }
  conns.resize(4096);
  arm_accept();
  std::printf("listening on 127.0.0.1:%d\n", port);
  std::fflush(stdout);

  while (!stop) {
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
  }
  io_uring_queue_exit(&ring);
  return 0;
}
