// The process pool: arguments and results of every serializable kind, both start methods on
// every executor mode, workers that throw, crash, exit or are killed (busy or idle), cancelled
// jobs, shutdown, shared buffers, and the promises about resources: no zombie, no stray process
// and no fd left behind. Also the byte format itself (serial::writer/reader/codec), whose
// decoder must reject every truncated or corrupt message with serial::format_error.
//
// This binary has its own main: a pool with start method spawn re-executes it as its workers,
// and main() must hand them to weft::pool::serve_if_pool_worker() before Catch2 sees the arguments.
// The cases with start method fork come first in the file (Catch2 runs them in declaration
// order) and wait until the process is single-threaded again before creating their pool.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <dirent.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <vector>

#include <weft/weft.hpp>
#include "support.hpp"

using namespace std::chrono_literals;
using weft::task;
namespace serial = weft::pool::serial;

// ---- what the pool can and cannot pass, checked at compile time

static_assert(!serial::serializable_v<int*>);
static_assert(!serial::serializable_v<const char*>);
static_assert(!serial::serializable_v<std::string_view>);
static_assert(!serial::serializable_v<std::vector<bool>>);
static_assert(!serial::serializable_v<std::vector<int*>>);
static_assert(serial::serializable_v<std::vector<std::string>>);
static_assert(serial::serializable_v<std::vector<std::vector<int>>>);
static_assert(serial::serializable_v<weft::pool::shared_buffer>);
static_assert(serial::serializable_v<const std::string&>);
static_assert(serial::serializable_v<double>);

// ---- the functions the workers run (registered at namespace scope)

namespace {

struct point {
  std::int32_t x = 0;
  double y = 0;
  char tag[8] = {};
};
static_assert(std::is_trivially_copyable_v<point>);

int add_ints(int a, int b) {
  return a + b;
}
double scale_double(double x, double k) {
  return x * k;
}
point move_point(point p, std::int32_t dx) {
  p.x += dx;
  p.y *= 2;
  p.tag[0] = 'm';
  return p;
}
std::string repeat(std::string s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}
std::vector<std::string> split_words(std::string text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}
std::vector<std::vector<int>> transpose(std::vector<std::vector<int>> m) {
  std::vector<std::vector<int>> t;
  if (m.empty()) return t;
  t.resize(m[0].size());
  for (const auto& row : m) {
    for (std::size_t j = 0; j < row.size(); ++j) t[j].push_back(row[j]);
  }
  return t;
}
std::string concat(std::vector<std::string> parts, std::string separator) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i == 0 ? "" : separator) + parts[i];
  return out;
}
long square(long x) {
  return x * x;
}
// A void result: the effect is seen in the shared buffer.
void store_byte(weft::pool::shared_buffer b, std::uint64_t index, int value) {
  b.bytes()[index] = static_cast<std::byte>(value);
}
int throw_message(int x) {
  throw std::runtime_error("bad input " + std::to_string(x));
}
int throw_int(int x) {
  throw x;
}
std::int32_t my_pid(int) {
  return static_cast<std::int32_t>(::getpid());
}
int sleep_ms(int ms) {
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  return ms;
}

std::atomic_ref<std::int32_t> word(const weft::pool::shared_buffer& b, std::size_t index) {
  return std::atomic_ref<std::int32_t>(reinterpret_cast<std::int32_t*>(b.data())[index]);
}

// Writes its pid into word `slot` of `b`, then sleeps up to `ms` (until killed, in the tests).
int pid_then_sleep(weft::pool::shared_buffer b, int slot, int ms) {
  word(b, static_cast<std::size_t>(slot)).store(static_cast<std::int32_t>(::getpid()));
  for (int i = 0; i < ms / 10; ++i) ::usleep(10'000);
  return slot;
}

// No core file, and no sanitizer's or test framework's handler in the way: the default action.
void die_by_signal(int sig) {
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
  std::signal(sig, SIG_DFL);
  ::raise(sig);
}
int crash(int sig) {
  die_by_signal(sig);
  return -1;
}
int exit_with(int code) {
  std::fflush(nullptr);
  std::exit(code);
}
int abort_now(int) {
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
  std::signal(SIGABRT, SIG_DFL);
  std::abort();
}

// Fills every page of `b` with its own byte value; gives the number of bytes written.
std::uint64_t fill_pages(weft::pool::shared_buffer b) {
  for (std::size_t off = 0; off < b.size(); off += 4096) {
    std::memset(b.data() + off, static_cast<int>((off / 4096) % 251 + 1),
                std::min<std::size_t>(4096, b.size() - off));
  }
  return b.size();
}
weft::pool::shared_buffer make_buffer(std::uint64_t size, int value) {
  auto b = weft::pool::shared_buffer::create(static_cast<std::size_t>(size));
  if (size > 0) std::memset(b.data(), value, b.size());
  return b;
}
weft::pool::shared_buffer no_buffer(int) {
  return {};
}
// -1 for an empty buffer, its size otherwise.
std::int64_t buffer_size(weft::pool::shared_buffer b) {
  return b ? static_cast<std::int64_t>(b.size()) : -1;
}
std::int64_t sum_bytes(weft::pool::shared_buffer b) {
  std::int64_t sum = 0;
  for (std::byte x : b.bytes()) sum += static_cast<int>(x);
  return sum;
}

std::int64_t total_size(std::vector<weft::pool::shared_buffer> buffers) {
  std::int64_t total = 0;
  for (const auto& b : buffers) total += static_cast<std::int64_t>(b.size());
  return total;
}
std::vector<weft::pool::shared_buffer> make_buffers(int count) {
  std::vector<weft::pool::shared_buffer> out;
  for (int i = 0; i < count; ++i) out.push_back(weft::pool::shared_buffer::create(1));
  return out;
}

std::int32_t worker_fd_count(int) {
  return static_cast<std::int32_t>(weft::testing::open_fd_count());
}

int not_registered(int x) {
  return x;
}

}  // namespace

// Prints without a newline or a flush: the worker's stdio must flush it before replying.
int print_text(std::string text) {
  std::fputs(text.c_str(), stdout);
  return static_cast<int>(text.size());
}

WEFT_PROCESS_FUNCTION(print_text);
WEFT_PROCESS_FUNCTION(add_ints);
WEFT_PROCESS_FUNCTION(scale_double);
WEFT_PROCESS_FUNCTION(move_point);
WEFT_PROCESS_FUNCTION(repeat);
WEFT_PROCESS_FUNCTION(split_words);
WEFT_PROCESS_FUNCTION(transpose);
WEFT_PROCESS_FUNCTION(concat);
WEFT_PROCESS_FUNCTION(square);
WEFT_PROCESS_FUNCTION(store_byte);
WEFT_PROCESS_FUNCTION(throw_message);
WEFT_PROCESS_FUNCTION(throw_int);
WEFT_PROCESS_FUNCTION(my_pid);
WEFT_PROCESS_FUNCTION(sleep_ms);
WEFT_PROCESS_FUNCTION(pid_then_sleep);
WEFT_PROCESS_FUNCTION(crash);
WEFT_PROCESS_FUNCTION(exit_with);
WEFT_PROCESS_FUNCTION(abort_now);
WEFT_PROCESS_FUNCTION(fill_pages);
WEFT_PROCESS_FUNCTION(make_buffer);
WEFT_PROCESS_FUNCTION(no_buffer);
WEFT_PROCESS_FUNCTION(buffer_size);
WEFT_PROCESS_FUNCTION(sum_bytes);
WEFT_PROCESS_FUNCTION(worker_fd_count);
WEFT_PROCESS_FUNCTION(total_size);
WEFT_PROCESS_FUNCTION(make_buffers);

int main(int argc, char** argv) {
  weft::pool::serve_if_pool_worker();
  return Catch::Session().run(argc, argv);
}

// ---- helpers

namespace {

using weft::pool::start_method;
using weft::testing::no_children_left;
using weft::testing::open_fd_count;
using weft::testing::process_gone;

const char* name_of(start_method m) {
  return m == start_method::spawn ? "spawn" : "fork";
}

unsigned thread_count() {
  unsigned n = 0;
  if (DIR* d = ::opendir("/proc/self/task")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
  }
  return n;
}

#if defined(__SANITIZE_THREAD__)
constexpr bool under_tsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool under_tsan = true;
#else
constexpr bool under_tsan = false;
#endif
#else
constexpr bool under_tsan = false;
#endif

// Start method fork wants a single-threaded process: threads of an executor that just ended
// may take a moment to leave /proc/self/task. False (the case is skipped) only under
// ThreadSanitizer, whose runtime starts a thread of its own with the program's first thread.
// Also flushes stdio, so that a forked worker that exits through std::exit does not print the
// parent's buffered output a second time.
bool prepare_for(start_method m) {
  std::fflush(nullptr);
  if (m != start_method::fork) return true;
  for (int i = 0; i < 300 && thread_count() != 1; ++i) std::this_thread::sleep_for(10ms);
  if (under_tsan && thread_count() == 2) {
    WARN("skipped under ThreadSanitizer: its background thread makes start method fork unsafe");
    return false;
  }
  REQUIRE(thread_count() == 1);
  return true;
}

// True when this process has no child left, neither running nor a zombie.
// The parent of `pid` (field 4 of /proc/PID/stat), or -1.
pid_t parent_of(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return -1;
  std::istringstream rest(text.substr(close + 1));
  char state = 0;
  pid_t parent = -1;
  rest >> state >> parent;
  return parent;
}

// True when `pid` has ended and closed its fds: gone, or a zombie waiting for its parent. Every
// thread counts: a thread group leader is a zombie while its other threads are still exiting
// (a forked child of a ThreadSanitizer program has the sanitizer's own thread).
bool process_dead(pid_t pid) {
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(tasks.c_str());
  if (d == nullptr) return true;
  bool dead = true;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream stat(tasks + "/" + e->d_name + "/stat");
    std::string line;
    if (!std::getline(stat, line)) continue;  // that thread is gone
    const auto close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z' &&
        line[close + 2] != 'X') {
      dead = false;
    }
  }
  ::closedir(d);
  return dead;
}

bool contains(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

weft::run_options options_for(weft::mode m) {
  weft::run_options o;
  o.mode = m;
  if (m != weft::mode::cooperative) o.workers = 2;
  return o;
}

// What a job's co_await threw as std::system_error (`thrown` is false when it returned).
struct job_error {
  bool thrown = false;
  std::error_code code;
  std::string what;
};

template <class T>
task<job_error> error_of(task<T> t) {
  job_error e;
  try {
    (void)co_await std::move(t);
  } catch (const std::system_error& se) {
    e.thrown = true;
    e.code = se.code();
    e.what = se.what();
  }
  co_return e;
}

bool mentions(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// Checks that a job failed with `code` and a message naming each of `parts`.
void check_error(const job_error& e, weft::errc code,
                 std::initializer_list<std::string_view> parts) {
  CHECK(e.code == code);
  for (auto part : parts) CHECK(mentions(e.what, part));
}

// Polls (on the executor) until `done()` or about `limit` passed.
template <class Done>
task<bool> eventually(Done done, std::chrono::milliseconds limit = 5000ms) {
  for (auto waited = 0ms; waited < limit; waited += 2ms) {
    if (done()) co_return true;
    co_await weft::sleep_for(2ms);
  }
  co_return done();
}

// ---- the bodies run on each start method and executor mode

task<void> every_kind_of_value(weft::pool::process_pool& pool) {
  const int sum = co_await pool.submit(add_ints, 40, 2);
  CHECK(sum == 42);
  const double scaled = co_await pool.submit(scale_double, 1.5, -4.0);
  CHECK(scaled == -6.0);

  point p;
  p.x = 7;
  p.y = 0.25;
  std::memcpy(p.tag, "abcdefg", 8);
  const std::int32_t dx = 3;
  const point moved = co_await pool.submit(move_point, p, dx);
  CHECK(moved.x == 10);
  CHECK(moved.y == 0.5);
  CHECK(std::string(moved.tag) == "mbcdefg");

  const std::string ab = "ab";
  const std::string repeated = co_await pool.submit(repeat, ab, 3);
  CHECK(repeated == "ababab");
  const std::string empty;
  const std::string none = co_await pool.submit(repeat, empty, 5);
  CHECK(none.empty());
  // A string longer than a socket buffer, with every byte value.
  std::string big(3 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  const std::string big_twice = co_await pool.submit(repeat, big, 2);
  CHECK(big_twice == big + big);

  const std::string text = "the quick  brown\tfox";
  const std::vector<std::string> words = co_await pool.submit(split_words, text);
  const std::vector<std::string> expected_words = {"the", "quick", "brown", "fox"};
  CHECK(words == expected_words);
  const std::string comma = ", ";
  const std::string joined = co_await pool.submit(concat, expected_words, comma);
  CHECK(joined == "the, quick, brown, fox");

  const std::vector<std::vector<int>> matrix = {{1, 2, 3}, {4, 5, 6}};
  const std::vector<std::vector<int>> transposed = co_await pool.submit(transpose, matrix);
  const std::vector<std::vector<int>> expected_matrix = {{1, 4}, {2, 5}, {3, 6}};
  CHECK(transposed == expected_matrix);
  const std::vector<std::vector<int>> no_rows;
  const std::vector<std::vector<int>> still_none = co_await pool.submit(transpose, no_rows);
  CHECK(still_none.empty());

  // A void result; its effect is in shared memory.
  auto buffer = weft::pool::shared_buffer::create(16);
  const std::uint64_t index = 5;
  co_await pool.submit(store_byte, buffer, index, 99);
  CHECK(static_cast<int>(buffer.bytes()[5]) == 99);
  CHECK(static_cast<int>(buffer.bytes()[4]) == 0);

  // map: 1,000 jobs spread over the workers, results in the order of the items.
  std::vector<long> items;
  for (long i = 0; i < 1000; ++i) items.push_back(i - 500);
  const std::vector<long> squares = co_await pool.map(square, items);
  REQUIRE(squares.size() == items.size());
  bool in_order = true;
  for (std::size_t i = 0; i < items.size(); ++i)
    in_order = in_order && squares[i] == items[i] * items[i];
  CHECK(in_order);
  const std::vector<long> no_items;
  const std::vector<long> no_squares = co_await pool.map(square, no_items);
  CHECK(no_squares.empty());
  // Chunks of any size give the same results in the same order (one item per message, uneven
  // chunks, all in one).
  for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{5000}}) {
    const std::vector<long> chunked = co_await pool.map(square, items, chunk);
    CHECK(chunked == squares);
  }
  // Chunks of values that are not trivially copyable.
  std::vector<std::string> lines;
  for (int i = 0; i < 50; ++i)
    lines.push_back(std::string(static_cast<std::size_t>(i), 'w') + " x");
  const std::vector<std::vector<std::string>> split = co_await pool.map(split_words, lines, 6);
  REQUIRE(split.size() == lines.size());
  CHECK(split[0] == std::vector<std::string>{"x"});
  CHECK(split[49].size() == 2);
}

task<void> throwing_jobs(weft::pool::process_pool& pool) {
  const auto before = pool.stats();
  const job_error failed = co_await error_of(pool.submit(throw_message, 7));
  check_error(failed, weft::errc::job_failed, {"bad input 7", "throw_message"});
  const job_error odd = co_await error_of(pool.submit(throw_int, 1));
  check_error(odd, weft::errc::job_failed, {"not derived from std::exception"});
  // map rethrows the first failure once every job has ended.
  std::vector<int> items;
  for (int i = 0; i < 5; ++i) items.push_back(i);
  const job_error mapped = co_await error_of(pool.map(throw_message, items));
  CHECK(mapped.code == weft::errc::job_failed);
  CHECK(mentions(mapped.what, "bad input"));
  // The worker lives on: same pids, next job fine, nothing lost.
  const int after = co_await pool.submit(add_ints, 1, 2);
  CHECK(after == 3);
  const auto stats = pool.stats();
  CHECK(stats.jobs_lost == before.jobs_lost);
  CHECK(stats.workers_started == before.workers_started);
  CHECK(stats.jobs_completed == before.jobs_completed + 8);
}

// Two jobs that sleep 400 ms each run at once on two workers.
task<void> jobs_run_in_parallel(weft::pool::process_pool& pool) {
  const auto start = std::chrono::steady_clock::now();
  auto a = weft::spawn(pool.submit(sleep_ms, 400));
  auto b = weft::spawn(pool.submit(sleep_ms, 400));
  const int ra = co_await a;
  const int rb = co_await b;
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(ra + rb == 800);
  CHECK(elapsed < 750ms);
  // Each worker is a process of its own.
  const std::int32_t pid = co_await pool.submit(my_pid, 0);
  CHECK(pid != ::getpid());
  CHECK(contains(pool.worker_pids(), pid));
}

task<void> basic_body(weft::pool::process_pool& pool) {
  co_await every_kind_of_value(pool);
  co_await throwing_jobs(pool);
  co_await jobs_run_in_parallel(pool);
  co_await pool.shutdown();
}

// A worker killed with SIGKILL in the middle of a job, from another task.
task<void> killed_mid_job(weft::pool::process_pool& pool) {
  const std::vector<pid_t> before = pool.worker_pids();
  auto flags = weft::pool::shared_buffer::create(4096);
  auto job = weft::spawn(error_of(pool.submit(pid_then_sleep, flags.share(), 0, 5000)));
  const bool started = co_await eventually([&] { return word(flags, 0).load() != 0; });
  REQUIRE(started);
  const pid_t victim = word(flags, 0).load();
  CHECK(contains(before, victim));
  REQUIRE(::kill(victim, SIGKILL) == 0);
  const job_error e = co_await job;
  CHECK(e.thrown);
  CHECK(e.code == weft::errc::worker_died);
  CHECK(mentions(e.what, "SIGKILL"));
  CHECK(mentions(e.what, std::to_string(victim)));
  CHECK(mentions(e.what, "pid_then_sleep"));
  const auto stats = pool.stats();
  CHECK(stats.jobs_lost == 1);
  CHECK(stats.workers_started == pool.workers() + 1);
  const std::vector<pid_t> after = pool.worker_pids();
  CHECK(!contains(after, victim));
  CHECK(after.size() == before.size());
  // Every job after it succeeds, on every worker.
  std::vector<long> items;
  for (long i = 0; i < 20; ++i) items.push_back(i);
  const std::vector<long> squares = co_await pool.map(square, items);
  CHECK(squares.back() == 19 * 19);
  co_await pool.shutdown();
  CHECK(no_children_left());
  CHECK(process_gone(victim));
  for (pid_t pid : before) CHECK(process_gone(pid));
  for (pid_t pid : after) CHECK(process_gone(pid));
}

task<void> crashing_workers(weft::pool::process_pool& pool) {
  const job_error segv = co_await error_of(pool.submit(crash, SIGSEGV));
  check_error(segv, weft::errc::worker_died, {"SIGSEGV", "'crash'"});
  const job_error exited = co_await error_of(pool.submit(exit_with, 3));
  check_error(exited, weft::errc::worker_died, {"exit code 3"});
  const job_error aborted = co_await error_of(pool.submit(abort_now, 0));
  check_error(aborted, weft::errc::worker_died, {"SIGABRT"});
  const auto stats = pool.stats();
  CHECK(stats.jobs_lost == 3);
  CHECK(stats.workers_started == pool.workers() + 3);
  const int fine = co_await pool.submit(add_ints, 2, 2);
  CHECK(fine == 4);
  co_await pool.shutdown();
  CHECK(no_children_left());
}

// Workers killed between jobs: the jobs that find them dead go to their replacements.
task<void> killed_while_idle(weft::pool::process_pool& pool) {
  const std::vector<pid_t> before = pool.worker_pids();
  for (pid_t pid : before) REQUIRE(::kill(pid, SIGKILL) == 0);
  const bool dead = co_await eventually([&] {
    for (pid_t pid : before) {
      if (!process_dead(pid)) return false;
    }
    return true;
  });
  REQUIRE(dead);
  std::vector<long> items;
  for (long i = 0; i < 2L * pool.workers() + 2; ++i) items.push_back(i);
  const std::vector<long> squares = co_await pool.map(square, items);
  CHECK(squares.back() == items.back() * items.back());
  const auto stats = pool.stats();
  CHECK(stats.jobs_lost == 0);
  CHECK(stats.workers_started == 2 * pool.workers());
  for (pid_t pid : pool.worker_pids()) CHECK(!contains(before, pid));
  co_await pool.shutdown();
  CHECK(no_children_left());
  for (pid_t pid : before) CHECK(process_gone(pid));
}

// A job cancelled by with_timeout: its worker is killed and replaced, not waited for.
task<void> cancelled_job(weft::pool::process_pool& pool) {
  const std::vector<pid_t> before = pool.worker_pids();
  const auto start = std::chrono::steady_clock::now();
  const job_error e = co_await error_of(weft::invoke([&pool]() -> task<int> {
    co_return co_await weft::with_timeout(100ms, pool.submit(sleep_ms, 3000));
  }));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(e.code == weft::errc::timed_out);
  CHECK(elapsed < 2500ms);
  const std::vector<pid_t> after = pool.worker_pids();
  int replaced = 0;
  for (pid_t pid : before) replaced += contains(after, pid) ? 0 : 1;
  CHECK(replaced == 1);
  std::vector<long> items;
  for (long i = 0; i < 10; ++i) items.push_back(i);
  const std::vector<long> squares = co_await pool.map(square, items);
  CHECK(squares[9] == 81);
  // Replaced by the time it is needed (with start method fork, by the slot's next job).
  CHECK(pool.stats().workers_started == pool.workers() + 1);
  // A job cancelled while it waits for a worker costs no worker: it never reached one.
  const auto started_before = pool.stats().workers_started;
  auto a = weft::spawn(pool.submit(sleep_ms, 300));
  auto b = weft::spawn(pool.submit(sleep_ms, 300));
  co_await weft::sleep_for(20ms);
  const job_error queued = co_await error_of(weft::invoke([&pool]() -> task<int> {
    co_return co_await weft::with_timeout(50ms, pool.submit(add_ints, 1, 2));
  }));
  CHECK(queued.code == weft::errc::timed_out);
  const int ra = co_await a;
  const int rb = co_await b;
  CHECK(ra + rb == 600);
  CHECK(pool.stats().workers_started == started_before);
  co_await pool.shutdown();
  CHECK(no_children_left());
  for (pid_t pid : before) CHECK(process_gone(pid));
}

// shutdown() waits for the jobs in flight, then refuses new ones and reaps every worker.
task<void> shutdown_waits(weft::pool::process_pool& pool) {
  const std::vector<pid_t> pids = pool.worker_pids();
  auto flags = weft::pool::shared_buffer::create(4096);
  auto a = weft::spawn(pool.submit(pid_then_sleep, flags.share(), 0, 300));
  auto b = weft::spawn(pool.submit(pid_then_sleep, flags.share(), 1, 300));
  const bool started =
      co_await eventually([&] { return word(flags, 0).load() != 0 && word(flags, 1).load() != 0; });
  REQUIRE(started);
  // A third job, waiting for a worker when shutdown begins, runs too.
  auto c = weft::spawn(pool.submit(add_ints, 20, 22));
  co_await weft::sleep_for(20ms);
  co_await pool.shutdown();
  // The jobs had ended when shutdown returned, with their values.
  CHECK(pool.stats().jobs_completed == 3);
  CHECK(pool.stats().jobs_lost == 0);
  const int ra = co_await a;
  const int rb = co_await b;
  const int rc = co_await c;
  CHECK(ra == 0);
  CHECK(rb == 1);
  CHECK(rc == 42);
  const job_error late = co_await error_of(pool.submit(add_ints, 1, 1));
  CHECK(late.code == weft::errc::pool_closed);
  co_await pool.shutdown();  // a second call returns at once
  CHECK(no_children_left());
  for (pid_t pid : pids) CHECK(process_gone(pid));
}

task<void> shared_buffers(weft::pool::process_pool& pool) {
  // 64 MiB filled by a worker, seen by the parent: the same pages, no copy.
  auto big = weft::pool::shared_buffer::create(64 << 20);
  const std::uint64_t written = co_await pool.submit(fill_pages, big.share());
  CHECK(written == big.size());
  bool all_pages = true;
  std::vector<std::byte> page(4096);
  for (std::size_t off = 0; off < big.size(); off += 4096) {
    std::memset(page.data(), static_cast<int>((off / 4096) % 251 + 1), page.size());
    all_pages = all_pages && std::memcmp(big.data() + off, page.data(), page.size()) == 0;
  }
  CHECK(all_pages);
  // A buffer the worker creates and returns.
  const std::uint64_t size = 1 << 20;
  const weft::pool::shared_buffer made = co_await pool.submit(make_buffer, size, 0x5a);
  REQUIRE(made.size() == size);
  bool all_5a = true;
  for (std::byte x : made.bytes()) all_5a = all_5a && x == std::byte{0x5a};
  CHECK(all_5a);
  // It is shared memory: a worker sees what the parent wrote into it.
  std::memset(made.data(), 1, made.size());
  const std::int64_t sum = co_await pool.submit(sum_bytes, made.share());
  CHECK(sum == static_cast<std::int64_t>(size));
  // Empty buffers, both ways; and a zero-sized one.
  const std::int64_t empty_size = co_await pool.submit(buffer_size, weft::pool::shared_buffer());
  CHECK(empty_size == -1);
  const std::int64_t zero_size =
      co_await pool.submit(buffer_size, weft::pool::shared_buffer::create(0));
  CHECK(zero_size == 0);
  const weft::pool::shared_buffer none = co_await pool.submit(no_buffer, 0);
  CHECK(!none);
  CHECK(none.size() == 0);

  // A message carries at most 253 fds (SCM_MAX_FD): as many buffers as that, both ways.
  std::vector<weft::pool::shared_buffer> many;
  for (int i = 0; i < 253; ++i) many.push_back(weft::pool::shared_buffer::create(2));
  const std::int64_t total = co_await pool.submit(total_size, many);
  CHECK(total == 2 * 253);
  const std::vector<weft::pool::shared_buffer> returned = co_await pool.submit(make_buffers, 253);
  CHECK(returned.size() == 253);
  // One more is refused: before sending, or by the worker for a result, as a clear error.
  many.push_back(weft::pool::shared_buffer::create(2));
  std::string refused;
  try {
    (void)co_await pool.submit(total_size, many);
  } catch (const std::invalid_argument& e) {
    refused = e.what();
  }
  CHECK(mentions(refused, "253"));
  const job_error too_many = co_await error_of(pool.submit(make_buffers, 300));
  CHECK(too_many.code == weft::errc::job_failed);
  CHECK(mentions(too_many.what, "253"));
  const std::int64_t after = co_await pool.submit(total_size, returned);
  CHECK(after == 253);
  co_await pool.shutdown();
}

}  // namespace

// ---- the cases, as functions of the start method (and executor mode)

namespace {

// Runs `body(pool)` in mode `m` on a pool of `workers` workers started by `method`; false
// (and nothing run) where that start method cannot run here (see prepare_for).
bool run_on_pool(start_method method, unsigned workers, weft::mode m,
                 task<void> (*body)(weft::pool::process_pool&)) {
  INFO("start method " << name_of(method) << ", mode " << weft::to_string(m) << ", workers "
                       << workers);
  if (!prepare_for(method)) return false;
  weft::pool::process_pool pool(workers, method);
  CHECK(pool.workers() == workers);
  CHECK(pool.method() == method);
  weft::run(options_for(m), body(pool));
  return true;
}

void basic_case(start_method method, weft::mode m) {
  if (run_on_pool(method, 2, m, basic_body)) CHECK(no_children_left());
}

void killed_mid_job_case(start_method method, weft::mode m) {
  run_on_pool(method, 2, m, killed_mid_job);
}

void crash_case(start_method method) {
  run_on_pool(method, 1, weft::mode::cooperative, crashing_workers);
}

void killed_idle_case(start_method method) {
  for (unsigned workers : {1u, 2u}) {
    run_on_pool(method, workers, weft::mode::cooperative, killed_while_idle);
  }
}

void cancel_case(start_method method, weft::mode m) {
  run_on_pool(method, 2, m, cancelled_job);
}

void shutdown_case(start_method method, weft::mode m) {
  run_on_pool(method, 2, m, shutdown_waits);
}

void shared_buffer_case(start_method method) {
  run_on_pool(method, 1, weft::mode::cooperative, shared_buffers);
}

void destructor_case(start_method method) {
  INFO("start method " << name_of(method));
  std::vector<pid_t> pids;
  if (!prepare_for(method)) return;
  {
    weft::pool::process_pool pool(3, method);
    pids = pool.worker_pids();
    REQUIRE(pids.size() == 3);
    const int sum = weft::run(weft::invoke([&pool]() -> task<int> {
      const int a = co_await pool.submit(add_ints, 1, 2);
      const int b = co_await pool.submit(add_ints, 3, 4);
      co_return a + b;
    }));
    CHECK(sum == 10);
    ::kill(pids[2], SIGKILL);  // one of them dead and not reaped yet
  }
  CHECK(no_children_left());
  for (pid_t pid : pids) CHECK(process_gone(pid));
  // Never used at all.
  if (!prepare_for(method)) return;
  {
    weft::pool::process_pool pool(2, method);
    pids = pool.worker_pids();
  }
  CHECK(no_children_left());
  for (pid_t pid : pids) CHECK(process_gone(pid));
}

void fd_case(start_method method) {
  INFO("start method " << name_of(method));
  if (!prepare_for(method)) return;
  const std::size_t before = open_fd_count();
  {
    weft::pool::process_pool pool(1, method);
    weft::run(weft::invoke([&pool]() -> task<void> {
      const std::int32_t worker_before = co_await pool.submit(worker_fd_count, 0);
      (void)co_await pool.submit(sum_bytes, weft::pool::shared_buffer::create(64));
      const std::size_t parent_before = open_fd_count();
      for (int i = 0; i < 200; ++i) {
        auto b = weft::pool::shared_buffer::create(4096);
        const std::int64_t sum = co_await pool.submit(sum_bytes, std::move(b));
        CHECK(sum == 0);
      }
      for (int i = 0; i < 50; ++i) {
        const std::uint64_t size = 4096;
        const weft::pool::shared_buffer made = co_await pool.submit(make_buffer, size, 1);
        CHECK(made.size() == size);
      }
      const std::size_t parent_after = open_fd_count();
      const std::int32_t worker_after = co_await pool.submit(worker_fd_count, 0);
      CHECK(parent_after == parent_before);
      CHECK(worker_after == worker_before);
      co_await pool.shutdown();
    }));
  }
  CHECK(open_fd_count() == before);
  // Without shutdown too.
  if (!prepare_for(method)) return;
  {
    weft::pool::process_pool pool(2, method);
    const int three = weft::run(pool.submit(add_ints, 1, 2));
    CHECK(three == 3);
  }
  CHECK(open_fd_count() == before);
}

// worker_pids() read on one thread while jobs on another replace workers (TSan checks it).
// What a worker prints reaches the parent's stdout, once, even when stdout is a pipe (full
// buffering) and the worker ends with _Exit; output the parent buffered before a fork is not
// printed again by the fork server or the workers.
void output_case(start_method method) {
  INFO("start method " << name_of(method));
  if (!prepare_for(method)) return;
  std::fflush(stdout);
  const int saved = ::dup(1);
  REQUIRE(saved >= 0);
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  REQUIRE(::dup2(p[1], 1) == 1);  // fd 1 is a pipe now, inherited by the workers
  ::close(p[1]);
  std::fputs("parent-before;", stdout);  // buffered, not flushed
  {
    weft::pool::process_pool pool(1, method);
    weft::run(weft::invoke([&pool]() -> task<> {
      const std::string text = "worker-said;";
      const int n = co_await pool.submit(print_text, text);
      CHECK(n == 12);
      co_await pool.shutdown();
    }));
  }
  std::fflush(stdout);
  ::dup2(saved, 1);
  ::close(saved);
  std::string captured;
  char buffer[4096];
  for (ssize_t n; (n = ::read(p[0], buffer, sizeof buffer)) > 0;) captured.append(buffer, n);
  ::close(p[0]);
  auto count = [&](const std::string& what) {
    std::size_t found = 0;
    for (auto at = captured.find(what); at != std::string::npos; at = captured.find(what, at + 1))
      ++found;
    return found;
  };
  CHECK(count("worker-said;") == 1);
  CHECK(count("parent-before;") == 1);
}

void pids_race_case(start_method method) {
  INFO("start method " << name_of(method));
  if (!prepare_for(method)) return;
  weft::pool::process_pool pool(2, method);
  weft::run(options_for(weft::mode::multi_thread), weft::invoke([&pool]() -> task<void> {
              std::atomic<bool> done{false};
              auto reader = weft::spawn(weft::invoke([&pool, &done]() -> task<int> {
                int reads = 0;
                while (!done.load() && reads < 1'000'000) {
                  for (pid_t pid : pool.worker_pids()) reads += pid != 0 ? 1 : 0;
                  co_await weft::yield_now();
                }
                co_return reads;
              }));
              for (int i = 0; i < 4; ++i) (void)co_await error_of(pool.submit(crash, SIGKILL));
              done.store(true);
              const int reads = co_await reader;
              CHECK(reads > 0);
              CHECK(pool.stats().jobs_lost == 4);
              co_await pool.shutdown();
            }));
  CHECK(no_children_left());
}

constexpr start_method by_fork = start_method::fork;
constexpr start_method by_spawn = start_method::spawn;
constexpr weft::mode cooperative = weft::mode::cooperative;
constexpr weft::mode multi_thread = weft::mode::multi_thread;
constexpr weft::mode single_lock = weft::mode::single_lock;

}  // namespace

// ---- start method fork first, on the cooperative executor: nothing has created a thread yet

TEST_CASE("fork: basic jobs", "[process_pool][fork]") {
  basic_case(by_fork, cooperative);
}

TEST_CASE("fork: what workers print arrives once, and so does what the parent had buffered",
          "[process_pool][fork]") {
  output_case(by_fork);
}

TEST_CASE("fork: a worker killed with SIGKILL mid-job fails that job only",
          "[process_pool][fork]") {
  killed_mid_job_case(by_fork, cooperative);
}

TEST_CASE("fork: workers that crash, exit or abort are named and replaced",
          "[process_pool][fork]") {
  crash_case(by_fork);
}

TEST_CASE("fork: workers killed while idle are replaced without losing a job",
          "[process_pool][fork]") {
  killed_idle_case(by_fork);
}

TEST_CASE("fork: a job cancelled by with_timeout kills and replaces its worker",
          "[process_pool][fork]") {
  cancel_case(by_fork, cooperative);
}

TEST_CASE("fork: shutdown waits for the jobs in flight, then refuses new ones",
          "[process_pool][fork]") {
  shutdown_case(by_fork, cooperative);
}

TEST_CASE("fork: shared buffers cross the process boundary as shared memory",
          "[process_pool][fork]") {
  shared_buffer_case(by_fork);
}

// The fork server, stopped, answers the status request of a crashed worker only after the pool
// gave up waiting; that late reply used to be taken for the answer to the next request (a fork:
// "sent no socket").
TEST_CASE("fork: a late fork-server reply is never taken for the next one",
          "[process_pool][fork]") {
  if (!prepare_for(by_fork)) return;
  weft::pool::detail::set_fork_server_reply_timeout(200ms);
  {
    weft::pool::process_pool pool(1, by_fork);
    const pid_t server = parent_of(pool.worker_pids().at(0));
    REQUIRE(server > 1);
    REQUIRE(server != ::getpid());
    weft::run(weft::invoke([&pool, server]() -> task<void> {
      REQUIRE(::kill(server, SIGSTOP) == 0);
      const job_error e = co_await error_of(pool.submit(crash, SIGKILL));
      ::kill(server, SIGCONT);  // it now answers the request the pool gave up on
      INFO(e.what);
      CHECK(e.code == weft::errc::timed_out);
      co_await weft::sleep_for(100ms);
      const job_error next = co_await error_of(pool.submit(add_ints, 2, 3));
      INFO(next.what);
      CHECK_FALSE(next.thrown);
      co_await pool.shutdown();
    }));
  }
  weft::pool::detail::set_fork_server_reply_timeout(10s);
  CHECK(no_children_left());
}

TEST_CASE("fork: the destructor alone leaves no process and no zombie", "[process_pool][fork]") {
  destructor_case(by_fork);
}

TEST_CASE("fork: a pool leaks no file descriptor, in the parent or in its workers",
          "[process_pool][fork]") {
  fd_case(by_fork);
}

// A fork pool is created before the executor's threads exist, and keeps forking replacements
// (from its fork server) once they run. Under ThreadSanitizer, whose runtime keeps a thread of
// its own once the first thread was created, only the first of these can run.
TEST_CASE("fork: pools created before threaded executors", "[process_pool][fork]") {
  pids_race_case(by_fork);
  killed_mid_job_case(by_fork, multi_thread);
  basic_case(by_fork, multi_thread);
  basic_case(by_fork, single_lock);
  cancel_case(by_fork, multi_thread);
  shutdown_case(by_fork, single_lock);
}

// ---- start method spawn, on every executor mode

TEST_CASE("spawn: what workers print arrives once, even through a pipe", "[process_pool][spawn]") {
  output_case(by_spawn);
}

TEST_CASE("spawn: basic jobs on every executor mode", "[process_pool][spawn]") {
  basic_case(by_spawn, cooperative);
  basic_case(by_spawn, multi_thread);
  basic_case(by_spawn, single_lock);
}

TEST_CASE("spawn: a worker killed with SIGKILL mid-job fails that job only",
          "[process_pool][spawn]") {
  killed_mid_job_case(by_spawn, cooperative);
  killed_mid_job_case(by_spawn, multi_thread);
}

TEST_CASE("spawn: workers that crash, exit or abort are named and replaced",
          "[process_pool][spawn]") {
  crash_case(by_spawn);
}

TEST_CASE("spawn: workers killed while idle are replaced without losing a job",
          "[process_pool][spawn]") {
  killed_idle_case(by_spawn);
}

TEST_CASE("spawn: a job cancelled by with_timeout kills and replaces its worker",
          "[process_pool][spawn]") {
  cancel_case(by_spawn, cooperative);
  cancel_case(by_spawn, multi_thread);
}

TEST_CASE("spawn: shutdown waits for the jobs in flight, then refuses new ones",
          "[process_pool][spawn]") {
  shutdown_case(by_spawn, cooperative);
  shutdown_case(by_spawn, single_lock);
}

TEST_CASE("spawn: shared buffers cross the process boundary as shared memory",
          "[process_pool][spawn]") {
  shared_buffer_case(by_spawn);
}

TEST_CASE("spawn: the destructor alone leaves no process and no zombie", "[process_pool][spawn]") {
  destructor_case(by_spawn);
}

TEST_CASE("spawn: a pool leaks no file descriptor, in the parent or in its workers",
          "[process_pool][spawn]") {
  fd_case(by_spawn);
}

TEST_CASE("spawn: worker_pids may be read while workers are replaced on other threads",
          "[process_pool][spawn]") {
  pids_race_case(by_spawn);
}

// ---- cases that leave threads behind or run with a ring: fork is refused there

TEST_CASE("start method fork is refused once a ring or a second thread exists", "[process_pool]") {
  weft::run(weft::invoke([]() -> task<void> {
    std::error_code code;
    std::string what;
    try {
      weft::pool::process_pool pool(1, start_method::fork);
    } catch (const std::system_error& e) {
      code = e.code();
      what = e.what();
    }
    CHECK(code == weft::errc::fork_unsafe);
    CHECK(mentions(what, "spawn"));
    CHECK(mentions(what, "ring"));
    // Spawn works there.
    weft::pool::process_pool pool(1, start_method::spawn);
    const int sum = co_await pool.submit(add_ints, 2, 3);
    CHECK(sum == 5);
    co_await pool.shutdown();
  }));
  std::atomic<bool> stop{false};
  std::thread other([&stop] {
    while (!stop.load()) std::this_thread::sleep_for(1ms);
  });
  std::error_code code;
  try {
    weft::pool::process_pool pool(1, start_method::fork);
  } catch (const std::system_error& e) {
    code = e.code();
  }
  stop.store(true);
  other.join();
  CHECK(code == weft::errc::fork_unsafe);
  CHECK(no_children_left());
}

TEST_CASE("a pool created inside weft::run, on any thread", "[process_pool]") {
  const weft::mode modes[] = {weft::mode::cooperative, weft::mode::multi_thread,
                              weft::mode::single_lock};
  for (weft::mode m : modes) {
    INFO("mode " << weft::to_string(m));
    weft::run(options_for(m), weft::invoke([]() -> task<void> {
                weft::pool::process_pool pool(2);
                CHECK(pool.method() == start_method::spawn);
                std::vector<long> items;
                for (long i = 0; i < 100; ++i) items.push_back(i);
                const std::vector<long> squares = co_await pool.map(square, items);
                CHECK(squares[99] == 99 * 99);
                co_await pool.shutdown();
              }));
    CHECK(no_children_left());
  }
}

TEST_CASE("an unregistered function is refused by submit", "[process_pool]") {
  weft::run(weft::invoke([]() -> task<void> {
    weft::pool::process_pool pool(1);
    std::string what;
    try {
      (void)pool.submit(not_registered, 1);
    } catch (const std::invalid_argument& e) {
      what = e.what();
    }
    CHECK(mentions(what, "WEFT_PROCESS_FUNCTION"));
    std::vector<int> items = {1, 2};
    what.clear();
    try {
      (void)pool.map(not_registered, items);
    } catch (const std::invalid_argument& e) {
      what = e.what();
    }
    CHECK(mentions(what, "WEFT_PROCESS_FUNCTION"));
    const int fine = co_await pool.submit(add_ints, 1, 1);
    CHECK(fine == 2);
    co_await pool.shutdown();
  }));
}

// ---- the byte format

namespace {

template <class T>
std::string encode(const T& value) {
  serial::writer w;
  serial::put<T>(w, value);
  REQUIRE(w.fds().empty());
  return w.bytes();
}

template <class T>
T decode(const std::string& bytes) {
  serial::reader r(std::as_bytes(std::span(bytes)));
  T value = serial::take<T>(r);
  CHECK(r.remaining() == 0);
  return value;
}

// Every proper prefix of a valid encoding is an error, and decoding one never reads past it.
template <class T>
void check_every_prefix_rejected(const std::string& bytes) {
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const std::string prefix = bytes.substr(0, n);  // its own allocation: ASan sees overruns
    serial::reader r(std::as_bytes(std::span(prefix)));
    INFO("prefix of " << n << " bytes out of " << bytes.size());
    CHECK_THROWS_AS(serial::take<T>(r), serial::format_error);
  }
}

template <class T>
void check_round_trip(const T& value) {
  const std::string bytes = encode(value);
  CHECK(decode<T>(bytes) == value);
  check_every_prefix_rejected<T>(bytes);
}

// Decodes `bytes` as T; true when it decoded or threw format_error (anything else fails).
template <class T>
bool decodes_or_rejects(const std::string& bytes) {
  serial::reader r(std::as_bytes(std::span(bytes)));
  try {
    (void)serial::take<T>(r);
  } catch (const serial::format_error&) {
  }
  return true;
}

std::string claimed_length(std::uint64_t count, std::size_t trailing) {
  serial::writer w;
  w.put_raw<std::uint64_t>(count);
  w.bytes().append(trailing, '\x01');
  return w.bytes();
}

}  // namespace

TEST_CASE("serial: values round-trip and every truncation is rejected", "[serial]") {
  check_round_trip<int>(-123456);
  check_round_trip<double>(3.25);
  check_round_trip<std::uint8_t>(7);
  point p;
  p.x = -5;
  p.y = 1e300;
  std::memcpy(p.tag, "tagtag!", 8);
  const std::string p_bytes = encode(p);
  const point back = decode<point>(p_bytes);
  CHECK(back.x == p.x);
  CHECK(back.y == p.y);
  CHECK(std::memcmp(back.tag, p.tag, 8) == 0);
  check_every_prefix_rejected<point>(p_bytes);

  check_round_trip<std::string>("");
  check_round_trip<std::string>(std::string("with\0nul", 8));
  check_round_trip<std::vector<int>>({});
  check_round_trip<std::vector<int>>({1, -2, 3});
  check_round_trip<std::vector<std::string>>({});
  check_round_trip<std::vector<std::string>>({"", "a", "bc", ""});
  check_round_trip<std::vector<std::vector<int>>>({{}, {1}, {2, 3}, {}});
  check_round_trip<std::vector<std::vector<std::string>>>({{"x"}, {}, {"y", "zz"}});
  check_round_trip<std::vector<double>>({0.5, -0.25});

  // A whole job's message: several values in a row.
  serial::writer w;
  serial::put<std::string>(w, "fn");
  serial::put<int>(w, 9);
  serial::put<std::vector<std::string>>(w, {"one", "two"});
  const std::string message = w.bytes();
  auto take_all = [](serial::reader& r) {
    const auto name = serial::take<std::string>(r);
    const auto n = serial::take<int>(r);
    const auto words = serial::take<std::vector<std::string>>(r);
    return name == "fn" && n == 9 && words.size() == 2 && words[1] == "two";
  };
  {
    serial::reader r(std::as_bytes(std::span(message)));
    CHECK(take_all(r));
    CHECK(r.remaining() == 0);
  }
  for (std::size_t n = 0; n < message.size(); ++n) {
    const std::string prefix = message.substr(0, n);
    serial::reader r(std::as_bytes(std::span(prefix)));
    CHECK_THROWS_AS(take_all(r), serial::format_error);
  }
}

TEST_CASE("serial: corrupt bytes decode or throw format_error, never crash", "[serial]") {
  const std::vector<std::vector<std::string>> value = {{"alpha", "b"}, {}, {"", "gamma!"}};
  const std::string bytes = encode(value);
  using nested = std::vector<std::vector<std::string>>;
  bool all = true;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (int flip : {0x01, 0x80, 0xff, 0x7f}) {
      std::string corrupt = bytes;
      corrupt[i] = static_cast<char>(corrupt[i] ^ flip);
      all = all && decodes_or_rejects<nested>(corrupt);
      all = all && decodes_or_rejects<std::vector<std::string>>(corrupt);
      all = all && decodes_or_rejects<std::vector<std::vector<int>>>(corrupt);
    }
  }
  CHECK(all);
}

TEST_CASE("serial: a huge claimed length is rejected without allocating it", "[serial]") {
  for (std::uint64_t count : {std::uint64_t{1} << 62, ~std::uint64_t{0},
                              (~std::uint64_t{0} / 4) + 1, std::uint64_t{1000}}) {
    INFO("claimed count " << count);
    const std::string bytes = claimed_length(count, 16);
    CHECK_THROWS_AS(decode<std::vector<int>>(bytes), serial::format_error);
    CHECK_THROWS_AS(decode<std::vector<std::int32_t>>(bytes), serial::format_error);
    CHECK_THROWS_AS(decode<std::string>(bytes), serial::format_error);
    CHECK_THROWS_AS(decode<std::vector<std::string>>(bytes), serial::format_error);
    CHECK_THROWS_AS(decode<std::vector<std::vector<int>>>(bytes), serial::format_error);
    CHECK_THROWS_AS(decode<std::vector<point>>(bytes), serial::format_error);
  }
}

// Regression (tests/fuzz/serialize_fuzz): the count was only bounded by the bytes left, so a
// corrupt one made the decoder reserve up to sizeof(T) times the message (96 MiB for a 1 MiB
// message of string triples) before finding it truncated. Now a count whose elements cannot fit
// in what is left, at codec<T>::min_size bytes each, is rejected before anything is reserved.
TEST_CASE("serial: a count that cannot fit is rejected before reserving memory", "[serial]") {
  using triples = std::vector<std::tuple<std::string, std::string, std::string>>;
  using blocks = std::vector<std::tuple<std::array<char, 64>>>;
  STATIC_REQUIRE(serial::codec<std::tuple<std::string, std::string, std::string>>::min_size == 24);
  STATIC_REQUIRE(serial::codec<std::tuple<std::array<char, 64>>>::min_size == 64);
  STATIC_REQUIRE(serial::codec<weft::pool::shared_buffer>::min_size == 12);
  const std::string bytes = claimed_length(4096 / 8, 4096);  // fits 8-byte items, not 24 or 64
  const auto too_long = Catch::Contains("vector longer than its message");
  CHECK_THROWS_WITH(decode<triples>(bytes), too_long);
  CHECK_THROWS_WITH(decode<blocks>(bytes), too_long);
  CHECK_THROWS_WITH(decode<std::vector<std::vector<std::string>>>(claimed_length(2, 15)), too_long);
  // The bound is exact: the most elements that fit still decode.
  check_round_trip<triples>(triples(5));  // 8 + 5 * 24 bytes: count == remaining / min_size
  std::tuple<std::array<char, 64>> block{};
  std::get<0>(block).fill('b');
  check_round_trip<blocks>(blocks(3, block));
}

TEST_CASE("serial: shared buffers travel as file descriptors", "[serial]") {
  auto buffer = weft::pool::shared_buffer::create(100);
  buffer.bytes()[3] = std::byte{42};
  serial::writer w;
  serial::put<weft::pool::shared_buffer>(w, buffer);
  serial::put<weft::pool::shared_buffer>(w, weft::pool::shared_buffer());
  REQUIRE(w.fds().size() == 1);
  CHECK(w.fds()[0].get() != buffer.native_handle());  // a dup, owned by the message
  {
    // The fds given: the same memory, mapped again.
    serial::reader r(std::as_bytes(std::span(w.bytes())), &w.fds());
    const weft::pool::shared_buffer got = serial::take<weft::pool::shared_buffer>(r);
    const weft::pool::shared_buffer empty = serial::take<weft::pool::shared_buffer>(r);
    CHECK(r.remaining() == 0);
    REQUIRE(got.size() == 100);
    CHECK(got.bytes()[3] == std::byte{42});
    got.bytes()[4] = std::byte{43};
    CHECK(buffer.bytes()[4] == std::byte{43});
    CHECK(!empty);
  }
  // Without the fds the message refers to: format_error.
  serial::reader no_fds(std::as_bytes(std::span(w.bytes())));
  CHECK_THROWS_AS(serial::take<weft::pool::shared_buffer>(no_fds), serial::format_error);
  std::vector<weft::io::fd> too_few;
  serial::reader missing(std::as_bytes(std::span(w.bytes())), &too_few);
  CHECK_THROWS_AS(serial::take<weft::pool::shared_buffer>(missing), serial::format_error);
  // Truncated: format_error too.
  const std::string bytes = w.bytes();
  for (std::size_t n = 0; n < 12; ++n) {
    const std::string prefix = bytes.substr(0, n);
    serial::reader r(std::as_bytes(std::span(prefix)), &w.fds());
    CHECK_THROWS_AS(serial::take<weft::pool::shared_buffer>(r), serial::format_error);
  }
  // A size larger than the memory behind the fd is refused (mapping it would give SIGBUS on
  // the first touch of a missing page), not mapped.
  {
    serial::writer liar;
    liar.put_raw<std::uint64_t>(1 << 20);
    liar.put_raw<std::uint32_t>(liar.put_fd(buffer.native_handle()));
    serial::reader r(std::as_bytes(std::span(liar.bytes())), &liar.fds());
    CHECK_THROWS_AS(serial::take<weft::pool::shared_buffer>(r), std::system_error);
  }
}

TEST_CASE("serial: a bool that is not 0 or 1 is a format_error", "[serial]") {
  for (unsigned char byte : {0, 1, 2, 255}) {
    const std::string bytes(1, static_cast<char>(byte));
    serial::reader r(std::as_bytes(std::span(bytes)));
    if (byte <= 1) {
      CHECK(serial::take<bool>(r) == (byte == 1));
    } else {
      CHECK_THROWS_AS(serial::take<bool>(r), serial::format_error);
    }
  }
  // A trivially copyable type without a default constructor decodes too.
  struct no_default {
    explicit no_default(int v) : value(v) {}
    int value;
  };
  serial::writer w;
  serial::put<no_default>(w, no_default(7));
  serial::reader r(std::as_bytes(std::span(w.bytes())));
  CHECK(serial::take<no_default>(r).value == 7);
}
