// An echo server: every byte a client sends comes back, on every connection, until the client
// closes. The load generator beside it is echo_client.
//
//   ./echo_server --port=P [--host=127.0.0.1] [--mode=M --workers=N] [--drain-timeout=S]
//                 [--recv=multishot|single]
//
// Prints "listening on ADDRESS" once it accepts connections. A peer that resets, half-closes or
// vanishes ends only its own connection. When the process runs out of file descriptors, accept
// backs off (no busy loop) and resumes once fds free up. SIGINT or SIGTERM: stop accepting, let
// the connections finish for up to --drain-timeout seconds, close the rest, exit 0.
// SIGUSR1: write the task dump (every live task, what it waits on and for how long) to stderr
// and keep serving.
#include <signal.h>

#include <array>
#include <cstddef>
#include <string>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/weft.hpp>
#include "server_support.hpp"

namespace {

namespace io = weft::io;

// One connection: read what is there, write all of it back, until end of stream or an error.
// Errors (a reset, a vanished peer) end this connection only: nothing is thrown to the group.
// --recv=multishot: one multishot recv stays armed and the bytes are sent straight from the
// ring buffer the kernel filled (recv_stream); --recv=single: one recv per message into a
// buffer of the connection's own.
weft::task<> echo_multishot(io::tcp_stream conn) {
  try {
    io::recv_stream incoming = conn.recv_stream();  // destroyed before conn: declared after it
    for (;;) {
      auto chunk = co_await incoming.next();
      if (!chunk || chunk->empty()) break;
      // write() in place of write_all(): the usual single send costs no coroutine frame.
      std::span<const std::byte> rest = chunk->bytes();
      while (!rest.empty()) {
        auto sent = co_await conn.write(rest);
        if (!sent) co_return;
        rest = rest.subspan(*sent);
      }
    }
  } catch (const std::system_error& e) {
    if (e.code() != weft::errc::cancelled) fmt::print(stderr, "echo_server: {}\n", e.what());
  }
}

weft::task<> echo(io::tcp_stream conn) {
  std::array<std::byte, 16384> buffer;
  try {
    for (;;) {
      auto n = co_await conn.read(buffer);
      if (!n || *n == 0) break;
      if (!co_await conn.write_all(std::span(buffer).first(*n))) break;
    }
  } catch (const std::system_error& e) {
    if (e.code() != weft::errc::cancelled) fmt::print(stderr, "echo_server: {}\n", e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"echo_server: echoes every byte on every connection"};
  examples::server_options options;
  options.add_to(app);
  std::string recv = "multishot";
  app.add_option("--recv", recv, "how a connection receives: multishot or single")
      ->check(CLI::IsMember({"multishot", "single"}));
  if (auto status = examples::parse_or_exit(app, argc, argv, options, "echo_server")) {
    return *status;
  }
  const bool multishot = recv == "multishot";
  return examples::run_server(options, "echo_server", [multishot](io::tcp_stream c) {
    return multishot ? echo_multishot(std::move(c)) : echo(std::move(c));
  });
}
