#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <weft/weft.hpp>
#include "support.hpp"

using namespace std::chrono_literals;
using weft::task;
namespace io = weft::io;

using weft::testing::open_fd_count;

namespace {

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte((i * 131 + seed) & 0xff);
  return v;
}

template <class T>
T run_main(task<T> t) {
  return weft::run(std::move(t));
}

io::tcp_listener listen_loopback(io::socket_address where = io::socket_address::loopback_v4(0)) {
  return io::tcp_listener::bind(where).value();
}

task<std::size_t> echo_once(io::tcp_listener& l) {
  io::tcp_stream s = (co_await l.accept()).value();
  std::vector<std::byte> buffer(65536);
  std::size_t total = 0;
  for (;;) {
    auto n = co_await s.read(buffer);
    if (!n || *n == 0) break;
    total += *n;
    (co_await s.write_all(std::span(buffer).first(*n))).value();
  }
  co_return total;
}

// 4 GiB of address space with no memory behind it until touched: a buffer whose size does not
// fit an SQE's 32-bit length, for tests that move only a few bytes through it.
class sparse_buffer {
 public:
  static constexpr std::size_t size = std::size_t{1} << 32;
  sparse_buffer()
      : base_(::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)) {
    REQUIRE(base_ != MAP_FAILED);
  }
  ~sparse_buffer() { ::munmap(base_, size); }
  sparse_buffer(const sparse_buffer&) = delete;
  sparse_buffer& operator=(const sparse_buffer&) = delete;
  std::span<std::byte> span() const noexcept { return {static_cast<std::byte*>(base_), size}; }

 private:
  void* base_;
};

}  // namespace

TEST_CASE("TCP over IPv4 and IPv6: connect, write_all, read_exact, addresses", "[socket]") {
  for (auto where : {io::socket_address::loopback_v4(0), io::socket_address::loopback_v6(0)}) {
    run_main(weft::invoke([&]() -> task<> {
      io::tcp_listener l = listen_loopback(where);
      const io::socket_address bound = l.local_address().value();
      REQUIRE(bound.port() != 0);
      auto server = weft::spawn(echo_once(l));
      io::tcp_stream c = (co_await io::tcp_stream::connect(bound)).value();
      REQUIRE(c.set_nodelay());
      CHECK(c.peer_address().value() == bound);
      CHECK(c.local_address().value().family() == bound.family());
      const auto sent = pattern(1 << 20, 7);  // larger than the socket buffers: short writes
      auto writer = weft::spawn(weft::invoke([&]() -> task<> {
        (co_await c.write_all(sent)).value();
        (co_await c.shutdown()).value();  // half-close: the server sees end of stream
      }));
      std::vector<std::byte> got(sent.size());
      (co_await c.read_exact(got)).value();
      co_await writer;
      CHECK(got == sent);
      {
        auto joined = co_await server;
        CHECK(joined == sent.size());
      }
      std::byte extra[1];
      CHECK(*(co_await c.read(extra)) == 0);  // server closed after echoing
    }));
  }
}

TEST_CASE("connect errors name the operation and the cause", "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    // Bind then close to find a port nobody listens on.
    io::socket_address dead;
    {
      io::tcp_listener l = listen_loopback();
      dead = l.local_address().value();
    }
    auto r = co_await io::tcp_stream::connect(dead);
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::connection_refused);
    CHECK(r.message() == "connect: Connection refused");
    CHECK(io::describe_connect_error(dead, r.error()) ==
          "connect " + dead.to_string() + ": Connection refused");
    CHECK_THROWS_WITH(r.value(), "connect: Connection refused");
  }));
}

TEST_CASE("read_exact reports a peer that closes early as end_of_stream", "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    auto [a, b] = io::unix_stream::pair().value();
    const std::string hello = "hello";
    (co_await a.write_all(io::as_bytes(hello))).value();
    a = io::unix_stream();  // close
    std::vector<std::byte> buffer(10);
    auto r = co_await b.read_exact(buffer);
    CHECK(r.error() == weft::errc::end_of_stream);
  }));
}

TEST_CASE("writing to a peer that vanished gives EPIPE or ECONNRESET, never SIGPIPE", "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    auto [a, b] = io::unix_stream::pair().value();
    b = io::unix_stream();
    const auto data = pattern(4096, 1);
    auto r = co_await a.write_all(data);
    REQUIRE_FALSE(r);
    CHECK((r.error() == std::errc::broken_pipe || r.error() == std::errc::connection_reset));
    CHECK(r.message().rfind("send: ", 0) == 0);
  }));
}

TEST_CASE("a read in progress is cancelled by with_timeout and waits for its completion",
          "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    auto [a, b] = io::unix_stream::pair().value();
    std::vector<std::byte> buffer(16);
    const bool timed_out = co_await weft::testing::ends_timed_out(
        weft::with_timeout(20ms, weft::invoke([&]() -> task<io::result<std::size_t>> {
                             co_return co_await b.read(buffer);
                           })));
    CHECK(timed_out);
    // The socket still works afterwards: the cancelled read took no data.
    const std::string ping = "ping";
    (co_await a.write_all(io::as_bytes(ping))).value();
    auto n = co_await b.read(buffer);
    CHECK(*n == 4);
  }));
}

TEST_CASE("with_timeout takes an I/O operation directly", "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    auto [a, b] = io::unix_stream::pair().value();
    std::vector<std::byte> buffer(16);
    const bool timed_out =
        co_await weft::testing::ends_timed_out(weft::with_timeout(10ms, b.read(buffer)));
    CHECK(timed_out);
    (co_await a.write_all(io::as_bytes(std::string("ok")))).value();
    auto n = co_await weft::with_timeout(5s, b.read(buffer));
    CHECK(*n == 2);
  }));
}

TEST_CASE("cancelling a task blocked in accept ends it with errc::cancelled", "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    io::tcp_listener l = listen_loopback();
    auto h = weft::spawn(weft::invoke([&]() -> task<> { (void)co_await l.accept(); }));
    co_await weft::sleep_for(5ms);
    h.cancel();
    const bool cancelled = co_await weft::testing::ends_cancelled(h);
    CHECK(cancelled);
    // The listener keeps working for the next accept.
    auto server = weft::spawn(echo_once(l));
    auto c = (co_await io::tcp_stream::connect(l.local_address().value())).value();
    (co_await c.shutdown()).value();
    {
      auto joined = co_await server;
      CHECK(joined == 0);
    }
  }));
}

TEST_CASE("multishot accept serves many connections, queued ones included", "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    io::tcp_listener l = listen_loopback();
    const auto address = l.local_address().value();
    constexpr int clients = 200;
    std::vector<io::tcp_stream> connected;
    for (int i = 0; i < clients; ++i) {
      connected.push_back((co_await io::tcp_stream::connect(address)).value());
    }
    // All of them were accepted by one request; more than the queue holds wait in the backlog.
    int accepted = 0;
    for (int i = 0; i < clients; ++i) {
      auto s = co_await l.accept();
      REQUIRE(s);
      ++accepted;
    }
    CHECK(accepted == clients);
  }));
}

TEST_CASE("closing a listener ends a waiting accept with EBADF and leaks no fd", "[socket]") {
  const std::size_t before = open_fd_count();
  run_main(weft::invoke([&]() -> task<> {
    io::tcp_listener l = listen_loopback();
    const auto address = l.local_address().value();
    auto h = weft::spawn(weft::invoke([&]() -> task<std::error_code> {
      auto a = co_await l.accept();
      auto b = co_await l.accept();  // the listener is closed while this waits
      co_return b.error();
    }));
    auto c = (co_await io::tcp_stream::connect(address)).value();
    co_await weft::sleep_for(5ms);
    l.close();
    {
      auto joined = co_await h;
      CHECK(joined == std::errc::bad_file_descriptor);
    }
    // Queued but never accepted connections are closed with the listener.
    io::tcp_listener l2 = listen_loopback();
    auto d = (co_await io::tcp_stream::connect(l2.local_address().value())).value();
    co_await weft::sleep_for(5ms);
  }));
  CHECK(open_fd_count() == before);
}

TEST_CASE("accept reports EMFILE when the process is out of fds, and recovers", "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    io::tcp_listener l = listen_loopback();
    const auto address = l.local_address().value();
    rlimit old{};
    ::getrlimit(RLIMIT_NOFILE, &old);
    // Fill the fd table up to a low limit, keeping one slot for the client socket.
    std::vector<io::fd> hog;
    rlimit low = old;
    low.rlim_cur = open_fd_count() + 8;
    ::setrlimit(RLIMIT_NOFILE, &low);
    for (;;) {
      io::fd f(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      if (!f) break;
      hog.push_back(std::move(f));
    }
    hog.pop_back();  // room for the client's socket only
    auto c = (co_await io::tcp_stream::connect(address)).value();
    auto r = co_await l.accept();
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::too_many_files_open);
    CHECK(r.message() == "accept: Too many open files");
    hog.clear();
    ::setrlimit(RLIMIT_NOFILE, &old);
    auto again = co_await l.accept();  // re-armed: the pending connection is now accepted
    CHECK(again);
  }));
}

TEST_CASE("UDP send_to and recv_from over loopback", "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    auto a = io::udp_socket::bind(io::socket_address::loopback_v4(0)).value();
    auto b = io::udp_socket::bind(io::socket_address::loopback_v4(0)).value();
    const std::string msg = "datagram";
    auto sent = co_await a.send_to(io::as_bytes(msg), b.local_address().value());
    CHECK(*sent == msg.size());
    std::vector<char> buffer(64);
    auto got = co_await b.recv_from(io::as_writable_bytes(buffer));
    REQUIRE(got);
    CHECK(std::string(buffer.data(), got->size) == msg);
    CHECK(got->from == a.local_address().value());
  }));
}

TEST_CASE("Unix stream sockets: listener, connect, echo", "[socket]") {
  const std::string path = "@weft-test-" + std::to_string(::getpid());
  run_main(weft::invoke([&]() -> task<> {
    const auto address = io::socket_address::unix_path(path).value();
    auto l = io::unix_listener::bind(address).value();
    auto server = weft::spawn(weft::invoke([&]() -> task<std::string> {
      io::unix_stream s = (co_await l.accept()).value();
      std::string got(5, '\0');
      (co_await s.read_exact(io::as_writable_bytes(got))).value();
      co_return got;
    }));
    auto c = (co_await io::unix_stream::connect(address)).value();
    (co_await c.write_all(io::as_bytes(std::string("hello")))).value();
    {
      auto joined = co_await server;
      CHECK(joined == "hello");
    }
    CHECK(address.to_string() == "unix:" + path);
  }));
}

TEST_CASE("addresses parse numeric forms and refuse the rest", "[socket]") {
  CHECK(io::socket_address::parse("127.0.0.1:8080").value().to_string() == "127.0.0.1:8080");
  CHECK(io::socket_address::parse("[::1]:80").value().to_string() == "[::1]:80");
  CHECK_FALSE(io::socket_address::parse("::1:80"));
  CHECK_FALSE(io::socket_address::parse("localhost:80"));
  CHECK_FALSE(io::socket_address::parse("127.0.0.1:70000"));
  CHECK_FALSE(io::socket_address::parse("127.0.0.1"));
  CHECK(io::socket_address::parse("1.2.3.4:x").message() == "parse address: Invalid argument");
  CHECK_FALSE(io::socket_address::unix_path(std::string(200, 'x')));
}

TEST_CASE("every socket weft creates is close-on-exec", "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    io::tcp_listener l = listen_loopback();
    auto c = (co_await io::tcp_stream::connect(l.local_address().value())).value();
    auto s = (co_await l.accept()).value();
    for (int fd : {l.native_handle(), c.native_handle(), s.native_handle()}) {
      CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    }
  }));
}

TEST_CASE("a tiny ring survives a full submission queue and completion-queue overflow",
          "[socket]") {
  // 2 SQ entries, 8 CQ entries: 300 connections each doing I/O at once overflow both.
  weft::sched::cooperative executor(weft::sched::cooperative_options{.ring_entries = 2});
  const int ok = executor.block_on(weft::invoke([&]() -> task<int> {
    auto l = listen_loopback();
    const auto address = l.local_address().value();
    constexpr int n = 300;
    auto server = weft::spawn(weft::invoke([&]() -> task<> {
      weft::task_group group;
      for (int i = 0; i < n; ++i) {
        auto s = (co_await l.accept()).value();
        group.spawn(weft::invoke([s = std::move(s)]() -> task<> {
          std::vector<std::byte> b(64);
          auto r = co_await s.read(b);
          (co_await s.write_all(std::span(b).first(*r))).value();
        }));
      }
      co_await group.join();
    }));
    std::vector<task<int>> clients;
    for (int i = 0; i < n; ++i) {
      clients.push_back(weft::invoke([&, i]() -> task<int> {
        auto c = (co_await io::tcp_stream::connect(address)).value();
        const auto msg = pattern(64, static_cast<unsigned>(i));
        (co_await c.write_all(msg)).value();
        std::vector<std::byte> got(64);
        (co_await c.read_exact(got)).value();
        co_return got == msg ? 1 : 0;
      }));
    }
    int good = 0;
    for (int r : co_await weft::when_all(std::move(clients))) good += r;
    co_await server;
    co_return good;
  }));
  CHECK(ok == 300);
  INFO("overflowed turns: " << executor.reactor().stats().cq_overflows);
  CHECK(executor.reactor().stats().cq_overflows > 0);  // the test did overflow the queue
  // Only the closed listener's multishot accept may still await its cancellation's CQE.
  CHECK(executor.reactor().in_flight() <= 1);
}

TEST_CASE("accept on a closed listener gives EBADF, not a crash", "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    io::tcp_listener l = listen_loopback();
    l.close();
    auto r = co_await l.accept();
    CHECK(r.error() == std::errc::bad_file_descriptor);
    io::tcp_listener never_bound;
    auto r2 = co_await never_bound.accept();
    CHECK(r2.error() == std::errc::bad_file_descriptor);
  }));
}

TEST_CASE("a listener that outlives an executor run on another thread is safe to close",
          "[socket]") {
  io::tcp_listener l = listen_loopback();
  {
    weft::sched::cooperative executor;  // built here, run on another thread, destroyed here
    std::thread runner([&] {
      executor.block_on(weft::invoke([&]() -> task<> {
        auto h = weft::spawn(weft::invoke([&]() -> task<> { (void)co_await l.accept(); }));
        co_await weft::sleep_for(5ms);  // the multishot request is armed on this ring
        h.cancel();
        try {
          co_await h;
        } catch (const std::system_error&) {
        }
      }));
    });
    runner.join();
  }
  // The request's reactor is gone. A new executor accepts on the same listener: the request
  // re-arms on its ring (a stale pointer to the old reactor would hang or crash here).
  const bool accepted = weft::run(weft::invoke([&]() -> task<bool> {
    auto c = (co_await io::tcp_stream::connect(l.local_address().value())).value();
    auto s = co_await weft::with_timeout(5s, l.accept());
    co_return static_cast<bool>(s);
  }));
  CHECK(accepted);
  l.close();
}

TEST_CASE("send_file sends a header and a file range; a short file is end_of_stream", "[socket]") {
  char name[] = "/tmp/weft-send-file-XXXXXX";
  const int raw = ::mkstemp(name);
  REQUIRE(raw >= 0);
  ::close(raw);
  std::string content(300 * 1024, '\0');
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>('a' + i % 26);
  run_main(weft::invoke([&]() -> task<> {
    (co_await io::write_file(name, io::as_bytes(content))).value();
    io::file f = (co_await io::file::open(name)).value();
    auto [a, b] = io::unix_stream::pair().value();
    const std::string header = "HEADER";
    // More than the socket buffer holds: the sender must wait for POLLOUT on the ring.
    auto sender = weft::spawn(weft::invoke([&, &a = a]() -> task<std::uint64_t> {
      co_return (co_await a.send_file(f, 1000, content.size() - 1000, io::as_bytes(header)))
          .value();
    }));
    std::string got(header.size() + content.size() - 1000, '\0');
    (co_await b.read_exact(io::as_writable_bytes(got))).value();
    const std::uint64_t sent = co_await sender;
    CHECK(sent == content.size() - 1000);
    CHECK(got == header + content.substr(1000));
    // The socket is blocking again afterwards.
    CHECK((::fcntl(a.native_handle(), F_GETFL) & O_NONBLOCK) == 0);
    // Asking for more than the file holds: the bytes that exist, then end_of_stream.
    auto short_file = co_await a.send_file(f, content.size() - 10, 100);
    CHECK(short_file.error() == weft::errc::end_of_stream);
    std::string tail(10, '\0');
    (co_await b.read_exact(io::as_writable_bytes(tail))).value();
    CHECK(tail == content.substr(content.size() - 10));
  }));
  ::unlink(name);
}

TEST_CASE("poll waits for readiness and reports errors", "[socket]") {
  run_main(weft::invoke([&]() -> task<> {
    auto [a, b] = io::unix_stream::pair().value();
    auto waiter = weft::spawn(weft::invoke([&, &b = b]() -> task<unsigned> {
      co_return (co_await io::poll(b.native_handle(), POLLIN)).value();
    }));
    co_await weft::sleep_for(2ms);
    CHECK_FALSE(waiter.is_finished());  // nothing to read yet
    (co_await a.write_all(io::as_bytes(std::string("x")))).value();
    const unsigned ready = co_await waiter;
    CHECK((ready & POLLIN) != 0);
    auto bad = co_await io::poll(-1, POLLIN);
    CHECK(bad.error() == std::errc::bad_file_descriptor);
    CHECK(bad.message() == "poll: Bad file descriptor");
    const bool timed_out = co_await weft::testing::ends_timed_out(
        weft::with_timeout(5ms, io::poll(a.native_handle(), POLLIN)));
    CHECK(timed_out);
  }));
}

TEST_CASE("lengths past 32 bits are clamped, not cut: a 4 GiB buffer moves bytes", "[socket]") {
  STATIC_REQUIRE(io::detail::io_length(std::size_t{1} << 32) == io::detail::max_io_length);
  STATIC_REQUIRE(io::detail::io_length(7) == 7);
  sparse_buffer big;
  run_main(weft::invoke([&]() -> task<> {
    auto [a, b] = io::unix_stream::pair().value();
    const std::string hello = "hello";
    (co_await a.write_all(io::as_bytes(hello))).value();
    // Cut to 32 bits, the length was 0: the read ended at once as if the peer had closed, and
    // the send sent nothing.
    const std::size_t received = (co_await b.read(big.span())).value();
    const std::size_t sent = (co_await a.write(big.span())).value();
    auto [r, w] = io::make_pipe().value();
    (co_await w.write_all(io::as_bytes(hello))).value();
    const std::size_t piped = (co_await r.read(big.span())).value();
    CHECK(received == hello.size());
    CHECK(std::string(reinterpret_cast<const char*>(big.span().data()), 5) == hello);
    CHECK(sent > 0);
    CHECK(piped == hello.size());
  }));
}

// ---- recv_stream: multishot receive with the reactor's provided buffer ring

namespace {

// Appends everything `rs` gives until the end of the stream; `hold` keeps every buffer alive
// (so that the ring runs dry) instead of dropping each one at once.
task<std::vector<std::byte>> drain(io::recv_stream& rs, bool hold, std::size_t* held = nullptr) {
  std::vector<std::byte> got;
  std::vector<io::received_buffer> kept;
  for (;;) {
    io::received_buffer b = (co_await rs.next()).value();
    if (b.empty()) break;
    got.insert(got.end(), b.bytes().begin(), b.bytes().end());
    if (hold) kept.push_back(std::move(b));
  }
  if (held != nullptr) *held = kept.size();
  co_return got;
}

}  // namespace

TEST_CASE("recv_stream gives every byte in order, then the end of the stream, again and again",
          "[socket][recv_stream]") {
  run_main(weft::invoke([&]() -> task<> {
    auto [a, b] = io::unix_stream::pair().value();
    io::recv_stream rs = b.recv_stream();
    const auto data = pattern(300000, 3);
    auto writer = weft::spawn(weft::invoke([&]() -> task<> {
      for (std::size_t at = 0; at < data.size(); at += 1000) {
        (co_await a.write_all(std::span(data).subspan(at, 1000))).value();
      }
      a = io::unix_stream();  // the peer closes: end of stream
    }));
    auto got = co_await drain(rs, false);
    co_await writer;
    CHECK(got == data);
    // Over is over: the end again, nothing armed.
    auto again = co_await rs.next();
    REQUIRE(again);
    CHECK(again->empty());
  }));
}

TEST_CASE("recv_stream survives an exhausted buffer ring (ENOBUFS) and loses nothing",
          "[socket][recv_stream]") {
  run_main(weft::invoke([&]() -> task<> {
    auto [a, b] = io::unix_stream::pair().value();
    io::recv_stream rs = b.recv_stream();
    // More bytes than the ring's buffers hold, all kept alive by the reader: the ring runs dry
    // and the rest must come through the one-shot fallback.
    const auto data = pattern(6 * 1024 * 1024, 5);
    auto writer = weft::spawn(weft::invoke([&]() -> task<> {
      (co_await a.write_all(data)).value();
      a = io::unix_stream();
    }));
    std::size_t held = 0;
    auto got = co_await drain(rs, true, &held);
    co_await writer;
    CHECK(got == data);
    CHECK(held > 512);  // more buffers alive at once than the ring has (512)
  }));
}

TEST_CASE("a recv_stream keeps working after its buffers come back to the ring",
          "[socket][recv_stream]") {
  run_main(weft::invoke([&]() -> task<> {
    auto [a, b] = io::unix_stream::pair().value();
    for (int round = 0; round < 3; ++round) {  // each round: exhaust, release, reuse
      io::recv_stream rs = b.recv_stream();
      const auto data = pattern(5 * 1024 * 1024, static_cast<unsigned>(round));
      std::vector<io::received_buffer> kept;
      std::vector<std::byte> got;
      auto writer =
          weft::spawn(weft::invoke([&]() -> task<> { (co_await a.write_all(data)).value(); }));
      while (got.size() < data.size()) {
        io::received_buffer chunk = (co_await rs.next()).value();
        REQUIRE_FALSE(chunk.empty());
        got.insert(got.end(), chunk.bytes().begin(), chunk.bytes().end());
        kept.push_back(std::move(chunk));
      }
      co_await writer;
      CHECK(got == data);
    }
  }));
}

TEST_CASE("a stopped next() throws cancelled and loses nothing; the stream goes on",
          "[socket][recv_stream]") {
  run_main(weft::invoke([&]() -> task<> {
    auto [a, b] = io::unix_stream::pair().value();
    io::recv_stream rs = b.recv_stream();
    const bool timed_out = co_await weft::testing::ends_timed_out(
        weft::with_timeout(20ms, weft::invoke([&]() -> task<io::result<io::received_buffer>> {
                             co_return co_await rs.next();
                           })));
    CHECK(timed_out);
    const std::string ping = "ping";
    (co_await a.write_all(io::as_bytes(ping))).value();
    auto got = co_await rs.next();
    REQUIRE(got);
    CHECK(std::string(reinterpret_cast<const char*>(got->bytes().data()), got->size()) == "ping");
  }));
}

TEST_CASE("destroying an armed recv_stream cancels it; the socket keeps its bytes",
          "[socket][recv_stream]") {
  const std::size_t fds = open_fd_count();
  run_main(weft::invoke([&]() -> task<> {
    auto [a, b] = io::unix_stream::pair().value();
    {
      io::recv_stream rs = b.recv_stream();
      try {
        (void)co_await weft::with_timeout(
            10ms, weft::invoke([&]() -> task<io::result<io::received_buffer>> {
              co_return co_await rs.next();
            }));
      } catch (const std::system_error&) {
      }
    }                               // armed here: the destructor cancels the multishot
    co_await weft::sleep_for(5ms);  // the cancel's CQE comes back
    const std::string pong = "pong";
    (co_await a.write_all(io::as_bytes(pong))).value();
    std::vector<std::byte> buffer(16);
    auto n = co_await b.read(buffer);
    CHECK(n.value() == 4);
  }));
  CHECK(open_fd_count() == fds);
}

TEST_CASE("recv_stream reports a reset as the socket's error, and a second waiter as EBUSY",
          "[socket][recv_stream]") {
  run_main(weft::invoke([&]() -> task<> {
    auto l = listen_loopback();
    auto client = (co_await io::tcp_stream::connect(l.local_address().value())).value();
    auto server = (co_await l.accept()).value();
    io::recv_stream rs = server.recv_stream();
    auto first = weft::spawn(weft::invoke(
        [&]() -> task<io::result<io::received_buffer>> { co_return co_await rs.next(); }));
    co_await weft::sleep_for(5ms);  // `first` waits now
    auto second = co_await rs.next();
    REQUIRE_FALSE(second);
    CHECK(second.error() == std::errc::device_or_resource_busy);
    // An abortive close (SO_LINGER 0) resets the connection.
    const linger hard{1, 0};
    ::setsockopt(client.native_handle(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    client = io::tcp_stream();
    auto r = co_await first;
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::connection_reset);
    CHECK(r.message().rfind("recv: ", 0) == 0);
    auto again = co_await rs.next();  // the error stays
    CHECK(again.error() == std::errc::connection_reset);
  }));
}

TEST_CASE("a task still waiting in next() when run ends leaves nothing behind",
          "[socket][recv_stream]") {
  const std::size_t fds = open_fd_count();
  {
    auto [a, b] = io::unix_stream::pair().value();
    run_main(weft::invoke([&]() -> task<> {
      auto waiter = weft::spawn(weft::invoke([&]() -> task<> {
        io::recv_stream rs = b.recv_stream();
        (void)co_await rs.next();  // the peer never writes
      }));
      co_await weft::sleep_for(5ms);  // armed, waiting
    }));
  }
  CHECK(open_fd_count() == fds);
}
