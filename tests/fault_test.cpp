// The fault injector (built with -Dfault_injection=true): every injected failure surfaces at the
// call site that made the operation, short transfers still deliver every byte, a seed replays
// the same faults, an overflowing completion queue loses nothing, and nothing leaks.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include <weft/io/fault_injection.hpp>
#include <weft/weft.hpp>

using namespace std::chrono_literals;
using weft::task;
namespace io = weft::io;
namespace ft = weft::io::testing;

namespace {

// Installs a plan for one test and removes it after, checking that nothing leaked meanwhile:
// no task frame alive, no operation in flight when the reactors died, no fd left open.
class faults {
 public:
  explicit faults(ft::fault_plan plan) : fds_(ft::open_fd_count()) { ft::set_fault_plan(plan); }
  faults(const faults&) = delete;
  faults& operator=(const faults&) = delete;
  ~faults() { ft::clear_fault_plan(); }

  void check_nothing_leaked() const {
    const ft::fault_report r = ft::fault_totals();
    INFO(ft::describe(r));
    CHECK(r.live_tasks == 0);
    CHECK(r.in_flight_at_shutdown == 0);
    CHECK(r.reactors > 0);
    CHECK(ft::open_fd_count() == fds_);
  }
  std::uint64_t injected(ft::fault_kind k) const {
    return ft::fault_totals().injected[static_cast<unsigned>(k)];
  }

 private:
  std::size_t fds_;
};

ft::fault_plan only(std::vector<std::uint8_t> opcodes, ft::fault_kind kind, double p = 1.0,
                    std::uint64_t seed = 1) {
  ft::fault_plan plan;
  plan.seed = seed;
  plan.opcodes = std::move(opcodes);
  plan.probability[static_cast<unsigned>(kind)] = p;
  return plan;
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte((i * 131 + seed + i / 251) & 0xff);
  return v;
}

// A test body that hangs (a broken read_exact leaves its writer blocked forever) fails instead:
// after 10 s it is cancelled and weft::run throws errc::timed_out.
task<> bounded(task<> body) {
  co_await weft::with_timeout(10s, std::move(body));
}

const weft::run_options cooperative{weft::mode::cooperative, 0};
const weft::run_options multi_thread{weft::mode::multi_thread, 2};

// A connected TCP pair over loopback (accept and connect are not faulted by the plans here).
task<std::pair<io::tcp_stream, io::tcp_stream>> tcp_pair() {
  auto listener = io::tcp_listener::bind(io::socket_address::loopback_v4(0)).value();
  auto client = weft::spawn(io::tcp_stream::connect(listener.local_address().value()));
  io::tcp_stream server = (co_await listener.accept()).value();
  io::tcp_stream c = (co_await client).value();
  co_return std::pair(std::move(c), std::move(server));
}

}  // namespace

TEST_CASE("the plan parser reads WEFT_FAULTS and refuses nonsense", "[faults]") {
  const ft::fault_plan p = ft::parse_fault_plan(
      "seed=7,enomem=0.01,eagain=0.02,econnreset=0.03,emfile=0.05,short=0.2,"
      "ring=8,at=3+9,at_kind=emfile");
  CHECK(p.seed == 7);
  CHECK(p.probability[static_cast<unsigned>(ft::fault_kind::short_transfer)] == 0.2);
  CHECK(p.probability[static_cast<unsigned>(ft::fault_kind::econnreset)] == 0.03);
  CHECK(p.ring_entries == 8);
  CHECK(p.chosen == std::vector<std::uint64_t>{3, 9});
  CHECK(p.chosen_kind == ft::fault_kind::emfile);
  CHECK_THROWS_AS(ft::parse_fault_plan("enomem=2"), std::invalid_argument);
  CHECK_THROWS_AS(ft::parse_fault_plan("enomem=0.6,short=0.6"), std::invalid_argument);
  CHECK_THROWS_AS(ft::parse_fault_plan("bogus=1"), std::invalid_argument);
  CHECK_THROWS_AS(ft::parse_fault_plan("seed"), std::invalid_argument);
}

TEST_CASE("an injected ECONNRESET surfaces from tcp_stream::read and write", "[faults]") {
  for (const auto& mode : {cooperative, multi_thread}) {
    INFO("mode " << weft::to_string(mode.mode));
    faults f(only({IORING_OP_RECV, IORING_OP_SEND}, ft::fault_kind::econnreset));
    weft::run(mode, bounded(weft::invoke([]() -> task<> {
                auto [a, b] = co_await tcp_pair();
                std::byte buffer[16];
                auto r = co_await a.read(buffer);
                REQUIRE(!r);
                CHECK(r.error() == std::errc::connection_reset);
                CHECK(r.full_error().message() ==
                      "recv: " + std::error_code(ECONNRESET, std::generic_category()).message());
                auto w = co_await b.write_all(std::as_bytes(std::span(buffer)));
                REQUIRE(!w);
                CHECK(w.error() == std::errc::connection_reset);
                CHECK(std::string(w.full_error().operation) == "send");
              })));
    CHECK(f.injected(ft::fault_kind::econnreset) == 2);
    f.check_nothing_leaked();
  }
}

TEST_CASE("an injected EAGAIN surfaces from a send", "[faults]") {
  faults f(only({IORING_OP_SEND}, ft::fault_kind::eagain));
  weft::run(weft::invoke([]() -> task<> {
    auto [a, b] = co_await tcp_pair();
    const std::byte one[1]{};
    auto w = co_await a.write(one);
    REQUIRE(!w);
    CHECK(w.error() == std::errc::resource_unavailable_try_again);
  }));
  f.check_nothing_leaked();
}

TEST_CASE("accept gives EMFILE at the call site, and a retry after a back-off recovers",
          "[faults]") {
  for (const auto& mode : {cooperative, multi_thread}) {
    INFO("mode " << weft::to_string(mode.mode));
    // The first two accept requests of each ring fail: the multishot request ends with that
    // error as the kernel would end it, the waiting accept gets the error, and the next accept
    // arms a new request, which then stays armed for the other connections.
    ft::fault_plan plan = only({IORING_OP_ACCEPT}, ft::fault_kind::emfile, 0.0);
    plan.chosen = {0, 1};
    plan.chosen_kind = ft::fault_kind::emfile;
    faults f(plan);
    weft::run(mode, bounded(weft::invoke([]() -> task<> {
                auto listener = io::tcp_listener::bind(io::socket_address::loopback_v4(0)).value();
                const auto where = listener.local_address().value();
                int errors = 0, accepted = 0;
                for (int i = 0; i < 8; ++i) {
                  auto client = weft::spawn(io::tcp_stream::connect(where));
                  for (;;) {
                    auto conn = co_await listener.accept();
                    if (conn) {
                      ++accepted;
                      break;
                    }
                    CHECK(conn.error() == std::errc::too_many_files_open);
                    CHECK(std::string(conn.full_error().operation) == "accept");
                    ++errors;
                    co_await weft::sleep_for(1ms);  // the servers' accept loop backs off like this
                  }
                  (void)co_await client;
                }
                CHECK(accepted == 8);
                CHECK(errors > 0);
              })));
    CHECK(f.injected(ft::fault_kind::emfile) > 0);
    f.check_nothing_leaked();
  }
}

TEST_CASE("file::open gives the injected ENOMEM and EMFILE", "[faults]") {
  for (auto kind : {ft::fault_kind::enomem, ft::fault_kind::emfile}) {
    faults f(only({IORING_OP_OPENAT, IORING_OP_OPENAT2}, kind));
    weft::run(weft::invoke([kind]() -> task<> {
      auto r = co_await io::file::open("/dev/null");
      REQUIRE(!r);
      CHECK(r.error() == (kind == ft::fault_kind::enomem ? std::errc::not_enough_memory
                                                         : std::errc::too_many_files_open));
      CHECK(std::string(r.full_error().operation) == "openat");
    }));
    f.check_nothing_leaked();
  }
}

TEST_CASE("short reads and writes: read_exact and write_all still move every byte", "[faults]") {
  for (const auto& mode : {cooperative, multi_thread}) {
    INFO("mode " << weft::to_string(mode.mode));
    faults f(only({IORING_OP_RECV, IORING_OP_SEND, IORING_OP_READ, IORING_OP_WRITE},
                  ft::fault_kind::short_transfer, 0.7, 11));
    weft::run(
        mode, bounded(weft::invoke([]() -> task<> {
          auto [a, b] = co_await tcp_pair();
          const auto sent = pattern(256 * 1024, 5);
          auto writer =
              weft::spawn(weft::invoke([&]() -> task<> { (co_await a.write_all(sent)).value(); }));
          std::vector<std::byte> got(sent.size());
          (co_await b.read_exact(got)).value();
          co_await writer;
          CHECK((got == sent));  // parenthesized: no 256 KiB dump on failure

          // A pipe's read_exact, and a regular file's write_all_at, under the same faults.
          auto [reader, pw] = io::make_pipe().value();
          const auto small = pattern(30000, 9);
          auto pipe_writer = weft::spawn(
              weft::invoke([&, &w = pw]() -> task<> { (co_await w.write_all(small)).value(); }));
          std::vector<std::byte> piped(small.size());
          (co_await reader.read_exact(piped)).value();
          co_await pipe_writer;
          CHECK((piped == small));

          char path[] = "/tmp/weft-fault-test-XXXXXX";
          io::fd tmp(::mkstemp(path));
          REQUIRE(tmp);
          ::unlink(path);
          io::file file(std::move(tmp));
          (co_await file.write_all_at(sent, 0)).value();
          std::vector<std::byte> back(sent.size());
          std::size_t done = 0;
          while (done < back.size()) {
            auto n = (co_await file.read_at(std::span(back).subspan(done), done)).value();
            REQUIRE(n > 0);
            done += n;
          }
          CHECK((back == sent));
        })));
    CHECK(f.injected(ft::fault_kind::short_transfer) > 0);
    f.check_nothing_leaked();
  }
}

namespace {

// The results of 300 nops, one after another, under a plan that fails 30% of them.
std::vector<int> nop_results(std::uint64_t seed, std::vector<ft::fault_event>& log) {
  faults f(only({IORING_OP_NOP}, ft::fault_kind::enomem, 0.3, seed));
  auto results = weft::run(weft::invoke([]() -> task<std::vector<int>> {
    std::vector<int> r;
    for (int i = 0; i < 300; ++i) r.push_back(co_await io::nop());
    co_return r;
  }));
  log = ft::fault_log();
  f.check_nothing_leaked();
  return results;
}

}  // namespace

TEST_CASE("the same seed injects the same faults at the same operations; another seed does not",
          "[faults]") {
  std::vector<ft::fault_event> log1, log2, log3;
  const auto first = nop_results(42, log1);
  const auto again = nop_results(42, log2);
  const auto other = nop_results(43, log3);
  CHECK(first == again);
  CHECK(log1 == log2);
  CHECK(first != other);
  CHECK(log1 != log3);
  std::size_t failed = 0;
  for (int r : first) {
    CHECK((r == 0 || r == -ENOMEM));
    failed += r == -ENOMEM ? 1 : 0;
  }
  CHECK(failed == log1.size());
  CHECK(failed > 50);
  CHECK(failed < 130);
}

TEST_CASE("chosen operation numbers fail, and only they", "[faults]") {
  ft::fault_plan plan = only({IORING_OP_NOP}, ft::fault_kind::enomem, 0.0);
  plan.chosen = {0, 5, 7};
  faults f(plan);
  auto results = weft::run(weft::invoke([]() -> task<std::vector<int>> {
    std::vector<int> r;
    for (int i = 0; i < 10; ++i) r.push_back(co_await io::nop());
    co_return r;
  }));
  CHECK(results == std::vector<int>{-ENOMEM, 0, 0, 0, 0, -ENOMEM, 0, -ENOMEM, 0, 0});
  f.check_nothing_leaked();
}

namespace {

task<> count_one(std::vector<int>& seen, std::size_t i) {
  const int r = co_await io::nop();
  if (r == 0) ++seen[i];
}

task<> flood(std::size_t n, std::vector<int>& seen) {
  weft::task_group group;
  for (std::size_t i = 0; i < n; ++i) group.spawn(count_one(seen, i));
  co_await group.join();
}

}  // namespace

TEST_CASE("a completion queue that overflows loses no completion", "[faults]") {
  constexpr std::size_t n = 3000;
  SECTION("cooperative, ring of 4 (CQ 16)") {
    faults f(ft::fault_plan{});  // no faults; counts the leftovers
    weft::sched::cooperative executor(weft::sched::cooperative_options{.ring_entries = 4});
    std::vector<int> seen(n, 0);
    executor.block_on(flood(n, seen));
    CHECK(std::count(seen.begin(), seen.end(), 1) == static_cast<long>(n));
    const auto& stats = executor.reactor().stats();
    INFO("cq entries " << executor.reactor().in_flight() << ", overflows " << stats.cq_overflows);
    CHECK(stats.cq_overflows > 0);  // it did overflow
    CHECK(executor.reactor().in_flight() == 0);
  }
  SECTION("multi-thread, every ring shrunk to 4 by the plan") {
    ft::fault_plan plan;
    plan.ring_entries = 4;
    faults f(plan);
    std::vector<std::atomic<int>> seen(n);
    weft::run(multi_thread, weft::invoke([&]() -> task<> {
                weft::task_group group;
                for (std::size_t i = 0; i < n; ++i) {
                  group.spawn(weft::invoke([&seen, i]() -> task<> {
                    if (co_await io::nop() == 0) seen[i].fetch_add(1);
                  }));
                }
                co_await group.join();
              }));
    std::size_t once = 0;
    for (auto& s : seen) once += s.load() == 1 ? 1 : 0;
    CHECK(once == n);
    const auto r = ft::fault_totals();
    INFO(ft::describe(r));
    CHECK(r.cq_overflows > 0);
    f.check_nothing_leaked();
  }
}
