// What the example servers share: the command line of a server, the accept loop that backs off
// when the process runs out of file descriptors, the shutdown on SIGINT/SIGTERM, and the task
// dump on SIGUSR1.
// Public weft API only, like every example.
#pragma once

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/cli.hpp>
#include <weft/io/fault_injection.hpp>
#include <weft/weft.hpp>

namespace examples {

/// The options every example server takes.
struct server_options {
  std::string host = "127.0.0.1";
  int port = 8080;
  double drain_seconds = 5.0;  // after SIGINT/SIGTERM: how long requests in flight may take

  weft::run_options run;  // --mode, --workers, ... (weft::add_run_options)
  weft::io::socket_address address;

  void add_to(CLI::App& app) {
    app.add_option("--port", port, "TCP port to listen on (0: any free port)")
        ->capture_default_str();
    app.add_option("--host", host, "numeric address to bind (127.0.0.1, ::1, 0.0.0.0)")
        ->capture_default_str();
    weft::add_run_options(app, run);
    app.add_option("--drain-timeout", drain_seconds,
                   "seconds that work in flight may take after SIGINT/SIGTERM")
        ->capture_default_str();
  }

  /// The problem with the options, or nullopt when they are usable.
  std::optional<std::string> validate() {
    if (port < 0 || port > 65535) return fmt::format("--port wants 0 to 65535, not {}", port);
    auto a = weft::io::socket_address::ip(host, static_cast<std::uint16_t>(port));
    if (!a) return fmt::format("--host wants a numeric IPv4 or IPv6 address, not '{}'", host);
    address = *a;
    if (!(drain_seconds >= 0 && drain_seconds <= 3600)) {
      return "--drain-timeout wants 0 to 3600 seconds";
    }
    return std::nullopt;
  }
};

/// True for accept errors that mean "out of a resource, try again later" rather than "broken".
inline bool is_resource_exhaustion(std::error_code e) {
  return e == std::errc::too_many_files_open || e == std::errc::too_many_files_open_in_system ||
         e == std::errc::no_buffer_space || e == std::errc::not_enough_memory ||
         e == std::errc::resource_unavailable_try_again;
}

/// Accepts connections until the listener is closed, handing each to `serve` (which must not
/// throw, apart from cancellation). When the process runs out of fds, it logs once per episode
/// and backs off (10 ms doubling to 1 s) instead of spinning, so it recovers once fds free up.
template <class Serve>
weft::task<> accept_loop(weft::io::tcp_listener& listener, weft::task_group& connections,
                         const char* program, Serve serve) {
  using namespace std::chrono_literals;
  std::chrono::milliseconds backoff = 0ms;
  // At most one line a second about exhaustion: a server at its fd limit under load would
  // otherwise alternate "out of fds" and "accepting again" hundreds of times a second.
  weft::clock::time_point last_log{};
  std::uint64_t episodes = 0;
  for (;;) {
    auto conn = co_await listener.accept();
    if (conn) {
      backoff = 0ms;
      (void)conn->set_nodelay();  // replies go out at once, not after the peer's ACK
      connections.spawn(serve(std::move(*conn)));
      continue;
    }
    const std::error_code e = conn.error();
    if (e == std::errc::bad_file_descriptor || e == std::errc::invalid_argument) co_return;
    if (is_resource_exhaustion(e)) {
      if (backoff == 0ms) {
        ++episodes;
        if (weft::clock::now() - last_log >= 1s) {
          fmt::print(stderr, "{}: {} (connections wait in the backlog; backing off){}\n", program,
                     conn.message(),
                     episodes > 1 ? fmt::format(" [{} times since the last report]", episodes)
                                  : std::string());
          last_log = weft::clock::now();
          episodes = 0;
        }
      }
      backoff = backoff == 0ms ? 10ms : std::min<std::chrono::milliseconds>(backoff * 2, 1000ms);
      co_await weft::sleep_for(backoff);
      continue;
    }
    // ECONNABORTED and friends: one connection failed before we took it; the others are fine.
    fmt::print(stderr, "{}: {}\n", program, conn.message());
  }
}

/// Serves until SIGINT or SIGTERM: prints "listening on ADDRESS", runs `accept_loop` over
/// `listener`, then on the signal stops accepting, calls `on_stop` (a server closes its idle
/// connections there), lets the connections finish for up to `drain` (a second signal cuts
/// that short), cancels the rest, and returns.
template <class Serve, class OnStop = void (*)()>
weft::task<> serve_until_signal(
    weft::io::tcp_listener listener, weft::io::signal_set& signals,
    std::chrono::duration<double> drain, const char* program, Serve serve, OnStop on_stop = [] {}) {
  weft::task_group connections;
  auto acceptor = weft::spawn(accept_loop(listener, connections, program, std::move(serve)));
  // Printed from inside the runtime: once this line is out, the ring exists and accepts run
  // (a script that waits for it never talks to a server that is about to fail its set-up).
  fmt::print("listening on {}\n", listener.local_address().value().to_string());
  std::fflush(stdout);
  auto sig = co_await signals.wait();
  // A failed read of the signalfd (ENOMEM) is not a signal: keep waiting rather than stop the
  // server. Only a broken signalfd (EBADF, EINVAL) ends the wait without one.
  while (!sig && sig.error() != std::errc::bad_file_descriptor &&
         sig.error() != std::errc::invalid_argument) {
    fmt::print(stderr, "{}: waiting for signals: {}; retrying\n", program, sig.message());
    co_await weft::sleep_for(std::chrono::milliseconds(10));
    sig = co_await signals.wait();
  }
  fmt::print(stderr, "{}: {}, stopping: no new connections, draining the others\n", program,
             sig ? (*sig == SIGINT ? "SIGINT" : "SIGTERM") : sig.message());
  listener.close();  // the accept loop ends with EBADF
  co_await acceptor;
  on_stop();
  // The drain ends when the connections are done, when `drain` has passed, or at a second
  // SIGINT/SIGTERM (an impatient operator), whichever comes first.
  bool drained = true;
  bool forced = false;
  try {
    auto first = co_await weft::when_any(
        weft::invoke([&]() -> weft::task<> {
          co_await weft::with_timeout(
              drain, weft::invoke([&]() -> weft::task<> { co_await connections.join(); }));
        }),
        weft::invoke([&]() -> weft::task<> { (void)co_await signals.wait(); }));
    forced = first.index() == 1;
    drained = !forced;
  } catch (const std::system_error& e) {
    if (e.code() != weft::errc::timed_out) throw;
    drained = false;
  }
  if (!drained) {
    if (forced) {  // the drain's loser was cancelled, and its group with it
      fmt::print(stderr, "{}: second signal: closing the connections still open\n", program);
    } else {
      fmt::print(stderr, "{}: {} connection(s) still open after the drain timeout: closing them\n",
                 program, connections.running());
    }
    connections.cancel();
    try {
      co_await connections.join();
    } catch (const std::system_error&) {  // the cancelled ones
    }
  }
}

/// Writes the task dump (one line per live task: what it waits on, for how long) to stderr at
/// each SIGUSR1, until cancelled: `kill -USR1 <pid>` shows where a server's tasks are stuck.
inline weft::task<> dump_tasks_on_signal(weft::io::signal_set& signals) {
  for (;;) {
    auto sig = co_await signals.wait();
    if (!sig) {
      if (sig.error() == std::errc::bad_file_descriptor) co_return;
      co_await weft::sleep_for(std::chrono::milliseconds(10));  // ENOMEM: try again
      continue;
    }
    weft::dump_tasks(stderr);
  }
}

/// Runs `body` with dump_tasks_on_signal beside it.
inline weft::task<> with_task_dump(weft::io::signal_set& dump_signals, weft::task<> body) {
  auto dumper = weft::spawn(dump_tasks_on_signal(dump_signals), {.name = "SIGUSR1 dump"});
  co_await std::move(body);
  dumper.cancel();
  try {
    co_await dumper;
  } catch (const std::system_error&) {  // cancelled, as asked
  }
}

/// run_server without the fault report.
template <class Serve, class OnStop>
int run_server_body(const server_options& options, const char* program, Serve serve,
                    OnStop on_stop) {
  try {
    weft::io::signal_set signals{SIGINT, SIGTERM};
    weft::io::signal_set dump_signals{SIGUSR1};
    auto listener = weft::io::tcp_listener::bind(options.address);
    if (!listener) {
      fmt::print(stderr, "{}: {} {}: {}\n", program, listener.full_error().operation,
                 options.address.to_string(), listener.error().message());
      return 1;
    }
    weft::run(options.run,
              with_task_dump(dump_signals, serve_until_signal(
                                               std::move(*listener), signals,
                                               std::chrono::duration<double>(options.drain_seconds),
                                               program, std::move(serve), std::move(on_stop))));
    // The server has stopped: a SIGINT/SIGTERM still to come (an operator pressing Ctrl-C
    // again) must not kill the process with a signal status once `signals` unblocks them.
    std::signal(SIGINT, SIG_IGN);
    std::signal(SIGTERM, SIG_IGN);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", program, e.what());
    return 1;
  }
}

/// A server's `main` after its options are parsed: blocks SIGINT/SIGTERM for a signalfd (before
/// any thread exists, so every thread inherits the mask), binds, and serves on the executor the
/// options chose until a signal (see serve_until_signal). Returns the exit status: 0 after a
/// clean shutdown, 1 with one line on stderr when binding or the runtime's set-up fails.
template <class Serve, class OnStop = void (*)()>
int run_server(
    const server_options& options, const char* program, Serve serve, OnStop on_stop = [] {}) {
  // Under fault injection (a test build run with WEFT_FAULTS), the exit also reports what the
  // injector did and what was left over: tasks, operations in flight, fds (none should be).
  const bool faults =
      weft::io::testing::fault_injection_built() && std::getenv("WEFT_FAULTS") != nullptr;
  const std::size_t fds_at_start = faults ? weft::io::testing::open_fd_count() : 0;
  const int status = run_server_body(options, program, std::move(serve), std::move(on_stop));
  if (faults) {
    fmt::print(stderr, "{} fds_start={} fds_end={} exit={}\n",
               weft::io::testing::describe(weft::io::testing::fault_totals()), fds_at_start,
               weft::io::testing::open_fd_count(), status);
  }
  return status;
}

/// Parses the command line, reporting errors as every example does: usage on stderr, exit 2.
/// Returns the exit status to use, or nullopt to go on.
inline std::optional<int> parse_or_exit(CLI::App& app, int argc, char** argv,
                                        server_options& options, const char* program) {
  if (auto status = weft::parse_command_line(app, argc, argv)) return status;
  if (auto problem = options.validate()) {
    fmt::print(stderr, "{}: {}\nusage: {} [OPTIONS]\n{}", program, *problem, program, app.help());
    return 2;
  }
  return std::nullopt;
}

}  // namespace examples
