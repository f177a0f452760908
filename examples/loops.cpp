// The seed's `_thread` demo: loop 1 sleeps 4 s, loop 2 sleeps 2 s. Run concurrently, the whole
// program takes about 4 s, not 6: while one task sleeps, the ring waits and the thread is free.
//
//   ./loops [--mode=cooperative|single-lock|multi-thread] [--workers=N]
#include <chrono>
#include <ctime>
#include <string>

#include <fmt/chrono.h>
#include <fmt/core.h>
#include <weft/cli.hpp>
#include <weft/weft.hpp>

using namespace std::chrono_literals;

namespace {

std::string now_text() {
  return fmt::format("{:%a %b %d %H:%M:%S %Y}", fmt::localtime(std::time(nullptr)));
}

weft::task<> loop(int id, std::chrono::milliseconds duration) {
  fmt::print("Start loop {} at: {}\n", id, now_text());
  co_await weft::sleep_for(duration);
  fmt::print("Loop {} done at: {}\n", id, now_text());
}

weft::task<int> amain() {
  const auto start = weft::clock::now();
  fmt::print("Starting at: {}\n", now_text());
  co_await weft::when_all(loop(1, 4000ms), loop(2, 2000ms));
  const std::chrono::duration<double> wall = weft::clock::now() - start;
  fmt::print("All tasks done at: {}\n", now_text());
  fmt::print("wall_s={:.3f}\n", wall.count());
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"loops: two loops that sleep at the same time"};
  weft::run_options options;
  weft::add_run_options(app, options);  // --mode, --workers, --switch-interval, --gil
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;
  try {
    return weft::run(options, amain());
  } catch (const std::exception& e) {
    fmt::print(stderr, "loops: {}\n", e.what());
    return 1;
  }
}
