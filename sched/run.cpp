#include <weft/sched/run.hpp>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace weft {

std::string_view to_string(mode m) noexcept {
  switch (m) {
    case mode::cooperative: return "cooperative";
    case mode::single_lock: return "single-lock";
    case mode::multi_thread: return "multi-thread";
    case mode::processes: return "processes";
  }
  return "unknown";
}

std::optional<mode> parse_mode(std::string_view name) noexcept {
  for (mode m : {mode::cooperative, mode::single_lock, mode::multi_thread, mode::processes}) {
    if (name == to_string(m)) return m;
  }
  return std::nullopt;
}

bool mode_available(mode m) noexcept {
  return m == mode::cooperative;
}

void require_mode(mode m) {
  if (!mode_available(m)) {
    throw_error(errc::mode_unavailable,
                "--mode=" + std::string(to_string(m)) +
                    " is not available in this build yet (only --mode=cooperative is)");
  }
}

std::string mode_usage(std::string_view program) {
  return "usage: " + std::string(program) +
         " [--mode=cooperative|single-lock|multi-thread|processes] [--workers=N]\n";
}

namespace {

[[noreturn]] void usage_error(const char* program, const std::string& message) {
  std::fprintf(stderr, "%s: %s\n%s", program, message.c_str(), mode_usage(program).c_str());
  std::exit(2);
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
        if (i + 1 >= argc) usage_error(program, std::string(flag) + " needs a value");
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
      std::fputs(mode_usage(program).c_str(), stdout);
      std::exit(0);
    } else if (take_value("--mode")) {
      auto m = parse_mode(value);
      if (!m) usage_error(program, "unknown mode '" + std::string(value) + "'");
      if (!mode_available(*m)) {
        usage_error(program,
                    "--mode=" + std::string(value) +
                        " is not available in this build yet (only --mode=cooperative is)");
      }
      options.mode = *m;
    } else if (take_value("--workers")) {
      unsigned n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || n == 0 || n > 1024) {
        usage_error(program,
                    "--workers wants a number from 1 to 1024, not '" + std::string(value) + "'");
      }
      options.workers = n;
    } else {
      usage_error(program, "unknown argument '" + std::string(arg) + "'");
    }
  }
  return options;
}

}  // namespace weft
