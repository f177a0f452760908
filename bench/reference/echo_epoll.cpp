// A reference for weft's echo server: a single-threaded, level-triggered epoll echo server.
//
//   echo_epoll PORT        (listens on 127.0.0.1:PORT; prints "listening on 127.0.0.1:PORT")
//
// Nonblocking sockets. On EPOLLIN: one read, then at once one write of what was read. If the
// write is short, the rest stays pending, the connection waits for EPOLLOUT instead of EPOLLIN
// (no more reading until the pending bytes are out), and switches back when they are.
// EOF or an error closes the connection. Exits 0 on SIGINT/SIGTERM.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
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

#include "echo_common.hpp"

namespace {

constexpr std::size_t buffer_size = 16 * 1024;

struct connection {
  std::unique_ptr<char[]> buf{new char[buffer_size]};
  std::size_t len = 0;   // bytes read and not yet all written
  std::size_t sent = 0;  // of them, already written
};

int epfd = -1;
std::vector<std::unique_ptr<connection>> conns;  // indexed by fd
void watch(int fd, std::uint32_t events, int how) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(epfd, how, fd, &ev);
}

void close_conn(int fd) {
  conns[fd].reset();
  close(fd);  // also drops it from the epoll set
}

// Writes what is pending. Returns false when the connection failed and was closed.
bool flush(int fd, bool waiting_for_out) {
  connection& c = *conns[fd];
  while (c.sent < c.len) {
    const ssize_t n = send(fd, c.buf.get() + c.sent, c.len - c.sent, MSG_NOSIGNAL);
    if (n > 0) {
      c.sent += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!waiting_for_out) watch(fd, EPOLLOUT, EPOLL_CTL_MOD);
      return true;
    } else {
      close_conn(fd);
      return false;
    }
  }
  c.len = c.sent = 0;
  if (waiting_for_out) watch(fd, EPOLLIN, EPOLL_CTL_MOD);
  return true;
}

void on_readable(int fd) {
  connection& c = *conns[fd];
  const ssize_t n = recv(fd, c.buf.get(), buffer_size, 0);
  if (n > 0) {
    c.len = static_cast<std::size_t>(n);
    c.sent = 0;
    flush(fd, false);
  } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    close_conn(fd);
  }
}

void on_acceptable(int listen_fd) {
  for (;;) {
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) std::perror("echo_epoll: accept4");
      return;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (static_cast<std::size_t>(fd) >= conns.size()) conns.resize(fd + 1024);
    conns[fd] = std::make_unique<connection>();
    watch(fd, EPOLLIN, EPOLL_CTL_ADD);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: echo_epoll PORT\n");
    return 2;
  }
  const int port = echo_ref::parse_port("echo_epoll", argv[1]);
  if (port == 0) return 2;
  echo_ref::catch_stop_signals();
  const int listen_fd = echo_ref::listen_loopback("echo_epoll", port, SOCK_NONBLOCK);
  if (listen_fd < 0) return 1;
  epfd = epoll_create1(EPOLL_CLOEXEC);
  watch(listen_fd, EPOLLIN, EPOLL_CTL_ADD);
  conns.resize(4096);
  echo_ref::announce(port);

  std::vector<epoll_event> events(1024);
  while (!echo_ref::stop) {
    const int n = epoll_wait(epfd, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::perror("echo_epoll: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      const std::uint32_t ev = events[i].events;
      if (fd == listen_fd) {
        on_acceptable(listen_fd);
      } else if (!conns[fd]) {
        continue;  // closed earlier in this batch
      } else if (conns[fd]->sent < conns[fd]->len) {
        if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) flush(fd, true);  // an error shows in send
      } else if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        on_readable(fd);  // a hang-up or error shows as EOF or an error here
      }
    }
  }
  close(epfd);
  return 0;
}
