// A load generator for echo servers, written with weft: N connections, each sending a message
// of S bytes and waiting for its echo (a closed loop), for D seconds. Every echoed byte is
// checked against what was sent.
//
//   ./echo_client --port=P [--host=127.0.0.1] [--connections=N] [--size=S] [--duration=D]
//                 [--mode=M --workers=W]
//
// The last line is machine-readable:
//   connections=N size=S messages=M messages_per_s=X p50_us=Y p99_us=Z errors=E
// Exit status 0 only when every byte matched and no connection failed (1 otherwise, 2 for bad
// arguments).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/cli.hpp>
#include <weft/weft.hpp>

namespace {

namespace io = weft::io;
using clock_type = std::chrono::steady_clock;

struct connection_stats {
  std::uint64_t messages = 0;
  std::uint64_t mismatches = 0;
  std::vector<std::uint32_t> latency_us;
  std::string error;  // empty when the connection worked to the end
};

// Message `k` on connection `c` is a window of a fixed pseudo-random pattern starting at a
// position that changes with every message, so that a stale or misrouted echo cannot pass for
// the right one; taking a window costs nothing per message, unlike generating the bytes.
constexpr std::size_t pattern_period = 4093;  // prime: consecutive windows start far apart

std::vector<std::byte> make_pattern(std::size_t size) {
  std::vector<std::byte> p(size + pattern_period);
  std::uint32_t x = 2463534242u;
  for (auto& b : p) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = std::byte(x & 0xff);
  }
  return p;
}

std::span<const std::byte> message_for(const std::vector<std::byte>& pattern, std::size_t size,
                                       std::uint64_t c, std::uint64_t k) {
  return std::span(pattern).subspan((c * 31 + k * 1009) % pattern_period, size);
}

weft::task<connection_stats> drive(io::socket_address server, std::uint64_t id, std::size_t size,
                                   clock_type::time_point deadline) {
  connection_stats stats;
  auto conn = co_await io::tcp_stream::connect(server);
  if (!conn) {
    stats.error = io::describe_connect_error(server, conn.error());
    co_return stats;
  }
  (void)conn->set_nodelay();
  const std::vector<std::byte> pattern = make_pattern(size);
  std::vector<std::byte> echoed(size);
  while (clock_type::now() < deadline) {
    const std::span<const std::byte> message = message_for(pattern, size, id, stats.messages);
    const auto start = clock_type::now();
    if (auto w = co_await conn->write_all(message); !w) {
      stats.error = w.message();
      break;
    }
    if (auto r = co_await conn->read_exact(echoed); !r) {
      stats.error = r.message();
      break;
    }
    const auto took =
        std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - start);
    stats.latency_us.push_back(
        static_cast<std::uint32_t>(std::min<std::int64_t>(took.count(), UINT32_MAX)));
    if (!std::equal(echoed.begin(), echoed.end(), message.begin())) ++stats.mismatches;
    ++stats.messages;
  }
  co_return stats;
}

weft::task<int> run_load(io::socket_address server, unsigned connections, std::size_t size,
                         double seconds) {
  const auto start = clock_type::now();
  const auto deadline = start + std::chrono::duration_cast<clock_type::duration>(
                                    std::chrono::duration<double>(seconds));
  std::vector<weft::task<connection_stats>> drivers;
  for (unsigned i = 0; i < connections; ++i) drivers.push_back(drive(server, i, size, deadline));
  auto all = co_await weft::when_all(std::move(drivers));
  const std::chrono::duration<double> wall = clock_type::now() - start;

  std::uint64_t messages = 0, mismatches = 0, errors = 0;
  std::vector<std::uint32_t> latencies;
  for (auto& s : all) {
    messages += s.messages;
    mismatches += s.mismatches;
    if (!s.error.empty()) {
      if (errors < 5) fmt::print(stderr, "echo_client: {}\n", s.error);
      ++errors;
    }
    latencies.insert(latencies.end(), s.latency_us.begin(), s.latency_us.end());
  }
  auto percentile = [&](double p) -> std::uint32_t {
    if (latencies.empty()) return 0;
    const auto k = static_cast<std::size_t>(p * static_cast<double>(latencies.size() - 1));
    std::nth_element(latencies.begin(), latencies.begin() + static_cast<std::ptrdiff_t>(k),
                     latencies.end());
    return latencies[k];
  };
  const std::uint32_t p50 = percentile(0.50), p99 = percentile(0.99);
  if (mismatches > 0) fmt::print(stderr, "echo_client: {} echoed messages differed\n", mismatches);
  fmt::print(
      "connections={} size={} messages={} messages_per_s={:.0f} p50_us={} p99_us={} errors={}\n",
      connections, size, messages, static_cast<double>(messages) / wall.count(), p50, p99,
      errors + mismatches);
  co_return (errors == 0 && mismatches == 0 && messages > 0) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"echo_client: closed-loop load for an echo server, checking every byte"};
  std::string host = "127.0.0.1";
  int port = 0;
  unsigned connections = 50;
  std::size_t size = 64;
  double seconds = 3.0;
  app.add_option("--port", port, "the server's port")->required();
  app.add_option("--host", host, "the server's numeric address")->capture_default_str();
  app.add_option("--connections", connections, "concurrent connections")->capture_default_str();
  app.add_option("--size", size, "bytes per message")->capture_default_str();
  app.add_option("--duration", seconds, "seconds of load")->capture_default_str();
  weft::run_options options;
  weft::add_run_options(app, options);  // --mode, --workers, --switch-interval, --gil
  auto fail = [&](const std::string& message) {
    fmt::print(stderr, "echo_client: {}\nusage: echo_client [OPTIONS]\n{}", message, app.help());
    return 2;
  };
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;
  if (port < 1 || port > 65535) return fail(fmt::format("--port wants 1 to 65535, not {}", port));
  if (connections < 1 || connections > 100000) return fail("--connections wants 1 to 100000");
  if (size < 1 || size > (64u << 20)) return fail("--size wants 1 byte to 64 MiB");
  if (!(seconds > 0 && seconds <= 86400)) return fail("--duration wants 0 < D <= 86400 seconds");
  auto address = io::socket_address::ip(host, static_cast<std::uint16_t>(port));
  if (!address) return fail(fmt::format("--host wants a numeric address, not '{}'", host));
  try {
    return weft::run(options, run_load(*address, connections, size, seconds));
  } catch (const std::exception& e) {
    fmt::print(stderr, "echo_client: {}\n", e.what());
    return 1;
  }
}
