// The contrast benchmark's measured program: one workload, run one way, measured once.
//
//   build/bench/contrast --workload=countdown|sleep|echo|mixed --mode=M [--workers=N]
//                        [--gil=interval|ticks:N] [--switch-interval=5ms] [size options]
//
// Workloads and the modes each one takes:
//   countdown  the seed's `while n > 0: n -= 1` over --count, split into N equal parts.
//              sequential (one loop, no runtime) | cooperative | single-lock | multi-thread
//              (N tasks on the executor) | threads (N plain std::threads) | processes (a
//              weft::pool::process_pool of N workers, one part each).
//   sleep      --tasks tasks that each sleep --sleep-ms once, all at the same time.
//              cooperative | single-lock | multi-thread (tasks) | threads (one std::thread per
//              task) | processes (N workers, each running its share of the tasks at once on a
//              cooperative executor of its own, as a multiprocessing program would run asyncio
//              in each worker: a blocking sleep per job would take tasks * sleep / N).
//   echo       an echo server and --connections clients, each doing --round-trips round trips
//              of --size bytes, all at the same time, over 127.0.0.1.
//              sequential (one thread does everything, one connection after the other) |
//              cooperative | single-lock | multi-thread (server and clients are tasks) |
//              threads (a thread per client and per server connection) | processes (the
//              server in the parent, the clients spread over N workers, each cooperative).
//   mixed      a CPU-bound countdown of --count and an echo server on one executor, while a
//              latency probe (a plain thread outside the executor) does back-to-back round
//              trips until the countdown ends: what the CPU-bound task does to I/O latency
//              (the convoy effect Beazley showed for the GIL).
//              idle (the server alone, for --idle-ms: the latency baseline) | cooperative |
//              single-lock | multi-thread (N executor threads, one CPU task) | threads (the
//              countdown and the server on plain threads) | processes (the countdown in a pool
//              of N workers, the server on the parent's cooperative executor).
//
// Every mode runs the same countdown loop, which calls weft::check() on each iteration. The
// wall time runs from before the executor, threads or pool are created to after they are gone.
// The last line on stdout is machine-readable (bench/contrast.py reads it):
//   workload=W mode=M workers=N wall_s= cpu_s= peak_rss_kib= [extras]
// cpu_s is user+system time of this process and of its reaped children (the pool's workers)
// over the same interval. peak_rss_kib is this process's peak resident set (VmHWM) plus, for
// processes, each worker's peak as the worker reported it with its last job. Extras: single-lock
// `switches forced_switches lock_wait_s`; sleep `tasks created ideal_s` (created < tasks when the
// system refused threads); echo `round_trips`; mixed `rtt_p50_us rtt_p99_us rtt_max_us round_trips
// countdown_s`.
// Exit status: 0 when the workload ran and checked out, 1 when it failed (the reason on stderr),
// 2 on bad arguments.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/cli.hpp>
#include <weft/weft.hpp>

namespace {

namespace io = weft::io;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

// ---- shared pieces

// The seed's countdown. The empty asm keeps the compiler from folding the loop into a constant;
// noinline keeps one copy of the machine code for every mode.
[[gnu::noinline]] void countdown(std::uint64_t n) {
  while (n > 0) {
    n -= 1;
    asm volatile("" : "+r"(n));
    weft::check();
  }
}

std::vector<std::uint64_t> split(std::uint64_t total, unsigned parts) {
  std::vector<std::uint64_t> shares;
  for (unsigned i = 0; i < parts; ++i) shares.push_back(total / parts + (i < total % parts));
  return shares;
}

// This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: Linux carries that
// over execve, so a program started by a large driver would report the driver's peak.
long own_peak_rss_kib() {
  std::FILE* status = std::fopen("/proc/self/status", "re");
  if (status == nullptr) return 0;
  char line[256];
  long kib = 0;
  while (std::fgets(line, sizeof line, status) != nullptr) {
    if (std::sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
  }
  std::fclose(status);
  return kib;
}

double seconds(const timeval& t) {
  return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6;
}

// User+system CPU of this process and of the children it has reaped.
double cpu_seconds() {
  rusage self{}, children{};
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &children);
  return seconds(self.ru_utime) + seconds(self.ru_stime) + seconds(children.ru_utime) +
         seconds(children.ru_stime);
}

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// What a pool worker says with each job's result: who it is, its peak memory so far, and how
// much of the job's work checked out.
struct worker_report {
  std::int64_t pid = 0;
  std::int64_t peak_rss_kib = 0;
  std::int64_t done = 0;
};

worker_report report_from_here(std::int64_t done) {
  return {::getpid(), own_peak_rss_kib(), done};
}

// The workers' memory: the last (largest) peak each worker reported, summed over workers.
long workers_peak_kib(const std::vector<worker_report>& reports) {
  std::map<std::int64_t, std::int64_t> peak;
  for (const auto& r : reports) peak[r.pid] = std::max(peak[r.pid], r.peak_rss_kib);
  long sum = 0;
  for (const auto& [pid, kib] : peak) sum += kib;
  return sum;
}

// A job for the pool's workers: one share of a workload.
struct share {
  std::uint64_t count = 0;    // countdown: iterations; sleep: tasks; echo: connections
  std::int64_t sleep_ms = 0;  // sleep
  std::uint16_t port = 0;     // echo: the parent's server
  std::int64_t round_trips = 0;
  std::int64_t size = 0;
};

// ---- echo: one server connection and one client, as tasks

weft::task<> echo_connection(io::tcp_stream conn) {
  std::vector<std::byte> buffer(16384);
  for (;;) {
    auto n = co_await conn.read(buffer);
    if (!n || *n == 0) break;
    if (!co_await conn.write_all(std::span(buffer).first(*n))) break;
  }
}

// Accepts exactly `connections` connections and serves each until its client closes.
weft::task<> echo_server(const io::tcp_listener& listener, std::uint64_t connections) {
  std::vector<weft::join_handle<void>> served;
  served.reserve(connections);
  for (std::uint64_t i = 0; i < connections; ++i) {
    auto conn = co_await listener.accept();
    if (!conn) throw std::system_error(conn.error(), "accept");
    served.push_back(weft::spawn(echo_connection(std::move(*conn))));
  }
  for (auto& s : served) co_await s;
}

// Message k of client c: bytes that differ between clients and between messages, so a
// misrouted or stale echo cannot pass for the right one.
void fill_message(std::vector<std::byte>& message, std::uint64_t client, std::int64_t k) {
  for (std::size_t i = 0; i < message.size(); ++i) {
    message[i] = std::byte((client * 131 + static_cast<std::uint64_t>(k) * 17 + i) & 0xff);
  }
}

// Connects, does `round_trips` round trips checking every byte, closes. Gives the round trips
// that checked out; throws on a failed connect, read or write.
weft::task<std::int64_t> echo_client(io::socket_address server, std::uint64_t id,
                                     std::int64_t round_trips, std::size_t size) {
  auto conn = co_await io::tcp_stream::connect(server);
  if (!conn) throw std::runtime_error(io::describe_connect_error(server, conn.error()));
  (void)conn->set_nodelay();
  std::vector<std::byte> message(size), echoed(size);
  std::int64_t good = 0;
  for (std::int64_t k = 0; k < round_trips; ++k) {
    fill_message(message, id, k);
    if (auto w = co_await conn->write_all(message); !w) throw std::runtime_error(w.message());
    if (auto r = co_await conn->read_exact(echoed); !r) throw std::runtime_error(r.message());
    if (echoed == message) ++good;
  }
  co_return good;
}

// Runs `clients` echo clients at once against `server`; gives the round trips that checked out.
weft::task<std::int64_t> echo_clients(io::socket_address server, std::uint64_t first_id,
                                      std::uint64_t clients, std::int64_t round_trips,
                                      std::size_t size) {
  std::vector<weft::join_handle<std::int64_t>> running;
  running.reserve(clients);
  for (std::uint64_t i = 0; i < clients; ++i) {
    running.push_back(weft::spawn(echo_client(server, first_id + i, round_trips, size)));
  }
  std::int64_t good = 0;
  std::exception_ptr first_error;
  for (auto& c : running) {
    try {
      good += co_await c;
    } catch (...) {
      if (!first_error) first_error = std::current_exception();
    }
  }
  if (first_error) std::rethrow_exception(first_error);
  co_return good;
}

// Waits for a server task to end. After an error elsewhere (`error` set) the server is
// cancelled first, since its clients may never come, and the error is rethrown.
weft::task<> finish_server(weft::join_handle<void>& server, std::exception_ptr error) {
  if (!error) {
    co_await server;
    co_return;
  }
  server.cancel();
  try {
    co_await server;
  } catch (...) {
    // The first error is the one worth reporting.
  }
  std::rethrow_exception(error);
}

io::tcp_listener listen_loopback() {
  auto listener = io::tcp_listener::bind(io::socket_address::loopback_v4(0),
                                         io::listen_options{.backlog = 4096});
  if (!listener) throw std::runtime_error("bind 127.0.0.1:0: " + listener.message());
  return std::move(*listener);
}

std::uint16_t port_of(const io::tcp_listener& listener) {
  auto address = listener.local_address();
  if (!address) throw std::runtime_error(address.message());
  return address->port();
}

// ---- blocking sockets, for the sequential and threads modes

// A socket from the system call, owned; throws when the call failed.
io::fd owned_socket(int raw) {
  if (raw < 0) throw_errno("socket");
  return io::fd(raw);
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

io::fd blocking_listener(std::uint16_t& port) {
  io::fd s = owned_socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = loopback(0);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw_errno("bind");
  if (::listen(s.get(), 4096) != 0) throw_errno("listen");
  socklen_t len = sizeof a;
  if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw_errno("getsockname");
  port = ntohs(a.sin_port);
  return s;
}

io::fd blocking_connect(std::uint16_t port) {
  io::fd s = owned_socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int one = 1;
  ::setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a = loopback(port);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw_errno("connect");
  return s;
}

io::fd blocking_accept(int listener) {
  const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) throw_errno("accept");
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return io::fd(fd);
}

void send_all(int fd, const std::byte* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("send");
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// Reads exactly `size` bytes; false at end of stream before the first byte.
bool recv_exact(int fd, std::byte* data, std::size_t size) {
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::recv(fd, data + got, size - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("recv");
    }
    if (n == 0) {
      if (got == 0) return false;
      throw std::runtime_error("recv: the peer closed in the middle of a message");
    }
    got += static_cast<std::size_t>(n);
  }
  return true;
}

// Echoes `size`-byte messages on a blocking socket until the peer closes.
void blocking_echo(const io::fd& conn, std::size_t size) {
  std::vector<std::byte> buffer(size);
  while (recv_exact(conn.get(), buffer.data(), size)) send_all(conn.get(), buffer.data(), size);
}

std::int64_t blocking_client(std::uint16_t port, std::uint64_t id, std::int64_t round_trips,
                             std::size_t size) {
  io::fd conn = blocking_connect(port);
  std::vector<std::byte> message(size), echoed(size);
  std::int64_t good = 0;
  for (std::int64_t k = 0; k < round_trips; ++k) {
    fill_message(message, id, k);
    send_all(conn.get(), message.data(), size);
    if (!recv_exact(conn.get(), echoed.data(), size))
      throw std::runtime_error("recv: end of stream");
    if (echoed == message) ++good;
  }
  return good;
}

// Starts threads with `make(i)` for i < n; joins them all (also when a later start fails) and
// rethrows the first error, a refused thread creation included.
template <class Make>
void run_threads(std::uint64_t n, Make make) {
  std::vector<std::thread> threads;
  threads.reserve(n);
  std::exception_ptr error;
  try {
    for (std::uint64_t i = 0; i < n; ++i) threads.push_back(make(i));
  } catch (...) {
    error = std::current_exception();
  }
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

// ---- the settings and the outcome of one run

struct settings {
  std::string workload = "countdown";
  std::string mode = "sequential";
  unsigned workers = 2;
  std::uint64_t count = 300'000'000;
  std::uint64_t tasks = 10'000;
  std::int64_t sleep_ms = 100;
  std::uint64_t connections = 1'000;
  std::int64_t round_trips = 10;
  std::size_t size = 64;
  std::int64_t idle_ms = 300;
  weft::run_options run;  // the executor modes' options (mode, workers, gil, switch interval)
};

struct outcome {
  std::string extras;  // workload-specific key=value pairs, each with a leading space
  long workers_peak_kib = 0;
  unsigned threads = 0;  // how many threads or workers the way used (reported as workers=)
};

bool is_executor_mode(const std::string& m) {
  return m == "cooperative" || m == "single-lock" || m == "multi-thread";
}

std::string lock_extras(const weft::run_report& report) {
  if (report.mode != weft::mode::single_lock) return "";
  const auto& s = report.single_lock;
  return fmt::format(" switches={} forced_switches={} lock_wait_s={:.6f}", s.switches,
                     s.forced_switches, std::chrono::duration<double>(s.lock_wait).count());
}

// Runs `main` on the executor mode the settings name; the outcome gets the lock's counters
// (single-lock) and the executor's thread count.
template <class T>
T on_executor(const settings& s, weft::task<T> main, outcome& o) {
  weft::run_report report;
  weft::run_options options = s.run;
  options.report = &report;
  auto record = [&] {
    o.extras += lock_extras(report);
    o.threads = report.workers;
  };
  if constexpr (std::is_void_v<T>) {
    weft::run(options, std::move(main));
    record();
  } else {
    T value = weft::run(options, std::move(main));
    record();
    return value;
  }
}

weft::task<std::vector<worker_report>> map_on_pool(weft::pool::process_pool& pool,
                                                   worker_report (*fn)(share),
                                                   std::vector<share> shares) {
  auto reports = co_await pool.map(fn, shares, 1);
  co_await pool.shutdown();
  co_return reports;
}

// Runs one job per share on a pool of s.workers spawned worker processes (one job each), and
// checks that what the workers did adds up to `expected`.
outcome on_pool(const settings& s, worker_report (*fn)(share), std::vector<share> jobs,
                std::uint64_t expected) {
  outcome o;
  std::vector<worker_report> reports;
  {
    weft::pool::process_pool pool(s.workers, weft::pool::start_method::spawn);
    reports = weft::run(weft::run_options{}, map_on_pool(pool, fn, std::move(jobs)));
  }
  std::uint64_t total = 0;
  for (const auto& r : reports) total += static_cast<std::uint64_t>(r.done);
  if (total != expected) {
    throw std::runtime_error(fmt::format("the workers did {} of {}", total, expected));
  }
  o.workers_peak_kib = workers_peak_kib(reports);
  o.threads = s.workers;
  return o;
}

// ---- countdown

weft::task<> countdown_task(std::uint64_t n) {
  countdown(n);
  co_return;
}

weft::task<> countdown_on_executor(std::vector<std::uint64_t> shares) {
  std::vector<weft::join_handle<void>> parts;
  for (auto n : shares) parts.push_back(weft::spawn(countdown_task(n)));
  for (auto& p : parts) co_await p;
}

worker_report countdown_part(share s) {
  countdown(s.count);
  return report_from_here(static_cast<std::int64_t>(s.count));
}
WEFT_PROCESS_FUNCTION(countdown_part);

outcome run_countdown(const settings& s) {
  outcome o;
  const auto shares = split(s.count, s.workers);
  if (s.mode == "sequential") {
    countdown(s.count);
    o.threads = 1;
  } else if (s.mode == "threads") {
    run_threads(shares.size(), [&](std::uint64_t i) { return std::thread(countdown, shares[i]); });
    o.threads = s.workers;
  } else if (s.mode == "processes") {
    std::vector<share> jobs;
    for (auto n : shares) jobs.push_back(share{.count = n});
    o = on_pool(s, countdown_part, std::move(jobs), s.count);
  } else {
    on_executor(s, countdown_on_executor(shares), o);
  }
  return o;
}

// ---- sleep

weft::task<> sleeper(std::chrono::milliseconds d) {
  co_await weft::sleep_for(d);
}

weft::task<std::int64_t> sleep_all(std::uint64_t tasks, std::chrono::milliseconds d) {
  std::vector<weft::join_handle<void>> handles;
  handles.reserve(tasks);
  for (std::uint64_t i = 0; i < tasks; ++i) handles.push_back(weft::spawn(sleeper(d)));
  for (auto& h : handles) co_await h;
  co_return static_cast<std::int64_t>(tasks);
}

worker_report sleep_share(share s) {
  const auto done =
      weft::run(weft::run_options{}, sleep_all(s.count, std::chrono::milliseconds(s.sleep_ms)));
  return report_from_here(done);
}
WEFT_PROCESS_FUNCTION(sleep_share);

outcome run_sleep(const settings& s) {
  outcome o;
  const std::chrono::milliseconds d(s.sleep_ms);
  std::uint64_t created = s.tasks;
  if (s.mode == "threads") {
    // One thread per task. When the system refuses a thread, the ones created still run and
    // the refusal is reported (created < tasks), not hidden.
    std::vector<std::thread> threads;
    threads.reserve(s.tasks);
    std::string refusal;
    for (std::uint64_t i = 0; i < s.tasks; ++i) {
      try {
        threads.emplace_back([d] { std::this_thread::sleep_for(d); });
      } catch (const std::system_error& e) {
        refusal = e.what();
        break;
      }
    }
    created = threads.size();
    for (auto& t : threads) t.join();
    if (!refusal.empty()) {
      fmt::print(stderr, "contrast: created {} of {} threads, then: {}\n", created, s.tasks,
                 refusal);
    }
    o.threads = static_cast<unsigned>(created);
  } else if (s.mode == "processes") {
    std::vector<share> jobs;
    for (auto n : split(s.tasks, s.workers)) {
      jobs.push_back(share{.count = n, .sleep_ms = s.sleep_ms});
    }
    o = on_pool(s, sleep_share, std::move(jobs), s.tasks);
  } else {
    on_executor(s, sleep_all(s.tasks, d), o);
  }
  o.extras += fmt::format(" tasks={} created={} ideal_s={:.6f}", s.tasks, created,
                          static_cast<double>(s.sleep_ms) / 1e3);
  return o;
}

// ---- echo

weft::task<std::int64_t> echo_on_executor(std::uint64_t connections, std::int64_t round_trips,
                                          std::size_t size) {
  io::tcp_listener listener = listen_loopback();
  const auto server_address = io::socket_address::loopback_v4(port_of(listener));
  auto server = weft::spawn(echo_server(listener, connections));
  std::int64_t good = 0;
  std::exception_ptr error;
  try {
    good = co_await echo_clients(server_address, 0, connections, round_trips, size);
  } catch (...) {
    error = std::current_exception();
  }
  // A client that never connected would leave the server waiting forever: stop it.
  co_await finish_server(server, error);
  co_return good;
}

worker_report echo_share(share s) {
  const auto good = weft::run(
      weft::run_options{}, echo_clients(io::socket_address::loopback_v4(s.port), s.count * 7919,
                                        s.count, s.round_trips, static_cast<std::size_t>(s.size)));
  return report_from_here(good);
}
WEFT_PROCESS_FUNCTION(echo_share);

weft::task<std::vector<worker_report>> echo_with_pool(weft::pool::process_pool& pool,
                                                      const settings& s) {
  io::tcp_listener listener = listen_loopback();
  const auto port = port_of(listener);
  auto server = weft::spawn(echo_server(listener, s.connections));
  std::vector<share> jobs;
  for (auto n : split(s.connections, s.workers)) {
    jobs.push_back(share{.count = n,
                         .port = port,
                         .round_trips = s.round_trips,
                         .size = static_cast<std::int64_t>(s.size)});
  }
  std::vector<worker_report> reports;
  std::exception_ptr error;
  try {
    reports = co_await pool.map(echo_share, jobs, 1);
  } catch (...) {
    error = std::current_exception();
  }
  co_await finish_server(server, error);
  co_await pool.shutdown();
  co_return reports;
}

outcome run_echo(const settings& s) {
  outcome o;
  std::int64_t good = 0;
  if (s.mode == "sequential") {
    // One thread plays both sides: loopback buffers hold a small message, so a blocking send
    // on one end never waits for the read on the other.
    std::uint16_t port = 0;
    io::fd listener = blocking_listener(port);
    std::vector<std::byte> message(s.size), echoed(s.size);
    for (std::uint64_t c = 0; c < s.connections; ++c) {
      io::fd client = blocking_connect(port);
      io::fd served = blocking_accept(listener.get());
      for (std::int64_t k = 0; k < s.round_trips; ++k) {
        fill_message(message, c, k);
        send_all(client.get(), message.data(), s.size);
        if (!recv_exact(served.get(), echoed.data(), s.size)) throw std::runtime_error("recv: eof");
        send_all(served.get(), echoed.data(), s.size);
        if (!recv_exact(client.get(), echoed.data(), s.size)) throw std::runtime_error("recv: eof");
        if (echoed == message) ++good;
      }
    }
    o.threads = 1;
  } else if (s.mode == "threads") {
    std::uint16_t port = 0;
    io::fd listener = blocking_listener(port);
    std::atomic<std::int64_t> total{0};
    std::exception_ptr server_error;
    std::thread server([&] {
      try {
        run_threads(s.connections, [&](std::uint64_t) {
          return std::thread([conn = blocking_accept(listener.get()), size = s.size]() mutable {
            try {
              blocking_echo(conn, size);
            } catch (const std::exception&) {
              // The client's side reports the failure.
            }
          });
        });
      } catch (...) {
        server_error = std::current_exception();
      }
    });
    std::exception_ptr client_error;
    try {
      run_threads(s.connections, [&](std::uint64_t id) {
        return std::thread([&, id] {
          try {
            total += blocking_client(port, id, s.round_trips, s.size);
          } catch (const std::exception& e) {
            fmt::print(stderr, "contrast: client {}: {}\n", id, e.what());
          }
        });
      });
    } catch (...) {
      client_error = std::current_exception();
    }
    if (client_error) ::shutdown(listener.get(), SHUT_RDWR);  // ends the server's accept loop
    server.join();
    if (client_error) std::rethrow_exception(client_error);
    if (server_error) std::rethrow_exception(server_error);
    good = total.load();
    o.threads = static_cast<unsigned>(2 * s.connections + 1);
  } else if (s.mode == "processes") {
    std::vector<worker_report> reports;
    {
      weft::pool::process_pool pool(s.workers, weft::pool::start_method::spawn);
      reports = weft::run(weft::run_options{}, echo_with_pool(pool, s));
    }
    for (const auto& r : reports) good += r.done;
    o.workers_peak_kib = workers_peak_kib(reports);
    o.threads = s.workers;
  } else {
    good = on_executor(s, echo_on_executor(s.connections, s.round_trips, s.size), o);
  }
  const auto expected = static_cast<std::int64_t>(s.connections) * s.round_trips;
  if (good != expected) {
    throw std::runtime_error(fmt::format("{} of {} round trips came back right", good, expected));
  }
  o.extras += fmt::format(" round_trips={}", good);
  return o;
}

// ---- mixed: a CPU-bound task beside a server, and a probe that measures the server's latency

// The probe: back-to-back round trips on one connection, from a plain thread, until told to
// stop. It records when each round trip started and how long it took.
class latency_probe {
 public:
  latency_probe(std::uint16_t port, std::size_t size) : size_(size) {
    thread_ = std::thread([this, port] { run(port); });
  }
  ~latency_probe() { stop_and_join(); }

  bool ready() const { return ready_.load(std::memory_order_acquire); }
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  void stop() { stop_.store(true, std::memory_order_release); }
  void stop_and_join() {
    stop();
    if (thread_.joinable()) thread_.join();
  }
  const std::string& error() const { return error_; }

  struct sample {
    steady::time_point start;
    steady::duration took;
  };
  // After stop_and_join only.
  const std::vector<sample>& samples() const { return samples_; }

 private:
  void run(std::uint16_t port) {
    try {
      io::fd conn = blocking_connect(port);
      std::vector<std::byte> message(size_), echoed(size_);
      for (std::int64_t k = 0; !stop_.load(std::memory_order_acquire); ++k) {
        fill_message(message, 1, k);
        const auto start = steady::now();
        send_all(conn.get(), message.data(), size_);
        if (!recv_exact(conn.get(), echoed.data(), size_)) throw std::runtime_error("recv: eof");
        if (echoed != message) throw std::runtime_error("the echo differed from the message");
        samples_.push_back({start, steady::now() - start});
        ready_.store(true, std::memory_order_release);
      }
    } catch (const std::exception& e) {
      error_ = e.what();
      failed_.store(true, std::memory_order_release);
    }
  }

  std::size_t size_;
  std::atomic<bool> stop_{false}, ready_{false}, failed_{false};
  std::vector<sample> samples_;
  std::string error_;
  std::thread thread_;
};

struct cpu_window {
  steady::time_point start, end;
  double countdown_s = 0;
};

// The summary of the round trips that overlapped the window [start, end].
std::string latency_extras(const latency_probe& probe, const cpu_window& w) {
  std::vector<double> us;
  for (const auto& s : probe.samples()) {
    if (s.start + s.took >= w.start && s.start <= w.end) {
      us.push_back(std::chrono::duration<double, std::micro>(s.took).count());
    }
  }
  if (us.empty()) throw std::runtime_error("the probe completed no round trip");
  std::sort(us.begin(), us.end());
  // Nearest rank: the smallest sample with at least p of them at or below it. (Rounding
  // p * (n - 1) down would make the p99 of two samples the smaller one, hiding a round trip
  // stuck behind the whole countdown.)
  auto at = [&](double p) {
    const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(us.size())));
    return us[std::clamp<std::size_t>(rank, 1, us.size()) - 1];
  };
  return fmt::format(
      " rtt_p50_us={:.1f} rtt_p99_us={:.1f} rtt_max_us={:.1f} round_trips={} "
      "countdown_s={:.6f}",
      at(0.50), at(0.99), us.back(), us.size(), w.countdown_s);
}

weft::task<> timed_countdown(std::uint64_t n, cpu_window& w) {
  const auto start = steady::now();
  countdown(n);
  w.countdown_s = std::chrono::duration<double>(steady::now() - start).count();
  co_return;
}

worker_report countdown_in_worker(share s) {
  countdown(s.count);
  return report_from_here(static_cast<std::int64_t>(s.count));
}
WEFT_PROCESS_FUNCTION(countdown_in_worker);

// The mixed workload's main task. `pool` is null except for the processes mode; `idle` runs
// no CPU task, only the server and the probe, for `idle_for`.
weft::task<std::string> mixed_main(const settings& s, weft::pool::process_pool* pool, bool idle,
                                   std::vector<worker_report>& reports) {
  io::tcp_listener listener = listen_loopback();
  auto server = weft::spawn(echo_server(listener, 1));
  latency_probe probe(port_of(listener), s.size);
  cpu_window window;
  std::exception_ptr error;
  try {
    while (!probe.ready()) {
      if (probe.failed()) throw std::runtime_error("latency probe: " + probe.error());
      co_await weft::sleep_for(1ms);
    }
    window.start = steady::now();
    if (idle) {
      co_await weft::sleep_for(std::chrono::milliseconds(s.idle_ms));
    } else if (pool != nullptr) {
      const auto start = steady::now();
      reports.push_back(co_await pool->submit(countdown_in_worker, share{.count = s.count}));
      window.countdown_s = std::chrono::duration<double>(steady::now() - start).count();
    } else {
      co_await weft::spawn(timed_countdown(s.count, window));
    }
    window.end = steady::now();
  } catch (...) {
    error = std::current_exception();
  }
  // The probe ends its round trip in flight, then closes its connection, which ends the
  // server's only connection (or, after an error, the server is stopped).
  probe.stop();
  co_await finish_server(server, error);
  probe.stop_and_join();
  if (probe.failed()) throw std::runtime_error("latency probe: " + probe.error());
  if (pool != nullptr) co_await pool->shutdown();
  co_return latency_extras(probe, window);
}

outcome run_mixed(const settings& s) {
  outcome o;
  if (s.mode == "threads") {
    // The countdown on one plain thread, the server on another, the probe on a third.
    std::uint16_t port = 0;
    io::fd listener = blocking_listener(port);
    std::exception_ptr server_error;
    std::thread server([&] {
      try {
        blocking_echo(blocking_accept(listener.get()), s.size);
      } catch (...) {
        server_error = std::current_exception();
      }
    });
    cpu_window window;
    std::string extras;
    {
      latency_probe probe(port, s.size);
      while (!probe.ready() && !probe.failed()) std::this_thread::sleep_for(1ms);
      if (!probe.failed()) {
        window.start = steady::now();
        std::thread cpu([&] {
          const auto start = steady::now();
          countdown(s.count);
          window.countdown_s = std::chrono::duration<double>(steady::now() - start).count();
        });
        cpu.join();
        window.end = steady::now();
      }
      probe.stop_and_join();
      server.join();
      if (probe.failed()) throw std::runtime_error("latency probe: " + probe.error());
      if (server_error) std::rethrow_exception(server_error);
      extras = latency_extras(probe, window);
    }
    o.extras = extras;
    o.threads = 3;
  } else if (s.mode == "processes") {
    std::vector<worker_report> reports;
    {
      weft::pool::process_pool pool(s.workers, weft::pool::start_method::spawn);
      o.extras = weft::run(weft::run_options{}, mixed_main(s, &pool, false, reports));
    }
    o.workers_peak_kib = workers_peak_kib(reports);
    o.threads = s.workers;
  } else {
    const bool idle = s.mode == "idle";
    settings on = s;
    if (idle) on.run = weft::run_options{};  // the server alone, on the cooperative executor
    std::vector<worker_report> unused;
    const std::string latency = on_executor(on, mixed_main(s, nullptr, idle, unused), o);
    o.extras = latency + o.extras;
  }
  return o;
}

int usage_error(const CLI::App& app, const std::string& message) {
  fmt::print(stderr, "contrast: {}\n{}", message, app.help());
  return 2;
}

// Lets one process hold the echo workload's 2 * connections sockets: the soft fd limit (often
// 1024) is raised to the hard one. Gives the limit in force.
rlim_t raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

}  // namespace

int main(int argc, char** argv) {
  // The processes mode re-executes this program as its pool's workers.
  weft::pool::serve_if_pool_worker();
  CLI::App app{"contrast: one workload of ./run bench, run one way, measured once"};
  app.option_defaults()->always_capture_default();  // every --help shows the default
  settings s;
  std::string gil = "interval", switch_interval = "5ms";
  app.add_option("--workload", s.workload, "countdown, sleep, echo or mixed")->required();
  app.add_option("--mode", s.mode,
                 "sequential, cooperative, single-lock, multi-thread, threads, processes (mixed: "
                 "also idle)")
      ->required();
  app.add_option("--workers", s.workers, "threads, worker threads or worker processes");
  app.add_option("--gil", gil, "single-lock: interval (new GIL) or ticks:N (old GIL)");
  app.add_option("--switch-interval", switch_interval, "single-lock: the switch interval");
  app.add_option("--count", s.count, "countdown, mixed: how far to count down");
  app.add_option("--tasks", s.tasks, "sleep: concurrent tasks");
  app.add_option("--sleep-ms", s.sleep_ms, "sleep: milliseconds each task sleeps");
  app.add_option("--connections", s.connections, "echo: concurrent client connections");
  app.add_option("--round-trips", s.round_trips, "echo: round trips per connection");
  app.add_option("--size", s.size, "echo, mixed: bytes per message");
  app.add_option("--idle-ms", s.idle_ms, "mixed, mode idle: how long the probe runs");
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;

  static const std::map<std::string, std::vector<std::string>> modes = {
      {"countdown",
       {"sequential", "cooperative", "single-lock", "multi-thread", "threads", "processes"}},
      {"sleep", {"cooperative", "single-lock", "multi-thread", "threads", "processes"}},
      {"echo",
       {"sequential", "cooperative", "single-lock", "multi-thread", "threads", "processes"}},
      {"mixed", {"idle", "cooperative", "single-lock", "multi-thread", "threads", "processes"}},
  };
  const auto known = modes.find(s.workload);
  if (known == modes.end()) {
    return usage_error(
        app, "--workload wants countdown, sleep, echo or mixed, not '" + s.workload + "'");
  }
  if (std::find(known->second.begin(), known->second.end(), s.mode) == known->second.end()) {
    std::string list;
    for (const auto& m : known->second) list += (list.empty() ? "" : ", ") + m;
    return usage_error(
        app, fmt::format("--workload={} takes --mode {}, not '{}'", s.workload, list, s.mode));
  }
  if (s.workers < 1 || s.workers > 1024) return usage_error(app, "--workers wants 1 to 1024");
  if (s.count < 1 || s.count > (std::uint64_t{1} << 50)) {
    return usage_error(app, "--count wants 1 to 2^50");
  }
  if (s.tasks < 1 || s.tasks > 10'000'000) return usage_error(app, "--tasks wants 1 to 10000000");
  if (s.sleep_ms < 0 || s.sleep_ms > 3'600'000) {
    return usage_error(app, "--sleep-ms wants 0 to 3600000");
  }
  if (s.connections < 1 || s.connections > 100'000) {
    return usage_error(app, "--connections wants 1 to 100000");
  }
  if (s.round_trips < 1 || s.round_trips > 100'000'000) {
    return usage_error(app, "--round-trips wants 1 to 100000000");
  }
  if (s.size < 1 || s.size > 65536) return usage_error(app, "--size wants 1 to 65536 bytes");
  if (s.idle_ms < 1 || s.idle_ms > 3'600'000)
    return usage_error(app, "--idle-ms wants 1 to 3600000");
  if (auto d = weft::parse_duration(switch_interval); d && d->count() > 0) {
    s.run.switch_interval = *d;
  } else {
    return usage_error(app, "--switch-interval wants a positive duration such as 5ms, not '" +
                                switch_interval + "'");
  }
  if (!weft::parse_gil(gil, s.run)) {
    return usage_error(app, "--gil wants 'interval' or 'ticks:N', not '" + gil + "'");
  }
  if (is_executor_mode(s.mode)) {
    s.run.mode = *weft::parse_mode(s.mode);
    s.run.workers = s.run.mode == weft::mode::cooperative ? 1 : s.workers;
  }
  if (s.workload == "echo") {
    const rlim_t limit = raise_fd_limit();
    if (limit < 2 * s.connections + 64) {
      fmt::print(stderr,
                 "contrast: --connections={} needs about {} file descriptors and the limit is "
                 "{} (raise it with ulimit -n, or use fewer connections)\n",
                 s.connections, 2 * s.connections + 64, limit);
      return 1;
    }
  }

  try {
    const double cpu_before = cpu_seconds();
    const auto start = steady::now();
    outcome o;
    if (s.workload == "countdown") {
      o = run_countdown(s);
    } else if (s.workload == "sleep") {
      o = run_sleep(s);
    } else if (s.workload == "echo") {
      o = run_echo(s);
    } else {
      o = run_mixed(s);
    }
    const std::chrono::duration<double> wall = steady::now() - start;
    fmt::print("contrast: {} with mode={} took {:.3f} s\n", s.workload, s.mode, wall.count());
    fmt::print("workload={} mode={} workers={} wall_s={:.6f} cpu_s={:.6f} peak_rss_kib={}{}\n",
               s.workload, s.mode, o.threads, wall.count(), cpu_seconds() - cpu_before,
               own_peak_rss_kib() + o.workers_peak_kib, o.extras);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "contrast: {} with mode={}: {}\n", s.workload, s.mode, e.what());
    return 1;
  }
}
