// Writing real programs: name resolution, buffered I/O, when_any over awaitables (lossless
// receives), cancellable joins, join_set, try_with_timeout / with_deadline, interval. Each
// scenario runs on every executor mode.
#include <catch2/catch.hpp>

#include <netdb.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <weft/weft.hpp>
#include "support.hpp"

using namespace std::chrono_literals;

namespace {

constexpr weft::mode all_modes[] = {weft::mode::cooperative, weft::mode::single_lock,
                                    weft::mode::multi_thread};

template <class Fn>
void on_every_mode(Fn fn) {
  for (weft::mode m : all_modes) {
    INFO("mode " << weft::to_string(m));
    CHECK(weft::run(weft::run_options{m, 2}, fn()));
  }
}

std::span<const std::byte> bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// ---- name resolution

TEST_CASE("resolve: names and numeric addresses, unknown names as error values") {
  on_every_mode([]() -> weft::task<bool> {
    auto local = co_await weft::io::resolve("localhost", 8080);
    REQUIRE(local);
    REQUIRE(!local->empty());
    bool has_loopback = false;
    for (const auto& a : *local) {
      CHECK(a.port() == 8080);
      has_loopback |= a == weft::io::socket_address::loopback_v4(8080) ||
                      a == weft::io::socket_address::loopback_v6(8080);
    }
    CHECK(has_loopback);
    auto v6 = co_await weft::io::resolve("::1", 1);
    REQUIRE(v6);
    CHECK(v6->front() == weft::io::socket_address::loopback_v6(1));
    auto v4 = co_await weft::io::resolve("127.0.0.1", 2, weft::io::address_family::ipv4);
    REQUIRE(v4);
    CHECK(v4->front() == weft::io::socket_address::loopback_v4(2));
    // An unknown name: an error value, quickly (bounded here so a hang fails the test).
    auto none = co_await weft::with_timeout(10s, weft::io::resolve("no-such-host.invalid", 80));
    REQUIRE(!none);
    CHECK(none.error() == std::error_code(EAI_NONAME, weft::io::resolve_category()));
    CHECK(none.full_error().message().find("resolve") == 0);
    auto empty = co_await weft::io::resolve("", 80);
    CHECK(!empty);
    auto huge = co_await weft::io::resolve(std::string(300, 'a'), 80);
    CHECK(!huge);
    co_return true;
  });
}

TEST_CASE("connect by name tries the addresses in turn") {
  on_every_mode([]() -> weft::task<bool> {
    auto listener = weft::io::tcp_listener::bind(weft::io::socket_address::loopback_v4(0));
    REQUIRE(listener);
    const std::uint16_t port = listener->local_address()->port();
    // ::1 on that port refuses (nobody listens there); 127.0.0.1 accepts.
    std::vector<weft::io::socket_address> both{weft::io::socket_address::loopback_v6(port),
                                               weft::io::socket_address::loopback_v4(port)};
    auto s = co_await weft::io::tcp_stream::connect(both);
    CHECK(s);
    weft::io::result<weft::io::tcp_stream> by_name =
        co_await weft::io::tcp_stream::connect("localhost", port);
    CHECK(by_name);
    std::vector<weft::io::socket_address> v6_only{weft::io::socket_address::loopback_v6(port)};
    auto refused = co_await weft::io::tcp_stream::connect(std::move(v6_only));
    CHECK(!refused);
    auto unknown = co_await weft::io::tcp_stream::connect("no-such-host.invalid", port);
    CHECK(!unknown);
    CHECK(std::string_view(unknown.full_error().operation) == std::string_view("resolve"));
    co_return true;
  });
}

// ---- buffered I/O

template <class Writer>
weft::task<> write_then_close(Writer w, std::string text) {
  auto r = co_await w.write_all(bytes(text));
  (void)r;
  auto c = co_await w.close();  // now, not when the frame goes (at the join)
  (void)c;
}

TEST_CASE("buffered_reader: lines, CRLF, a last line cut short, over-long lines") {
  on_every_mode([]() -> weft::task<bool> {
    auto pair = weft::io::unix_stream::pair();
    REQUIRE(pair);
    auto& [a, b] = *pair;
    const std::string long_line(100, 'x');
    const std::string text = "one\r\ntwo\n\n" + long_line + "\nafter\n" + long_line + "tail";
    auto writer = weft::spawn(write_then_close(std::move(b), text));
    weft::io::buffered_reader reader(a, /*max_line=*/50, /*chunk=*/7);
    std::vector<std::string> got;
    int too_long = 0;
    for (int i = 0; i < 20; ++i) {
      weft::io::result<std::optional<std::string>> line = co_await reader.read_line();
      if (!line) {
        CHECK(line.error() == std::errc::message_size);
        ++too_long;
        continue;
      }
      if (!*line) break;
      got.push_back(**line);
    }
    co_await writer;
    CHECK(too_long == 2);
    // The unterminated last line was too long too: it was reported and then dropped.
    CHECK(got == std::vector<std::string>{"one", "two", "", "after"});
    co_return true;
  });
}

TEST_CASE("buffered_reader over a pipe: read_until, read_exact, a partial last record") {
  on_every_mode([]() -> weft::task<bool> {
    auto p = weft::io::make_pipe();
    REQUIRE(p);
    auto writer = weft::spawn(write_then_close(std::move(p->second), "a--b--HEADtail-no-end"));
    weft::io::buffered_reader reader(p->first, 64, 3);
    auto r1 = co_await reader.read_until("--");
    REQUIRE(r1);
    CHECK(**r1 == "a");
    auto r2 = co_await reader.read_until("--");
    CHECK(**r2 == "b");
    std::array<std::byte, 4> head{};
    auto exact = co_await reader.read_exact(head);
    CHECK(exact);
    CHECK(std::string(reinterpret_cast<const char*>(head.data()), 4) == "HEAD");
    auto partial = co_await reader.read_until("--");
    REQUIRE(partial);
    CHECK(**partial == "tail-no-end");  // the peer closed mid-record: the record as it is
    auto end = co_await reader.read_until("--");
    REQUIRE(end);
    CHECK(!*end);
    std::array<std::byte, 1> more{};
    auto short_read = co_await reader.read_exact(more);
    CHECK(short_read.error() == weft::errc::end_of_stream);
    auto bad = co_await reader.read_until("");
    CHECK(bad.error() == std::errc::invalid_argument);
    co_await writer;
    co_return true;
  });
}

weft::task<std::string> read_all_lines(weft::io::tcp_stream s) {
  weft::io::buffered_reader reader(s);
  std::string out;
  while (auto line = co_await reader.read_line()) {
    if (!*line) break;
    out += **line + ";";
  }
  co_return out;
}

TEST_CASE("buffered_writer over TCP gathers small writes, flush sends them") {
  on_every_mode([]() -> weft::task<bool> {
    auto listener = weft::io::tcp_listener::bind(weft::io::socket_address::loopback_v4(0));
    REQUIRE(listener);
    auto client = co_await weft::io::tcp_stream::connect(*listener->local_address());
    REQUIRE(client);
    auto accepted = co_await listener->accept();
    REQUIRE(accepted);
    auto reader = weft::spawn(read_all_lines(std::move(*accepted)));
    {
      weft::io::buffered_writer writer(*client, 16);
      // (No co_await inside CHECK: g++ 12 evaluates it again in the macro's dead branch.)
      for (int i = 0; i < 10; ++i) {
        auto w = co_await writer.write("line " + std::to_string(i) + "\n");
        CHECK(w);
      }
      auto big = co_await writer.write(std::string(40, 'z') + "\n");  // larger than the buffer
      CHECK(big);
      auto flushed = co_await writer.flush();
      CHECK(flushed);
      CHECK(writer.buffered() == 0);
    }
    auto shut = co_await client->shutdown();
    CHECK(shut);
    std::string expected;
    for (int i = 0; i < 10; ++i) expected += "line " + std::to_string(i) + ";";
    expected += std::string(40, 'z') + ";";
    const std::string got = co_await reader;
    CHECK(got == expected);
    co_return true;
  });
}

// ---- when_any over awaitables

weft::task<> produce(weft::channel<int>& ch, int first, int count) {
  for (int i = 0; i < count; ++i) {
    co_await ch.send(first + i);
    if (i % 7 == 0) co_await weft::yield_now();
  }
  ch.close();
}

TEST_CASE("when_any over two channel receives loses and duplicates nothing") {
  on_every_mode([]() -> weft::task<bool> {
    constexpr int per_channel = 2000;
    weft::channel<int> a(8), b(8);
    auto pa = weft::spawn(produce(a, 0, per_channel));
    auto pb = weft::spawn(produce(b, 100000, per_channel));
    std::vector<int> from_a, from_b;
    bool a_open = true, b_open = true;
    while (a_open && b_open) {
      std::variant<std::optional<int>, std::optional<int>> got =
          co_await weft::when_any(a.recv(), b.recv());
      if (got.index() == 0) {
        if (auto v = std::get<0>(got))
          from_a.push_back(*v);
        else
          a_open = false;
      } else {
        if (auto v = std::get<1>(got))
          from_b.push_back(*v);
        else
          b_open = false;
      }
    }
    // One channel closed mid-select: drain the other; its items are all still there.
    while (a_open) {
      if (auto v = co_await a.recv())
        from_a.push_back(*v);
      else
        a_open = false;
    }
    while (b_open) {
      if (auto v = co_await b.recv())
        from_b.push_back(*v);
      else
        b_open = false;
    }
    co_await pa;
    co_await pb;
    REQUIRE(from_a.size() == per_channel);
    REQUIRE(from_b.size() == per_channel);
    for (int i = 0; i < per_channel; ++i) {  // exactly once, and in order
      CHECK(from_a[i] == i);
      CHECK(from_b[i] == 100000 + i);
    }
    co_return true;
  });
}

TEST_CASE("when_any: a receive that completed but lost gives its item back at the front") {
  on_every_mode([]() -> weft::task<bool> {
    weft::channel<int> a, b;
    a.try_send(1);
    a.try_send(2);
    b.try_send(10);
    // Both are ready at once: the first source wins, the second must not keep 10.
    auto got = co_await weft::when_any(a.recv(), b.recv());
    CHECK(got.index() == 0);
    CHECK(b.size() == 1);
    // A loser that completes after the winner (a value handed to it before its cancel):
    // a queue get and a sleep; the queue's item goes back.
    weft::fifo_queue<int> q;
    q.try_put(5);
    auto mixed = co_await weft::when_any(weft::sleep_for(0ms), q.get());
    (void)mixed;
    CHECK(q.size() + (mixed.index() == 1 ? 1 : 0) == 1);
    // The vector form, over awaitables.
    std::vector<weft::channel<int>::recv_awaitable> recvs;
    recvs.push_back(a.recv());
    recvs.push_back(b.recv());
    auto [index, value] = co_await weft::when_any(std::move(recvs));
    CHECK(index == 0);
    CHECK(value == std::optional<int>(2));
    CHECK(b.size() == 1);
    const std::optional<int> ten = co_await b.recv();
    CHECK(ten == std::optional<int>(10));
    // Tasks and awaitables mixed.
    auto t =
        co_await weft::when_any(weft::sleep_for(10s), [&]() -> weft::task<int> { co_return 3; }());
    CHECK(t.index() == 1);
    co_return true;
  });
}

TEST_CASE("when_any over a vector of tasks") {
  on_every_mode([]() -> weft::task<bool> {
    std::vector<weft::task<int>> tasks;
    for (int i = 0; i < 4; ++i) {
      tasks.push_back([](int i) -> weft::task<int> {
        co_await weft::sleep_for(std::chrono::milliseconds(50 - 10 * i));
        co_return i;
      }(i));
    }
    auto [index, value] = co_await weft::when_any(std::move(tasks));
    CHECK(index == 3);
    CHECK(value == 3);
    co_return true;
  });
}

// ---- joins, join_set, time limits, intervals

weft::task<int> slow_value(std::chrono::milliseconds d, int v) {
  co_await weft::sleep_for(d);
  co_return v;
}

TEST_CASE("awaiting a join_handle is a cancellation point; the joined task runs on") {
  on_every_mode([]() -> weft::task<bool> {
    auto h = weft::spawn(slow_value(50ms, 7));
    auto r = co_await weft::try_with_timeout(5ms, h);  // join_handle is an awaitable
    CHECK(!r);
    CHECK(h.valid());
    CHECK(!h.is_finished());
    const int seven = co_await h;  // joined again, after the cancelled wait
    CHECK(seven == 7);
    // A joiner cancelled by its own handle.
    auto target = weft::spawn(slow_value(10s, 1));
    auto joiner = weft::spawn([](weft::join_handle<int>& t) -> weft::task<bool> {
      try {
        co_await t;
      } catch (const std::system_error& e) {
        co_return e.code() == weft::errc::cancelled;
      }
      co_return false;
    }(target));
    co_await weft::sleep_for(2ms);
    joiner.cancel();
    const bool joiner_cancelled = co_await joiner;
    CHECK(joiner_cancelled);
    CHECK(!target.is_finished());
    // Stops racing the joiner's registration (threaded modes: on another thread): every joiner
    // ends, with the value or cancelled, and a cancelled one leaves the task joinable.
    for (int i = 0; i < 300; ++i) {
      auto t = weft::spawn(slow_value(std::chrono::milliseconds(i % 2), i));
      auto j = weft::spawn([](weft::join_handle<int>& t) -> weft::task<int> {
        try {
          co_return co_await t;
        } catch (const std::system_error& e) {
          co_return e.code() == weft::errc::cancelled ? -1 : -2;
        }
      }(t));
      if (i % 3 != 0) j.cancel();
      const int got = co_await j;
      CHECK((got == i || got == -1));
      if (got == -1) {
        const int later = co_await t;
        CHECK(later == i);
      }
    }
    target.cancel();
    bool threw = false;
    try {
      co_await target;
    } catch (const std::system_error&) {
      threw = true;
    }
    CHECK(threw);
    co_return true;
  });
}

weft::task<int> compute(int v) {
  co_await weft::sleep_for(std::chrono::milliseconds(5 * (4 - v)));
  co_return v;
}

TEST_CASE("join_set gives results in finishing order and cancels what is left", "[fifo]") {
  on_every_mode([]() -> weft::task<bool> {
    weft::join_set<int> set;
    for (int i = 1; i <= 3; ++i) set.spawn(compute(i));
    CHECK(set.size() == 3);
    std::vector<int> order;
    while (std::optional<int> v = co_await set.join_next()) order.push_back(*v);
    CHECK(order == std::vector<int>{3, 2, 1});
    CHECK(set.empty());
    set.spawn(slow_value(10s, 0));
    set.cancel_all();
    const bool threw = co_await weft::testing::ends_cancelled(set.join_next());
    CHECK(threw);
    CHECK(set.empty());
    {
      weft::join_set<int> dropped;
      dropped.spawn(slow_value(10s, 0));  // cancelled when `dropped` goes
    }
    co_return true;
  });
}

TEST_CASE("try_with_timeout and with_deadline give expiry as a value or timed_out") {
  on_every_mode([]() -> weft::task<bool> {
    weft::channel<int> a;
    std::optional<std::optional<int>> r = co_await weft::try_with_timeout(10ms, a.recv());
    CHECK(!r);
    a.try_send(4);
    r = co_await weft::try_with_timeout(10s, a.recv());
    CHECK(r == std::optional<std::optional<int>>(std::optional<int>(4)));
    auto v = co_await weft::try_with_timeout(10s, slow_value(1ms, 9));
    CHECK(v == std::optional<int>(9));
    const auto deadline = weft::clock::now() + 5ms;
    const bool timed_out =
        co_await weft::testing::ends_timed_out(weft::with_deadline(deadline, slow_value(10s, 1)));
    CHECK(timed_out);
    const std::optional<int> past = co_await weft::try_with_deadline(deadline, slow_value(10s, 1));
    CHECK(!past);  // already past
    const int two = co_await weft::with_deadline(weft::clock::now() + 10s, slow_value(1ms, 2));
    CHECK(two == 2);
    co_return true;
  });
}

TEST_CASE("interval: first tick at once, then on schedule; missed ticks skipped") {
  on_every_mode([]() -> weft::task<bool> {
    weft::interval every(5ms);
    const auto start = weft::clock::now();
    const auto first = co_await every.tick();
    CHECK(first <= weft::clock::now());
    const auto second = co_await every.tick();
    CHECK(second - first == every.period());
    CHECK(weft::clock::now() >= start + 5ms);
    co_await weft::sleep_for(23ms);           // misses about four ticks
    const auto late = co_await every.tick();  // the missed tick, at once
    const auto next = co_await every.tick();  // the next one on the original schedule
    CHECK((next - first) % every.period() == weft::clock::duration::zero());
    // The sleep lasted at least 23 ms past `late`'s schedule minus a period: at least four
    // ticks were skipped, not delivered one by one.
    CHECK(next - late >= 4 * every.period());
    weft::interval burst(1ms, weft::missed_tick::burst);
    co_await burst.tick();
    co_await weft::sleep_for(5ms);
    const auto b1 = co_await burst.tick();
    const auto b2 = co_await burst.tick();
    CHECK(b2 - b1 == 1ms);
    CHECK_THROWS_AS(weft::interval(0ms), std::invalid_argument);
    co_return true;
  });
}

}  // namespace

namespace {

TEST_CASE("mode_from_args never exits: bad arguments and --help are usage_error") {
  // The usage_error that mode_from_args throws for `args`, or nullopt when it throws none.
  const auto usage_error_of =
      [](std::vector<const char*> args) -> std::optional<weft::usage_error> {
    try {
      (void)weft::mode_from_args(static_cast<int>(args.size()), const_cast<char**>(args.data()));
    } catch (const weft::usage_error& e) {
      return e;
    }
    return std::nullopt;
  };
  const auto bad = usage_error_of({"prog", "--mode=bogus"});
  REQUIRE(bad);
  CHECK(bad->exit_status() == 2);
  CHECK(std::string(bad->what()).find("usage:") != std::string::npos);
  const auto help = usage_error_of({"prog", "--help"});
  REQUIRE(help);
  CHECK(help->exit_status() == 0);
  const char* good[] = {"prog", "--mode=multi-thread", "--workers=3"};
  const auto options = weft::mode_from_args(3, const_cast<char**>(good));
  CHECK(options.mode == weft::mode::multi_thread);
  CHECK(options.workers == 3);
}

}  // namespace

namespace {

// The lines of issue 19, as written there (the port is the listener's, not 8080).
TEST_CASE("the issue's lines compile and behave as written") {
  on_every_mode([]() -> weft::task<bool> {
    auto listener = weft::io::tcp_listener::bind(weft::io::socket_address::loopback_v4(0));
    REQUIRE(listener);
    const std::uint16_t port = listener->local_address()->port();
    weft::channel<int> a, b;

    auto addrs = co_await weft::io::resolve("localhost",
                                            port);  // io::result<std::vector<io::socket_address>>
    weft::io::result<weft::io::tcp_stream> s =
        co_await weft::io::tcp_stream::connect("localhost", port);
    weft::io::buffered_reader reader(*s);  // also over unix_stream and pipe_reader
    auto peer = co_await listener->accept();
    auto sent = co_await peer->write_all(bytes("first\r\nsecond"));
    CHECK(sent);
    *peer = weft::io::tcp_stream();  // closed: the reader sees the end after "second"
    weft::io::result<std::optional<std::string>> line =
        co_await reader.read_line();  // "\n" or "\r\n" stripped; nullopt at the end
    CHECK(addrs);
    CHECK(line);
    CHECK(*line == std::optional<std::string>("first"));
    a.try_send(1);
    std::variant<std::optional<int>, std::optional<int>> got =
        co_await weft::when_any(a.recv(), b.recv());
    CHECK(got.index() == 0);
    std::optional<std::optional<int>> r =
        co_await weft::try_with_timeout(10ms, a.recv());  // nullopt: the limit passed
    CHECK(!r);
    weft::join_set<int> set;
    set.spawn(compute(1));
    std::optional<int> first = co_await set.join_next();  // in finishing order; nullopt when empty
    CHECK(first == std::optional<int>(1));
    weft::interval every(5ms);
    co_await every.tick();
    co_return true;
  });
}

}  // namespace
