// Command-line flags of the form --name=N for the benchmark programs that parse their own
// arguments (micro passes the rest on to Google Benchmark; threads_micro has no CLI11).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace weft::bench {

/// If `arg` is `name=N`, stores N in `value` and returns true; false when `arg` is another flag.
/// N must be a positive integer: anything else prints "`program`: `name` wants a positive
/// number" and exits with status 2 (a benchmark run with a bad size is a usage error).
inline bool take_flag(const char* program, std::string_view arg, std::string_view name,
                      std::int64_t& value) {
  if (arg.substr(0, name.size()) != name || arg.size() <= name.size() || arg[name.size()] != '=') {
    return false;
  }
  const std::string text(arg.substr(name.size() + 1));
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || v <= 0) {
    std::fprintf(stderr, "%s: %s wants a positive number, not '%s'\n", program,
                 std::string(name).c_str(), text.c_str());
    std::exit(2);
  }
  value = v;
  return true;
}

}  // namespace weft::bench
