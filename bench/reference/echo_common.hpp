// What the hand-written echo references (echo_uring.cpp, echo_epoll.cpp) share: the port
// argument, the stop signals and the listening socket on 127.0.0.1. Only the setup: each
// reference's loop stays whole in its own file, so that it can be read as the bar it is.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace echo_ref {

// Set by SIGINT/SIGTERM; the loops test it after each wait.
inline volatile std::sig_atomic_t stop = 0;

// SIGINT and SIGTERM set `stop` without SA_RESTART, so a blocking wait returns EINTR;
// SIGPIPE is ignored (sends use MSG_NOSIGNAL anyway).
inline void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = [](int) { stop = 1; };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

// The port in `arg`, or 0 after printing why it is not one.
inline int parse_port(const char* program, const char* arg) {
  const int port = std::atoi(arg);
  if (port <= 0 || port > 65535) {
    std::fprintf(stderr, "%s: bad port '%s'\n", program, arg);
    return 0;
  }
  return port;
}

// A socket listening on 127.0.0.1:port (SO_REUSEADDR, backlog 4096; `type_flags` is or-ed
// into SOCK_STREAM), or -1 after printing the error.
inline int listen_loopback(const char* program, int port, int type_flags) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | type_flags, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(fd, 4096) != 0) {
    std::fprintf(stderr, "%s: bind/listen: ", program);
    std::perror(nullptr);
    return -1;
  }
  return fd;
}

// The line bench/servers.py waits for.
inline void announce(int port) {
  std::printf("listening on 127.0.0.1:%d\n", port);
  std::fflush(stdout);
}

}  // namespace echo_ref
