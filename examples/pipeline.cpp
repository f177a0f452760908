// A subprocess pipeline: spawn `sort` and talk to it through two pipes at once, as asyncio's
// create_subprocess_exec(..., stdin=PIPE, stdout=PIPE) does.
//
//   ./pipeline [--mode=cooperative|single-lock|multi-thread] [--workers=N] [--lines=N]
//              [--seed=S] [--program=sort]
//
// A spawned task feeds N pseudo-random words, one a line, to the child's stdin and then closes
// it; meanwhile the main task reads the child's stdout to the end. Feeding and reading run at
// the same time, so however many lines there are, neither side ever waits on a full pipe that
// the other is not draining (--program=cat, which answers while it reads, shows it: every line
// comes back, unsorted, so exit status 1). Then the main task waits for the child, checks that what
// came back is sorted and holds every line fed (no more, no fewer), and prints a summary; the last
// line is machine-readable: wall_s=<seconds>. A program that cannot be started
// (--program=/nonexistent) is one error line naming it and the cause, and exit status 1; so is
// a child that fails or gives back the wrong lines. Bad options: exit status 2 with the usage.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/cli.hpp>
#include <weft/weft.hpp>

namespace {

namespace io = weft::io;

struct settings {
  std::uint64_t lines = 1000;
  std::uint64_t seed = 1;
  std::string program = "sort";
};

// N words of 3 to 10 lowercase letters (repeats allowed), the same for the same seed.
std::vector<std::string> make_words(std::uint64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> length(3, 10);
  std::uniform_int_distribution<int> letter('a', 'z');
  std::vector<std::string> words;
  words.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    std::string w(static_cast<std::size_t>(length(rng)), ' ');
    for (char& c : w) c = static_cast<char>(letter(rng));
    words.push_back(std::move(w));
  }
  return words;
}

// Writes the words to the child's stdin in batches of about 16 KiB, then closes it, so that the
// child sees end of file. The close is explicit: a spawned task's frame, and with it a
// parameter such as `in`, lives on until the task is joined, and the main task joins only after
// the child has answered, which it does only after end of file.
weft::task<io::result<void>> feed(io::pipe_writer in, const std::vector<std::string>& words) {
  io::result<void> written;
  std::string batch;
  for (std::size_t i = 0; i < words.size() && written; ++i) {
    batch += words[i];
    batch += '\n';
    if (batch.size() >= 16384 || i + 1 == words.size()) {
      // Waits while the pipe is full, that is until the child reads: back-pressure.
      written = co_await in.write_all(io::as_bytes(batch));
      batch.clear();
    }
  }
  in = io::pipe_writer();
  co_return written;
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    const auto end = text.find('\n');
    lines.emplace_back(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

weft::task<int> amain(settings s) {
  const std::vector<std::string> words = make_words(s.lines, s.seed);

  // LC_ALL=C: byte order, the order std::string compares in.
  io::result<io::child> spawned = io::command(s.program)
                                      .env("LC_ALL", "C")
                                      .std_in(io::stdio::pipe)
                                      .std_out(io::stdio::pipe)
                                      .spawn();
  if (!spawned) {
    fmt::print(stderr, "pipeline: cannot start '{}': {}\n", s.program, spawned.message());
    co_return 1;
  }
  io::child child = std::move(*spawned);

  // The feeder owns stdin; this task reads stdout at the same time.
  auto feeder = weft::spawn(feed(std::move(child.std_in()), words));
  std::string out;
  io::result<std::size_t> got = co_await child.std_out().read_to_end(out);
  io::result<void> fed = co_await feeder;
  io::result<io::exit_status> status = co_await child.wait();

  if (!status) {
    fmt::print(stderr, "pipeline: waiting for '{}': {}\n", s.program, status.message());
    co_return 1;
  }
  if (!status->success()) {
    fmt::print(stderr, "pipeline: '{}' failed: {}\n", s.program, status->describe());
    co_return 1;
  }
  if (!fed) {
    fmt::print(stderr, "pipeline: feeding '{}': {}\n", s.program, fed.message());
    co_return 1;
  }
  if (!got) {
    fmt::print(stderr, "pipeline: reading from '{}': {}\n", s.program, got.message());
    co_return 1;
  }

  std::vector<std::string> lines = split_lines(out);
  const bool sorted = std::is_sorted(lines.begin(), lines.end());
  std::vector<std::string> expected = words;
  std::sort(expected.begin(), expected.end());
  std::sort(lines.begin(), lines.end());
  const bool complete = lines == expected;
  std::size_t fed_bytes = 0;
  for (const std::string& w : words) fed_bytes += w.size() + 1;
  fmt::print("pipeline: fed {} lines ({} bytes) to '{}', read {} lines ({} bytes) back: {}\n",
             words.size(), fed_bytes, s.program, lines.size(), out.size(), status->describe());
  fmt::print("sorted={} complete={}\n", sorted ? "yes" : "NO", complete ? "yes" : "NO");
  co_return (sorted && complete) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A subprocess pipeline: sort fed and read through pipes at the same time"};
  std::int64_t lines = 1000;
  settings s;
  weft::run_options options;
  weft::add_run_options(app, options);  // --mode, --workers, --switch-interval, --gil
  app.add_option("--lines", lines, "how many words to sort")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{10'000'000}));
  app.add_option("--seed", s.seed, "seed of the pseudo-random words")->capture_default_str();
  app.add_option("--program", s.program, "the program to run (searched in PATH)")
      ->capture_default_str();
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;
  if (s.program.empty()) {
    fmt::print(stderr, "pipeline: --program wants a program name\nusage: pipeline [OPTIONS]\n{}",
               app.help());
    return 2;
  }
  s.lines = static_cast<std::uint64_t>(lines);

  try {
    const auto start = std::chrono::steady_clock::now();
    weft::run_report report;
    options.report = &report;
    const int status = weft::run(options, amain(s));
    const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
    if (status != 0) return status;
    fmt::print("mode={} workers={}\n", weft::to_string(report.mode), report.workers);
    fmt::print("wall_s={:.6f}\n", wall.count());
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "pipeline: {}\n", e.what());
    return 1;
  }
}
