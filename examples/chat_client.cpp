// A client for chat_server: what you type goes to the server, what the server sends is printed.
//
//   ./chat_client --port=P [--host=localhost] [--nick=NAME] [--mode=M --workers=N]
//
// Connects by name (weft::io::tcp_stream::connect tries each address of the name in turn), sends
// "/nick NAME" first when --nick is given, then reads standard input and the connection at the
// same time: every line typed is sent, every line received is printed on stdout as it comes.
// Two reader tasks turn stdin and the socket into channels of lines (weft::io::buffered_reader),
// and the main task selects over the two channels with weft::when_any, which never loses a line
// (a receive that loses the race gives its line back).
//
// End: when stdin ends, the client shuts its sending side down and prints what the server still
// sends until it closes the connection (chat_server then says goodbye to the room); when the
// server closes first, the client stops reading stdin. Exit status: 0 after either end, 1 when the
// name cannot be resolved or the connection fails or breaks (one line on stderr naming the
// cause), 2 for a bad command line (with usage on stderr).
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/cli.hpp>
#include <weft/weft.hpp>

namespace {

namespace io = weft::io;

// Reads the lines of `stream` into `lines`, then closes it (at the end, or on an error, which it
// reports). A line longer than the reader's limit is reported and skipped.
template <class Stream>
weft::task<> pump_lines(Stream& stream, weft::channel<std::string>& lines, const char* what) {
  io::buffered_reader reader(stream);
  for (;;) {
    io::result<std::optional<std::string>> line = co_await reader.read_line();
    if (!line && line.error() == std::errc::message_size) {
      fmt::print(stderr, "chat_client: {}: a line longer than {} bytes, skipped\n", what,
                 reader.max_line());
      continue;
    }
    if (!line) {
      fmt::print(stderr, "chat_client: {}: {}\n", what, line.full_error().message());
      break;
    }
    if (!*line) break;
    co_await lines.send(std::move(**line));
  }
  lines.close();
}

weft::task<bool> send_line(io::buffered_writer<io::tcp_stream>& out, const std::string& line) {
  auto written = co_await out.write(line + "\n");
  if (written) written = co_await out.flush();
  if (!written) fmt::print(stderr, "chat_client: send: {}\n", written.full_error().message());
  co_return static_cast<bool>(written);
}

weft::task<int> chat(std::string host, std::uint16_t port, std::string nick) {
  io::result<io::tcp_stream> server = co_await io::tcp_stream::connect(host, port);
  if (!server) {
    fmt::print(stderr, "chat_client: cannot connect to {} port {}: {}\n", host, port,
               server.full_error().message());
    co_return 1;
  }
  io::pipe_reader input{io::fd(::dup(STDIN_FILENO))};  // a copy: stdin itself stays open
  weft::channel<std::string> typed(16), received(16);
  auto from_user = weft::spawn(pump_lines(input, typed, "stdin"));
  auto from_server = weft::spawn(pump_lines(*server, received, "connection"));
  io::buffered_writer out(*server);
  bool ok = nick.empty() || co_await send_line(out, "/nick " + nick);
  bool typing = true;
  while (ok) {
    std::variant<std::optional<std::string>, std::optional<std::string>> got;
    if (typing) {
      got = co_await weft::when_any(typed.recv(), received.recv());
    } else {
      got.emplace<1>(co_await received.recv());
    }
    if (got.index() == 1) {  // from the server
      auto& line = std::get<1>(got);
      if (!line) break;  // it closed the connection
      fmt::print("{}\n", *line);
      std::fflush(stdout);
    } else if (auto& line = std::get<0>(got)) {  // typed
      ok = co_await send_line(out, *line);
    } else {  // stdin ended: say so, and print the rest until the server closes
      typing = false;
      io::result<void> shut = co_await server->shutdown(SHUT_WR);
      if (!shut) fmt::print(stderr, "chat_client: {}\n", shut.full_error().message());
    }
  }
  from_user.cancel();  // still waiting for stdin when the server closed first
  received.close();    // lets a reader blocked on a full channel end
  try {
    co_await from_user;
  } catch (const std::system_error&) {  // cancelled: expected
  }
  from_server.cancel();
  try {
    co_await from_server;
  } catch (const std::system_error&) {
  }
  co_return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"chat_client: talk to chat_server from the terminal"};
  std::string host = "localhost";
  int port = 0;
  std::string nick;
  app.add_option("--port", port, "the server's port")->required()->check(CLI::Range(1, 65535));
  app.add_option("--host", host, "the server's name or numeric address")->capture_default_str();
  app.add_option("--nick", nick, "send /nick NAME first");
  weft::run_options options;
  weft::add_run_options(app, options);  // --mode, --workers, --switch-interval, --gil
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;
  try {
    return weft::run(options, chat(host, static_cast<std::uint16_t>(port), nick));
  } catch (const std::exception& e) {
    fmt::print(stderr, "chat_client: {}\n", e.what());
    return 1;
  }
}
