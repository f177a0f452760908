#include <weft/sched/run.hpp>

#include <weft/pool/process_pool.hpp>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

namespace weft {

std::string_view to_string(mode m) noexcept {
  switch (m) {
    case mode::cooperative: return "cooperative";
    case mode::single_lock: return "single-lock";
    case mode::multi_thread: return "multi-thread";
  }
  return "unknown";
}

std::optional<mode> parse_mode(std::string_view name) noexcept {
  for (mode m : {mode::cooperative, mode::single_lock, mode::multi_thread}) {
    if (name == to_string(m)) return m;
  }
  return std::nullopt;
}

bool mode_available(mode m) noexcept {
  return m == mode::cooperative || m == mode::single_lock || m == mode::multi_thread;
}

std::string unknown_mode_message(std::string_view name) {
  if (name == "processes") {
    return "--mode=processes is not available to run a task: it runs registered functions in a "
           "process pool (weft::pool::process_pool, see examples/countdown), not a task; use "
           "cooperative, single-lock or multi-thread";
  }
  return "unknown mode '" + std::string(name) + "'";
}

namespace detail {

void abandon_run(std::shared_ptr<void> executor, std::shared_ptr<runtime_state> state,
                 const std::string& stuck_tasks, std::chrono::nanoseconds timeout,
                 std::exception_ptr main_error) {
  {
    // Never destroyed (a pointer to a vector that is never deleted): a blocking job or an
    // executor thread stuck in a task may touch the executor, its rings and the frames for as
    // long as the process lives, so they must stay; reachable, so LSan does not report them.
    static std::mutex mutex;
    static auto* kept = new std::vector<std::shared_ptr<void>>;  // NOLINT: immortal on purpose
    std::lock_guard lock(mutex);
    kept->push_back(std::move(executor));
    kept->push_back(std::move(state));
  }
  std::size_t tasks = 0;
  for (char c : stuck_tasks) tasks += c == '\n' ? 1 : 0;
  char head[160];
  std::snprintf(head, sizeof head,
                "weft: the shutdown timed out after %.3f s: %zu task%s ignored cancellation and "
                "%s left running (their executor is kept):\n",
                std::chrono::duration<double>(timeout).count(), tasks, tasks == 1 ? "" : "s",
                tasks == 1 ? "is" : "are");
  const std::string text = head + stuck_tasks;
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
  shutdown_timeout_error error(text, stuck_tasks);
  if (!main_error) throw error;
  try {
    std::rethrow_exception(main_error);
  } catch (...) {
    std::throw_with_nested(error);
  }
}

std::optional<std::uint64_t> seed_from_env(std::optional<std::uint64_t> seed) {
  const char* text = std::getenv("WEFT_SEED");
  if (text == nullptr || *text == '\0') return seed;
  std::uint64_t value = 0;
  const char* end = text + std::strlen(text);
  auto [p, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || p != end) {
    std::fprintf(stderr, "weft: ignoring WEFT_SEED=%s (wants a decimal number)\n", text);
    return seed;
  }
  return value;
}

void report_seed(std::uint64_t seed) noexcept {
  std::fprintf(stderr, "weft: this run was seeded: WEFT_SEED=%llu replays its order\n",
               static_cast<unsigned long long>(seed));
}

}  // namespace detail

void require_mode(mode m) {
  pool::detail::refuse_unserved_pool_worker();
  if (!mode_available(m)) {
    throw_error(errc::mode_unavailable,
                "weft::run: " + std::to_string(static_cast<int>(m)) +
                    " names no executor mode; use cooperative, single-lock or multi-thread");
  }
}

std::string mode_usage(std::string_view program) {
  return "usage: " + std::string(program) +
         " [--mode=cooperative|single-lock|multi-thread] [--workers=N]\n"
         "       [--switch-interval=5ms] [--gil=interval|ticks:N]\n";
}

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) noexcept {
  std::size_t digits = 0;
  while (digits < text.size() &&
         ((text[digits] >= '0' && text[digits] <= '9') || text[digits] == '.')) {
    ++digits;
  }
  if (digits == 0) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, value);
  if (ec != std::errc() || end != text.data() + digits || !(value >= 0)) return std::nullopt;
  const std::string_view unit = text.substr(digits);
  double scale = 0;
  if (unit.empty() || unit == "ms") {
    scale = 1e6;
  } else if (unit == "us") {
    scale = 1e3;
  } else if (unit == "ns") {
    scale = 1;
  } else if (unit == "s") {
    scale = 1e9;
  } else {
    return std::nullopt;
  }
  const double ns = value * scale;
  if (ns > 3.6e12) return std::nullopt;  // an hour: anything longer is a typo
  return std::chrono::nanoseconds(static_cast<long long>(ns));
}

bool parse_gil(std::string_view text, run_options& options) noexcept {
  if (text == "interval") {
    options.gil = sched::gil_policy::interval;
    return true;
  }
  constexpr std::string_view prefix = "ticks:";
  if (text.substr(0, prefix.size()) != prefix) return false;
  unsigned n = 0;
  const std::string_view number = text.substr(prefix.size());
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), n);
  if (ec != std::errc() || end != number.data() + number.size() || n == 0) return false;
  options.gil = sched::gil_policy::ticks;
  options.gil_ticks = n;
  return true;
}

namespace {

[[noreturn]] void throw_usage(const char* program, const std::string& message) {
  throw weft::usage_error(std::string(program) + ": " + message + "\n" + mode_usage(program), 2);
}

}  // namespace

run_options mode_from_args(int argc, char** argv) {
  const char* program = argc > 0 ? argv[0] : "weft";
  run_options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    auto take_value = [&](std::string_view flag) -> bool {
      if (arg == flag) {
        if (i + 1 >= argc) throw_usage(program, std::string(flag) + " needs a value");
        value = argv[++i];
        return true;
      }
      if (arg.size() > flag.size() && arg.substr(0, flag.size()) == flag &&
          arg[flag.size()] == '=') {
        value = arg.substr(flag.size() + 1);
        return true;
      }
      return false;
    };
    if (arg == "--help" || arg == "-h") {
      throw weft::usage_error(mode_usage(program), 0);
    } else if (take_value("--mode")) {
      auto m = parse_mode(value);
      if (!m) throw_usage(program, unknown_mode_message(value));
      options.mode = *m;
    } else if (take_value("--workers")) {
      unsigned n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || n == 0 || n > 1024) {
        throw_usage(program,
                    "--workers wants a number from 1 to 1024, not '" + std::string(value) + "'");
      }
      options.workers = n;
    } else if (take_value("--switch-interval")) {
      auto d = parse_duration(value);
      if (!d || d->count() == 0) {
        throw_usage(program,
                    "--switch-interval wants a positive duration such as 5ms, 100us or 1s, not '" +
                        std::string(value) + "'");
      }
      options.switch_interval = *d;
    } else if (take_value("--gil")) {
      if (!parse_gil(value, options)) {
        throw_usage(program, "--gil wants 'interval' or 'ticks:N' (N >= 1), not '" +
                                 std::string(value) + "'");
      }
    } else {
      throw_usage(program, "unknown argument '" + std::string(arg) + "'");
    }
  }
  return options;
}

}  // namespace weft
