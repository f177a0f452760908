// The tutorial's first program: tasks that sleep at the same time, on whichever mode you pick.
//
//   ./hello [--mode=cooperative|single-lock|multi-thread] [--workers=N]
//
// Ten tasks each sleep 100 ms and return their number squared; the main task spawns them all,
// then awaits them. They overlap, so the whole program waits about 100 ms, not a second, on
// every mode: sleeping is waiting on the ring, and the thread is free meanwhile. It prints how
// many OS threads ran the tasks (one on cooperative, up to N on the threaded modes), the sum of
// the answers, and, last, a machine-readable line: wall_s=<seconds>. Bad options: one error line
// and the usage on stderr, exit status 2.
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <fmt/core.h>
#include <weft/cli.hpp>
#include <weft/weft.hpp>

using namespace std::chrono_literals;

namespace {

// Which OS threads ran a task. A std::mutex is fine here: it is never held across a co_await.
struct thread_log {
  std::mutex guard;
  std::set<std::thread::id> ids;

  void note() {
    std::lock_guard lock(guard);
    ids.insert(std::this_thread::get_id());
  }
};

weft::task<int> square_after_a_nap(int n, thread_log& threads) {
  threads.note();
  co_await weft::sleep_for(100ms);  // suspends this task only
  threads.note();                   // on the threaded modes, maybe another thread than before
  const int square = n * n;
  co_return square;
}

weft::task<int> amain(weft::mode mode) {
  const auto start = weft::clock::now();
  thread_log threads;
  // spawn() starts each task at once and hands back a join_handle; co_await gives its value.
  std::vector<weft::join_handle<int>> handles;
  for (int n = 1; n <= 10; ++n) handles.push_back(weft::spawn(square_after_a_nap(n, threads)));
  int sum = 0;
  for (auto& h : handles) sum += co_await h;
  const std::chrono::duration<double> wall = weft::clock::now() - start;
  fmt::print("hello from weft {} on mode={}\n", weft::version(), weft::to_string(mode));
  fmt::print("10 tasks slept 100 ms each, together; sum of squares = {} (expected 385)\n", sum);
  fmt::print("the tasks ran on {} OS thread(s)\n", threads.ids.size());
  fmt::print("wall_s={:.3f}\n", wall.count());
  const bool right = sum == 385;
  co_return right ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hello: ten tasks that sleep at the same time"};
  weft::run_options options;
  weft::add_run_options(app, options);  // --mode, --workers, --switch-interval, --gil
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;  // help, bad options
  try {
    return weft::run(options, amain(options.mode));
  } catch (const std::exception& e) {  // e.g. io_uring not available: one line, not a crash
    fmt::print(stderr, "hello: {}\n", e.what());
    return 1;
  }
}
